use std::sync::Arc;

use cache_core::{Cache, Indexed};

#[derive(Debug, Indexed)]
struct Slots<const N: usize> {
    #[key]
    name: String,
    #[index(each)]
    slots: [u16; N],
}

fn main() {
    let cache = Cache::<Slots<2>>::new();
    cache.add(Arc::new(Slots { name: "a".into(), slots: [1, 2] })).unwrap();
    assert_eq!(cache.by_slots(&2).len(), 1);
    assert_eq!(SlotsIndex::ALL, [SlotsIndex::Slots]);
}
