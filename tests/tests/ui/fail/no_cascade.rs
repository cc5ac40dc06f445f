use std::sync::Arc;

use cache_core::{Cache, Indexed, ObjectKey};

// One bad option: one error. The key is sound, so `Object` is still derived and the code that
// uses the type keeps compiling.
#[derive(Indexed)]
struct Pod {
    #[key(namespace)]
    namespace: String,
    #[key(name)]
    name: String,
    #[index(eachh)]
    labels: Vec<String>,
}

fn main() {
    let cache = Cache::<Pod>::new();
    cache
        .add(Arc::new(Pod { namespace: "a".into(), name: "b".into(), labels: Vec::new() }))
        .unwrap();
    let _ = cache.get_by_key(&ObjectKey::new("a", "b"));
}
