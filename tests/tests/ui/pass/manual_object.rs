use std::sync::Arc;

use cache_core::{Cache, Indexed, Object, ObjectKey, ResourceVersion};

// `Object` written by hand (here: the key comes from nested metadata); only the indexes are
// derived.
#[derive(Debug, Indexed)]
#[indexed(object = manual)]
struct Pod {
    meta: Meta,
    #[index]
    node: String,
}

#[derive(Debug)]
struct Meta {
    namespace: String,
    name: String,
    rv: String,
}

impl Object for Pod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.meta.namespace, &self.meta.name)
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(ResourceVersion::new(&self.meta.rv))
    }
}

fn main() {
    let cache = Cache::<Pod>::new();
    let meta = Meta { namespace: "a".into(), name: "b".into(), rv: "9".into() };
    cache.add(Arc::new(Pod { meta, node: "n1".into() })).unwrap();
    assert_eq!(cache.by_node("n1")[0].key().to_string(), "a/b");
    assert_eq!(cache.resource_version().unwrap().as_str(), "9");
}
