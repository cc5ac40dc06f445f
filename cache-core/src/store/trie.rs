//! A persistent hash array mapped trie with compact nodes: the map under every [`Snapshot`]
//! (objects by key, and each index's buckets by value).
//!
//! Why not a general-purpose persistent map: a cache write publishes a new version after every
//! change, so what a write copies decides its cost. Here a node is one allocation holding exactly
//! its occupied slots (no fixed-size arrays), an entry is stored inline in its parent's slot, and
//! a write copies only the nodes on the path to the entry it changes. A relist builds the whole
//! trie bottom-up from entries sorted by hash, in one pass.
//!
//! The trie is generic over its entry type ([`Entry`]), which names its own key: the primary map
//! stores `(key, Arc<object>)`, an index stores `Arc<bucket>` whose key is the index value, so
//! copying a node never clones a key string.
//!
//! [`Snapshot`]: super::Snapshot

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// Bits of hash consumed per level.
const BITS: u32 = 5;
/// Slot index mask.
const MASK: u64 = (1 << BITS) - 1;
/// The last level that still has hash bits; below it, colliding entries share one list.
const LAST_SHIFT: u32 = (63 / BITS) * BITS;

/// What a trie stores: a cheap-to-clone value that carries its own key.
pub(crate) trait Entry: Clone {
    /// The key type.
    type Key: Hash + Eq;
    /// The entry's key.
    fn key(&self) -> &Self::Key;

    /// Replaces this entry with `new`, which has an equal key, and returns the old entry.
    fn refresh(&mut self, new: Self) -> Self {
        std::mem::replace(self, new)
    }

    /// Reads (without writing) the memory that cloning or dropping this entry will write: the
    /// reference counts. See [`touch`].
    fn touch(&self) -> usize {
        0
    }
}

/// Reads the reference counts that cloning (or dropping) `slots` will change, before changing
/// any. An atomic increment of a count that is not in cache stalls the core until the line
/// arrives, and the next one cannot start before it finishes; plain reads of all of them first
/// overlap those misses, so the increments that follow hit the cache.
fn touch<E: Entry>(slots: &[Slot<E>]) -> usize {
    slots
        .iter()
        .map(|s| match s {
            Slot::Leaf(e) => e.touch(),
            Slot::Node(_, child) => Arc::strong_count(child),
        })
        .fold(0, usize::wrapping_add)
}

/// Mutable access to `slots`, copying them first when another version shares them.
fn make_mut<E: Entry>(slots: &mut Arc<[Slot<E>]>) -> &mut [Slot<E>] {
    if Arc::strong_count(slots) != 1 {
        std::hint::black_box(touch(slots));
    }
    Arc::make_mut(slots)
}

/// A hasher that only reads the first bytes it is given: hashing a key with it touches the
/// key's memory (its heap block, and the reference count stored in front of it) at little cost.
#[derive(Default)]
pub(crate) struct TouchHasher(u64);

impl std::hash::Hasher for TouchHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        if let Some(b) = bytes.first() {
            self.0 = self.0.wrapping_add(u64::from(*b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = self.0.wrapping_add(i);
    }
}

/// Touches `key`'s memory; see [`TouchHasher`].
pub(crate) fn touch_key<K: Hash>(key: &K) -> usize {
    let mut h = TouchHasher::default();
    key.hash(&mut h);
    std::hash::Hasher::finish(&h) as usize
}

impl<K: Hash + Eq + Clone, V: Clone> Entry for (K, V) {
    type Key = K;
    fn key(&self) -> &K {
        &self.0
    }

