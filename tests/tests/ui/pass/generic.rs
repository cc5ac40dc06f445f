use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use cache_core::{Cache, Indexed};

// Bounds only where needed: `Id` is the key, `Tag` an index value, `Extra` neither (it only has
// to be storable).
#[derive(Debug, Indexed)]
struct Tagged<Id, Tag, Extra = ()>
where
    Extra: Debug,
{
    #[key]
    id: Id,
    #[index(each)]
    tags: BTreeSet<Tag>,
    #[index]
    primary: Option<Tag>,
    extra: Extra,
}

// Used generically: the derived impls need nothing more than this.
fn tagged_with<Id, Tag>(cache: &Cache<Tagged<Id, Tag>>, tag: &Tag) -> usize
where
    Id: Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static,
    Tag: Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static,
{
    cache.by_tags(tag).len()
}

#[derive(Debug)]
struct NotAValue;

fn main() {
    let cache = Cache::<Tagged<u32, &'static str>>::new();
    cache
        .add(Arc::new(Tagged { id: 1, tags: ["a", "b"].into(), primary: Some("a"), extra: () }))
        .unwrap();
    cache
        .add(Arc::new(Tagged { id: 2, tags: ["b"].into(), primary: None, extra: () }))
        .unwrap();
    assert_eq!(tagged_with(&cache, &"b"), 2);
    assert_eq!(cache.by_primary(&"a").len(), 1);
    assert_eq!(cache.tags_values(), ["a", "b"]);
    assert_eq!(Tagged::<u32, &str>::indexers().len(), 2);

    // `Extra` is not an index value, and need not be.
    let other = Cache::<Tagged<u32, u8, NotAValue>>::new();
    other
        .add(Arc::new(Tagged { id: 1, tags: [7].into(), primary: None, extra: NotAValue }))
        .unwrap();
    assert_eq!(other.by(Tagged::<u32, u8, NotAValue>::TAGS, &7).len(), 1);
}
