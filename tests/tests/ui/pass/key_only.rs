use std::sync::Arc;

use cache_core::{Cache, Indexed, Object, ObjectKey};

// A key and no index: `Object` and an empty `Indexed`; no index enum or query trait.
#[derive(Debug, Indexed)]
struct Node {
    #[key(name)]
    name: String,
    #[resource_version]
    rv: Option<String>,
}

fn main() {
    let cache = Cache::<Node>::new();
    cache.add(Arc::new(Node { name: "n1".into(), rv: None })).unwrap();
    assert_eq!(cache.get_by_key(&ObjectKey::cluster("n1")).unwrap().key().to_string(), "n1");
    assert!(cache.indexers().is_empty());
    assert!(Node { name: String::new(), rv: Some(String::new()) }.resource_version().is_none());
}