    /// Keeps the stored key: copies of it elsewhere (index buckets) then still share its
    /// allocation, and compare by pointer.
    fn refresh(&mut self, new: Self) -> Self {
        let old = std::mem::replace(&mut self.1, new.1);
        (self.0.clone(), old)
    }
}

/// One occupied position of a node: an entry, or a child node with its occupancy bitmap.
#[derive(Clone)]
enum Slot<E> {
    Leaf(E),
    Node(u32, Arc<[Slot<E>]>),
}

/// The slot index for `hash` at the level starting at `shift`. Levels use the hash from its top
/// bits down, so that sorting by hash groups entries level by level (see [`Trie::from_entries`]).
#[inline]
fn index(hash: u64, shift: u32) -> u32 {
    (hash.rotate_left(shift + BITS) & MASK) as u32
}

/// Where the slot for `bit` sits among a node's occupied slots. The nodes near the root of a
/// large trie are full, and there the position is the slot index itself: no population count
/// (which the baseline x86-64 target computes in software).
#[inline]
fn position(bitmap: u32, bit: u32) -> usize {
    if bitmap == u32::MAX {
        return bit.trailing_zeros() as usize;
    }
    (bitmap & (bit - 1)).count_ones() as usize
}

/// A persistent map of entries by key. Cloning is O(1) and shares every node.
pub(crate) struct Trie<E, S> {
    bitmap: u32,
    root: Arc<[Slot<E>]>,
    len: usize,
    hasher: S,
}

impl<E: Clone, S: Clone> Clone for Trie<E, S> {
    fn clone(&self) -> Self {
        Self {
            bitmap: self.bitmap,
            root: self.root.clone(),
            len: self.len,
            hasher: self.hasher.clone(),
        }
    }
}

impl<E: Entry, S: BuildHasher + Clone> Trie<E, S> {
    /// An empty trie hashing with `hasher`.
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Self {
            bitmap: 0,
            root: Arc::new([]),
            len: 0,
            hasher,
        }
    }

    /// The hasher, for building a trie that agrees with this one.
    pub(crate) fn hasher(&self) -> &S {
        &self.hasher
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn hash_of<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The entry with this key.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&E>
    where
        E::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_hashed(self.hash_of(key), key)
    }

    /// The entry with this key, whose hash the caller already knows.
    pub(crate) fn get_hashed<Q>(&self, hash: u64, key: &Q) -> Option<&E>
    where
        E::Key: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (mut bitmap, mut slots) = (self.bitmap, &*self.root);
        let mut shift = 0;
        loop {
            if shift > LAST_SHIFT {
                return slots.iter().find_map(|s| match s {
                    Slot::Leaf(e) if e.key().borrow() == key => Some(e),
                    _ => None,
                });
            }
            let bit = 1 << index(hash, shift);
            if bitmap & bit == 0 {
                return None;
            }
            match slots.get(position(bitmap, bit))? {
                Slot::Leaf(e) => return (e.key().borrow() == key).then_some(e),
                Slot::Node(b, child) => {
                    bitmap = *b;
                    slots = child;
                    shift += BITS;
                }
            }
        }
    }

    /// Mutable access to the entry with this key, copying the nodes on its path that another
    /// version shares (and none when the key is absent).
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut E>
    where
        E::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash_of(key);
        self.get_hashed(hash, key)?;
        let (mut bitmap, mut slots) = (self.bitmap, &mut self.root);
        let mut shift = 0;
        loop {
            if shift > LAST_SHIFT {
                return make_mut(slots).iter_mut().find_map(|s| match s {
                    Slot::Leaf(e) if e.key().borrow() == key => Some(e),
                    _ => None,
                });
            }
            let pos = position(bitmap, 1 << index(hash, shift));
            match make_mut(slots).get_mut(pos)? {
                // The key is present (checked above), so this leaf is its entry.
                Slot::Leaf(e) => return Some(e),
                Slot::Node(b, child) => {
                    bitmap = *b;
                    slots = child;
                    shift += BITS;
                }
            }
        }
    }

    /// Inserts `entry`, replacing and returning the entry with the same key. Copies the nodes on
    /// the path that are shared with another version; mutates the others in place.
    pub(crate) fn insert(&mut self, entry: E) -> Option<E> {
        let hash = self.hash_of(entry.key());
        let old = insert(
            &mut self.root,
            &mut self.bitmap,
            0,
            hash,
            entry,
            &self.hasher,
        );
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the entry with this key.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<E>
    where
        E::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash_of(key);
        let old = remove(&mut self.root, &mut self.bitmap, 0, hash, key)?;
        self.len -= 1;
        Some(old)
    }

    /// Before this version is dropped: touches the reference counts that dropping its own nodes
    /// (those no other version shares) will decrement. See [`touch`].
    pub(crate) fn prepare_drop(&self) {
        fn walk<E: Entry>(slots: &Arc<[Slot<E>]>) {
            if Arc::strong_count(slots) != 1 {
                return;
            }
            std::hint::black_box(touch(slots));
            for s in slots.iter() {
                if let Slot::Node(_, child) = s {
                    walk(child);
                }
            }
        }
        walk(&self.root);
    }

    /// Every entry, in hash order.
    pub(crate) fn iter(&self) -> Iter<'_, E> {
        Iter {
            stack: vec![self.root.iter()],
            left: self.len,
        }
    }

    /// A trie of `entries`, built bottom-up in one pass after sorting them by hash. When two
    /// entries have the same key, the later one is kept.
    pub(crate) fn from_entries(hasher: S, entries: impl IntoIterator<Item = E>) -> Self {
        let mut hashed: Vec<(u64, E)> = entries
            .into_iter()
            .map(|e| (hasher.hash_one(e.key()), e))
            .collect();
        // Stable: among equal keys (equal hashes) the input order is kept, so the last wins.
        hashed.sort_by_key(|(h, _)| *h);
        dedup_keep_last(&mut hashed);
        let len = hashed.len();
        let (bitmap, root) = build(&mut hashed.into_iter().peekable(), 0, None);
        Self {
            bitmap,
            root,
            len,
            hasher,
        }
    }
}

