// A crate that refers to cache-core under another name points the derive at it.
use cache_core as typed_cache;

use std::sync::Arc;

use typed_cache::{Cache, Indexed};

#[derive(Debug, Indexed)]
#[indexed(crate = typed_cache)]
struct Lease {
    #[key]
    name: String,
    #[index]
    holder: String,
}

fn main() {
    let cache = Cache::<Lease>::new();
    cache.add(Arc::new(Lease { name: "l".into(), holder: "h".into() })).unwrap();
    assert_eq!(cache.by_holder("h").len(), 1);
}