/// Keeps, among entries with equal keys (adjacent runs of equal hashes), only the last.
fn dedup_keep_last<E: Entry>(v: &mut Vec<(u64, E)>) {
    let mut i = 0;
    let mut out = 0;
    let len = v.len();
    while i < len {
        let mut j = i + 1;
        while j < len && v[j].0 == v[i].0 {
            j += 1;
        }
        for k in i..j {
            let later = (k + 1..j).any(|l| v[l].1.key() == v[k].1.key());
            if !later {
                v.swap(out, k);
                out += 1;
            }
        }
        i = j;
    }
    v.truncate(out);
}

/// Builds the node at `shift` from the next entries of `it` (sorted by hash) whose hash agrees
/// with `prefix` on the levels above.
fn build<E: Entry>(
    it: &mut std::iter::Peekable<std::vec::IntoIter<(u64, E)>>,
    shift: u32,
    prefix: Option<u64>,
) -> (u32, Arc<[Slot<E>]>) {
    let same_prefix = |h: u64| match prefix {
        // The bits consumed above this level: the top `shift` bits.
        Some(p) => shift == 0 || (h ^ p) >> (64 - shift.min(64)) == 0,
        None => true,
    };
    let mut bitmap = 0u32;
    let mut slots = Vec::new();
    if shift > LAST_SHIFT {
        while let Some((h, _)) = it.peek() {
            if !same_prefix(*h) {
                break;
            }
            if let Some((_, e)) = it.next() {
                slots.push(Slot::Leaf(e));
            }
        }
        return (0, slots.into());
    }
    while let Some(&(h, _)) = it.peek() {
        if !same_prefix(h) {
            break;
        }
        let Some((h, e)) = it.next() else { break };
        let idx = index(h, shift);
        // Does the next entry share this slot?
        let shares = it
            .peek()
            .is_some_and(|(n, _)| same_prefix(*n) && index(*n, shift) == idx);
        bitmap |= 1 << idx;
        if shares {
            // Put `e` back in front by building the child from a chain.
            let mut chained = std::iter::once((h, e)).chain(std::iter::from_fn(|| {
                let (n, _) = it.peek()?;
                if same_prefix(*n) && index(*n, shift) == idx {
                    it.next()
                } else {
                    None
                }
            }));
            let group: Vec<(u64, E)> = chained.by_ref().collect();
            let (b, child) = build(&mut group.into_iter().peekable(), shift + BITS, Some(h));
            slots.push(Slot::Node(b, child));
        } else {
            slots.push(Slot::Leaf(e));
        }
    }
    (bitmap, slots.into())
}

/// A node holding exactly the two leaves `a` and `b`, which agree on every level above `shift`.
fn pair<E: Entry>(a: E, ha: u64, b: E, hb: u64, shift: u32) -> Slot<E> {
    if shift > LAST_SHIFT {
        return Slot::Node(0, Arc::new([Slot::Leaf(a), Slot::Leaf(b)]));
    }
    let (ia, ib) = (index(ha, shift), index(hb, shift));
    if ia == ib {
        let child = pair(a, ha, b, hb, shift + BITS);
        return Slot::Node(1 << ia, Arc::new([child]));
    }
    let slots: Arc<[Slot<E>]> = if ia < ib {
        Arc::new([Slot::Leaf(a), Slot::Leaf(b)])
    } else {
        Arc::new([Slot::Leaf(b), Slot::Leaf(a)])
    };
    Slot::Node((1 << ia) | (1 << ib), slots)
}

/// `slots` with `slot` inserted at `pos`, in a new allocation.
fn inserted<E: Entry>(slots: &[Slot<E>], pos: usize, slot: Slot<E>) -> Arc<[Slot<E>]> {
    std::hint::black_box(touch(slots));
    let mut v = Vec::with_capacity(slots.len() + 1);
    v.extend_from_slice(&slots[..pos]);
    v.push(slot);
    v.extend_from_slice(&slots[pos..]);
    v.into()
}

/// `slots` without the slot at `pos`, in a new allocation.
fn removed<E: Entry>(slots: &[Slot<E>], pos: usize) -> Arc<[Slot<E>]> {
    std::hint::black_box(touch(slots));
    let mut v = Vec::with_capacity(slots.len().saturating_sub(1));
    v.extend_from_slice(&slots[..pos]);
    v.extend_from_slice(&slots[pos + 1..]);
    v.into()
}

fn insert<E: Entry, S: BuildHasher>(
    slots: &mut Arc<[Slot<E>]>,
    bitmap: &mut u32,
    shift: u32,
    hash: u64,
    entry: E,
    hasher: &S,
) -> Option<E> {
    if shift > LAST_SHIFT {
        // A collision list: every entry here has the same full hash.
        let pos = slots
            .iter()
            .position(|s| matches!(s, Slot::Leaf(e) if e.key() == entry.key()));
        return match pos {
            Some(pos) => match make_mut(slots).get_mut(pos)? {
                Slot::Leaf(e) => Some(e.refresh(entry)),
                Slot::Node(..) => None,
            },
            None => {
                let len = slots.len();
                *slots = inserted(slots, len, Slot::Leaf(entry));
                None
            }
        };
    }
    let bit = 1 << index(hash, shift);
    let pos = position(*bitmap, bit);
    if *bitmap & bit == 0 {
        *slots = inserted(slots, pos, Slot::Leaf(entry));
        *bitmap |= bit;
        return None;
    }
    let slot = make_mut(slots).get_mut(pos)?;
    match slot {
        Slot::Leaf(e) if e.key() == entry.key() => Some(e.refresh(entry)),
        Slot::Leaf(e) => {
            let other = e.clone();
            let other_hash = hasher.hash_one(other.key());
            *slot = pair(other, other_hash, entry, hash, shift + BITS);
            None
        }
        Slot::Node(b, child) => insert(child, b, shift + BITS, hash, entry, hasher),
    }
}

fn remove<E: Entry, Q>(
    slots: &mut Arc<[Slot<E>]>,
    bitmap: &mut u32,
    shift: u32,
    hash: u64,
    key: &Q,
) -> Option<E>
where
    E::Key: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if shift > LAST_SHIFT {
        let pos = slots
            .iter()
            .position(|s| matches!(s, Slot::Leaf(e) if e.key().borrow() == key))?;
        let old = match &slots[pos] {
            Slot::Leaf(e) => e.clone(),
            Slot::Node(..) => return None,
        };
        *slots = removed(slots, pos);
        return Some(old);
    }
    let bit = 1 << index(hash, shift);
    if *bitmap & bit == 0 {
        return None;
    }
    let pos = position(*bitmap, bit);
    match slots.get(pos)? {
        Slot::Leaf(e) => {
            if e.key().borrow() != key {
                return None;
            }
            let old = e.clone();
            *slots = removed(slots, pos);
            *bitmap &= !bit;
            Some(old)
        }
        Slot::Node(..) => {
            // Look before copying: an absent key must not copy the path.
            if !contains(slots, *bitmap, shift, hash, key) {
                return None;
            }
            let slot = make_mut(slots).get_mut(pos)?;
            let Slot::Node(b, child) = slot else {
                return None;
            };
            let old = remove(child, b, shift + BITS, hash, key)?;
            // Keep the trie compact: an emptied child goes, a child left with one entry is
            // pulled up into this slot.
            if child.is_empty() {
                *slots = removed(slots, pos);
                *bitmap &= !bit;
            } else if child.len() == 1
                && let Some(Slot::Leaf(e)) = child.first()
            {
                *slot = Slot::Leaf(e.clone());
            }
            Some(old)
        }
    }
}

fn contains<E: Entry, Q>(slots: &[Slot<E>], bitmap: u32, shift: u32, hash: u64, key: &Q) -> bool
where
    E::Key: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if shift > LAST_SHIFT {
        return slots
            .iter()
            .any(|s| matches!(s, Slot::Leaf(e) if e.key().borrow() == key));
    }
    let bit = 1 << index(hash, shift);
    if bitmap & bit == 0 {
        return false;
    }
    match slots.get(position(bitmap, bit)) {
        Some(Slot::Leaf(e)) => e.key().borrow() == key,
        Some(Slot::Node(b, child)) => contains(child, *b, shift + BITS, hash, key),
        None => false,
    }
}

/// Iterates a trie's entries, depth first.
pub(crate) struct Iter<'a, E> {
    stack: Vec<std::slice::Iter<'a, Slot<E>>>,
    left: usize,
}

impl<'a, E> Iterator for Iter<'a, E> {
    type Item = &'a E;

    fn next(&mut self) -> Option<&'a E> {
        loop {
            let top = self.stack.last_mut()?;
            match top.next() {
                Some(Slot::Leaf(e)) => {
                    self.left = self.left.saturating_sub(1);
                    return Some(e);
                }
                Some(Slot::Node(_, child)) => self.stack.push(child.iter()),
                None => {
                    self.stack.pop();
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<E> ExactSizeIterator for Iter<'_, E> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::hash::{BuildHasherDefault, Hasher};

    use proptest::prelude::*;

    use super::*;

    /// Hashes everything to the same few values, to exercise collision lists.
    #[derive(Default)]
    struct Clumsy(u64);
    impl Hasher for Clumsy {
        fn finish(&self) -> u64 {
            self.0 % 3
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(*b));
            }
        }
    }

    fn check<S: BuildHasher + Clone>(trie: &Trie<(u16, u32), S>, model: &BTreeMap<u16, u32>) {
        assert_eq!(trie.len(), model.len());
        let mut all: Vec<(u16, u32)> = trie.iter().copied().collect();
        all.sort_unstable();
        assert_eq!(all, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        for (k, v) in model {
            assert_eq!(trie.get(k), Some(&(*k, *v)));
        }
        for k in 0..64u16 {
            assert_eq!(trie.get(&k).is_some(), model.contains_key(&k));
        }
    }

    fn run<S: BuildHasher + Clone>(hasher: S, ops: &[(bool, u16, u32)]) {
        let mut trie = Trie::with_hasher(hasher.clone());
        let mut model = BTreeMap::new();
        let mut versions = Vec::new();
        for &(insert, k, v) in ops {
            versions.push((trie.clone(), model.clone()));
            if insert {
                assert_eq!(trie.insert((k, v)).map(|e| e.1), model.insert(k, v));
            } else {
                assert_eq!(trie.remove(&k).map(|e| e.1), model.remove(&k));
            }
            check(&trie, &model);
        }
        // Older versions are untouched by later writes.
        for (t, m) in &versions {
            check(t, m);
        }
        // Building in one pass gives the same map; later duplicates win.
        let mut entries: Vec<(u16, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        entries.insert(0, (7, 999));
        if let Some(v) = model.get(&7) {
            entries.push((7, *v));
        } else {
            entries.retain(|e| e.0 != 7);
        }
        let built = Trie::from_entries(hasher, entries);
        check(&built, &model);
    }

    proptest! {
        #[test]
        fn agrees_with_a_btreemap(ops in prop::collection::vec((any::<bool>(), 0..64u16, any::<u32>()), 0..200)) {
            run(foldhash::fast::RandomState::default(), &ops);
            run(BuildHasherDefault::<Clumsy>::default(), &ops);
        }
    }

    #[test]
    fn a_large_trie_built_in_one_pass_agrees_with_inserts() {
        let hasher = foldhash::fast::RandomState::default();
        let mut one_by_one = Trie::with_hasher(hasher.clone());
        for i in 0..20_000u32 {
            one_by_one.insert((i, i * 2));
        }
        let built = Trie::from_entries(hasher, (0..20_000u32).map(|i| (i, i * 2)));
        assert_eq!(built.len(), 20_000);
        for i in 0..20_000u32 {
            assert_eq!(built.get(&i), one_by_one.get(&i));
        }
        let mut a: Vec<_> = built.iter().copied().collect();
        let mut b: Vec<_> = one_by_one.iter().copied().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        for i in (0..20_000u32).step_by(3) {
            one_by_one.remove(&i);
        }
        assert_eq!(one_by_one.len(), 20_000 - 6_667);
    }
}
