//! The storage of one index: a trie from each value to a *record* `[value slot, bucket, size]`
//! in the word arena, where the bucket is a trie of the slots whose objects hold the value,
//! keyed by their keys' hashes. Buckets hold slot numbers, not keys and objects, so copying a
//! bucket node copies integers.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::hamt::{self, Mem, NONE, Probe, Words, rd};
use super::slots::{Arena, Slots, at};
use super::{Conflict, Hasher, Lookup, SlotProbe, Version};

/// An index function: pushes an object's values into the vector it is given.
pub(crate) type ValuesFn<T, V> = dyn Fn(&T, &mut Vec<V>) + Send + Sync;

/// One bucket of a snapshot: the trie of its entry ids and how many it holds.
#[derive(Clone, Copy)]
pub(crate) struct Bucket {
    /// The index it belongs to, whose word arena holds it.
    pub(crate) index: u32,
    pub(crate) root: u32,
    pub(crate) len: u32,
}

/// The writer's state for one index: its value arena and reusable vectors.
pub(crate) struct Writing<V> {
    slots: Slots<V>,
    old_values: Vec<V>,
    new_values: Vec<V>,
}

/// An index's storage with its value type erased, so indexes of different value types sit side
/// by side. Typed reads downcast to [`Table`].
pub(crate) trait ErasedTable<K, T>: Send + Sync {
    fn name(&self) -> &str;
    fn as_any(&self) -> &dyn Any;
    fn value_type(&self) -> &'static str;
    fn is_unique(&self) -> bool;
    /// An empty writer state ([`Writing`]).
    fn writing(&self) -> Box<dyn Any + Send + Sync>;
    /// The value arena of a writer state, for snapshots to read.
    fn view(&self, writing: &(dyn Any + Send + Sync)) -> Arc<dyn Any + Send + Sync>;
    /// Fails when writing `new` under the entry `old` (or a new key) would break a unique index.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        words: &Mem,
        writing: &(dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        root: u32,
        key: &K,
        slot: Option<u32>,
        new: &T,
    ) -> Result<(), Conflict>;
    /// Moves `slot`, whose key hashes to `hash`, from the buckets of `old`'s values to those of
    /// `new`'s (either may be absent); the new root. Values both have are left alone.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        w: &mut Words,
        writing: &mut (dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        root: u32,
        slot: u32,
        hash: u64,
        old: Option<&T>,
        new: Option<&T>,
    ) -> u32;
    /// An index of the objects in `slots`, built in one pass.
    fn build(
        &self,
        w: &mut Words,
        writing: &mut (dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        slots: &[u32],
    ) -> u32;
    /// Copies the index at `root` into a fresh arena.
    fn copy(
        &self,
        from: &Mem,
        from_writing: &(dyn Any + Send + Sync),
        root: u32,
        to: &mut Words,
        to_writing: &mut (dyn Any + Send + Sync),
    ) -> u32;
    /// The slots of the objects sharing any value with `obj` (client-go's `Index`).
    fn matching(&self, v: &Version<K, T>, i: usize, obj: &T) -> Vec<u32>;
    /// The bucket of a `String` value; `None` when the index's values are not strings.
    fn bucket_str(&self, v: &Version<K, T>, i: usize, value: &str) -> Option<Option<Bucket>>;
    /// Every value, when they are strings.
    fn values_str(&self, v: &Version<K, T>, i: usize) -> Option<Vec<String>>;
    /// Every (value rendered with Debug, slot) pair, for consistency checks.
    fn debug_entries(&self, v: &Version<K, T>, i: usize) -> Vec<(String, u32)>;
    /// The values of `obj`, rendered with Debug.
    fn debug_values(&self, obj: &T) -> Vec<String>;
    /// Checks that every bucket is non-empty and knows its size.
    fn verify_sizes(&self, v: &Version<K, T>, i: usize) -> Result<(), String>;
}

/// The storage of an index whose values are `V`.
pub(crate) struct Table<T, V> {
    name: Arc<str>,
    unique: bool,
    values_fn: Arc<ValuesFn<T, V>>,
    hasher: Hasher,
}

impl<T, V> Table<T, V> {
    pub(crate) fn new(
        name: Arc<str>,
        unique: bool,
        values_fn: Arc<ValuesFn<T, V>>,
        hasher: Hasher,
    ) -> Self {
        Self {
            name,
            unique,
            values_fn,
            hasher,
        }
    }
}

/// Finds a value's record by the value.
struct ValueProbe<'a, V, Q: ?Sized> {
    values: &'a Arena<V>,
    value: &'a Q,
    hasher: &'a Hasher,
}

impl<V: Borrow<Q> + Hash, Q: Eq + ?Sized> Probe for ValueProbe<'_, V, Q> {
    fn is(&self, words: &Mem, rec: u32) -> bool {
        at(self.values, rd(words, rec)).borrow() == self.value
    }
    fn hash_of(&self, words: &Mem, rec: u32) -> u64 {
        self.hasher.hash_one(at(self.values, rd(words, rec)))
    }
}

/// Writes a record `[value slot, bucket root, bucket size]`, over `prev` when no reader can see
/// it yet.
fn record(w: &mut Words, prev: Option<u32>, vid: u32, root: u32, len: u32) -> u32 {
    let at = match prev {
        Some(p) if p >= w.fresh => p,
        _ => w.alloc(3),
    };
    w.set(at, vid);
    w.set(at + 1, root);
    w.set(at + 2, len);
    at
}

fn writing_of<V: 'static>(w: &(dyn Any + Send + Sync)) -> &Writing<V> {
    match w.downcast_ref() {
        Some(w) => w,
        None => unreachable!("an index's writer state has its value type"),
    }
}

fn writing_mut<V: 'static>(w: &mut (dyn Any + Send + Sync)) -> &mut Writing<V> {
    match w.downcast_mut() {
        Some(w) => w,
        None => unreachable!("an index's writer state has its value type"),
    }
}

impl<T, V> Table<T, V>
where
    T: 'static,
    V: Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static,
{
    /// The object's values into `out` (empty on entry), sorted and without repeats.
    fn values_into(&self, obj: &T, out: &mut Vec<V>) {
        (self.values_fn)(obj, out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    fn values<'a, K>(&self, v: &'a Version<K, T>, i: usize) -> &'a Arena<V> {
        match v.values[i].downcast_ref::<Arc<Arena<V>>>() {
            Some(a) => a,
            None => unreachable!("an index's value arena has its value type"),
        }
    }

    /// Finds the record of `value` in a value trie whose values are in `values`.
    fn probe<'a, Q: ?Sized>(&'a self, values: &'a Arena<V>, value: &'a Q) -> ValueProbe<'a, V, Q> {
        ValueProbe {
            values,
            value,
            hasher: &self.hasher,
        }
    }

    /// The record of `value`.
    fn find<Q>(&self, words: &Mem, values: &Arena<V>, root: u32, value: &Q) -> Option<u32>
    where
        V: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        hamt::get(
            words,
            root,
            self.hasher.hash_one(value),
            &self.probe(values, value),
        )
    }

    /// The bucket of `value` in index `i` of a snapshot.
    pub(crate) fn bucket<K, Q>(&self, v: &Version<K, T>, i: usize, value: &Q) -> Option<Bucket>
    where
        V: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let words = &v.indexes[i];
        let rec = self.find(words, self.values(v, i), v.index_root(i), value)?;
        Some(Bucket {
            index: i as u32,
            root: rd(words, rec + 1),
            len: rd(words, rec + 2),
        })
    }

    /// Every value of index `i` of a snapshot.
    pub(crate) fn values_iter<'a, K>(
        &self,
        v: &'a Version<K, T>,
        i: usize,
    ) -> impl Iterator<Item = &'a V> + 'a {
        let values = self.values(v, i);
        let words = &v.indexes[i];
        hamt::Iter::new(words, v.index_root(i)).map(move |rec| at(values, rd(words, rec)))
    }

    /// Adds `slot`, whose key hashes to `hash`, to the bucket of `value`, creating the value's
    /// record if it has none.
    #[allow(clippy::too_many_arguments)]
    fn add<K>(
        &self,
        w: &mut Words,
        values: &Slots<V>,
        look: Lookup<'_, K, T>,
        root: u32,
        value: &V,
        slot: u32,
        hash: u64,
    ) -> u32 {
        let vh = self.hasher.hash_one(value);
        let probe = self.probe(&values.buf, value);
        // One walk: the record is rewritten and the path to it copied on the way back up.
        let added = hamt::modify(w, root, vh, &probe, |w, rec| {
            let (vid, broot, len) = (w.get(rec), w.get(rec + 1), w.get(rec + 2));
            let (nb, _) = hamt::insert(w, broot, hash, slot, &SlotProbe { slot, look });
            record(w, Some(rec), vid, nb, len + 1)
        });
        if let Some(root) = added {
            return root;
        }
        let vid = values.push(value.clone());
        let rec = record(w, None, vid, hamt::LEAF | slot, 1);
        hamt::insert(w, root, vh, rec, &probe).0
    }

    /// Removes `slot`, whose key hashes to `hash`, from the bucket of `value`, and the value's
    /// record with its last slot.
    #[allow(clippy::too_many_arguments)]
    fn drop_id<K>(
        &self,
        w: &mut Words,
        values: &Slots<V>,
        look: Lookup<'_, K, T>,
        root: u32,
        value: &V,
        slot: u32,
        hash: u64,
    ) -> u32 {
        let vh = self.hasher.hash_one(value);
        let probe = self.probe(&values.buf, value);
        let emptied = std::cell::Cell::new(false);
        let dropped = hamt::modify(w, root, vh, &probe, |w, rec| {
            let (vid, broot, len) = (w.get(rec), w.get(rec + 1), w.get(rec + 2));
            match hamt::remove(w, broot, hash, &SlotProbe { slot, look }) {
                // Not in the bucket: the record stays as it is.
                None => rec,
                Some((NONE, _)) => {
                    emptied.set(true);
                    NONE
                }
                Some((nb, _)) => record(w, Some(rec), vid, nb, len - 1),
            }
        });
        match dropped {
            Some(root) => root,
            None if emptied.get() => hamt::remove(w, root, vh, &probe).map_or(root, |r| r.0),
            None => root,
        }
    }
}

impl<K, T, V> ErasedTable<K, T> for Table<T, V>
where
    K: Debug + 'static,
    T: Send + Sync + 'static,
    V: Clone + Eq + Ord + Hash + Debug + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn value_type(&self) -> &'static str {
        std::any::type_name::<V>()
    }

    fn is_unique(&self) -> bool {
        self.unique
    }

    fn writing(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(Writing::<V> {
            slots: Slots::new(),
            old_values: Vec::new(),
            new_values: Vec::new(),
        })
    }

    fn view(&self, writing: &(dyn Any + Send + Sync)) -> Arc<dyn Any + Send + Sync> {
        Arc::new(writing_of::<V>(writing).slots.buf.clone())
    }

    fn check(
        &self,
        words: &Mem,
        writing: &(dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        root: u32,
        key: &K,
        slot: Option<u32>,
        new: &T,
    ) -> Result<(), Conflict> {
        if !self.unique {
            return Ok(());
        }
        let st = writing_of::<V>(writing);
        let mut values = Vec::new();
        self.values_into(new, &mut values);
        for value in values {
            let Some(rec) = self.find(words, &st.slots.buf, root, &value) else {
                continue;
            };
            let mut ids = hamt::Iter::new(words, rd(words, rec + 1));
            if let Some(holder) = ids.find(|id| Some(*id) != slot) {
                return Err(Conflict {
                    index: self.name.to_string(),
                    value: format!("{value:?}"),
                    key: format!("{key:?}"),
                    holder: format!("{:?}", look.key(holder)),
                });
            }
        }
        Ok(())
    }

    fn update(
        &self,
        w: &mut Words,
        writing: &mut (dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        mut root: u32,
        slot: u32,
        hash: u64,
        old: Option<&T>,
        new: Option<&T>,
    ) -> u32 {
        let Writing {
            slots: values,
            old_values: ov,
            new_values: nv,
        } = writing_mut::<V>(writing);
        if let Some(o) = old {
            self.values_into(o, ov);
        }
        if let Some(n) = new {
            self.values_into(n, nv);
        }
        if *ov != *nv {
            for value in ov.iter() {
                if nv.binary_search(value).is_err() {
                    root = self.drop_id(w, values, look, root, value, slot, hash);
                }
            }
            for value in nv.iter() {
                if ov.binary_search(value).is_err() {
                    root = self.add(w, values, look, root, value, slot, hash);
                }
            }
        }
        ov.clear();
        nv.clear();
        root
    }

    fn build(
        &self,
        w: &mut Words,
        writing: &mut (dyn Any + Send + Sync),
        look: Lookup<'_, K, T>,
        slots: &[u32],
    ) -> u32 {
        let st = writing_mut::<V>(writing);
        let mut groups: HashMap<V, Vec<(u64, u32)>, Hasher> = HashMap::default();
        let mut scratch = Vec::new();
        for &slot in slots {
            self.values_into(look.obj(slot), &mut scratch);
            let hash = look.hash(slot);
            for value in scratch.drain(..) {
                groups.entry(value).or_default().push((hash, slot));
            }
        }
        let mut recs: Vec<(u64, u32)> = groups
            .into_iter()
            .map(|(value, mut ids)| {
                ids.sort_unstable_by_key(|x| x.0);
                let broot = hamt::build(w, &ids);
                let vh = self.hasher.hash_one(&value);
                let vid = st.slots.push(value);
                (vh, record(w, None, vid, broot, ids.len() as u32))
            })
            .collect();
        recs.sort_unstable_by_key(|x| x.0);
        hamt::build(w, &recs)
    }

    fn copy(
        &self,
        from: &Mem,
        from_writing: &(dyn Any + Send + Sync),
        root: u32,
        to: &mut Words,
        to_writing: &mut (dyn Any + Send + Sync),
    ) -> u32 {
        let src = &writing_of::<V>(from_writing).slots.buf;
        let dst = writing_mut::<V>(to_writing);
        hamt::copy(from, root, to, &mut |to: &mut Words, rec: u32| {
            let broot = hamt::copy_same(from, rd(from, rec + 1), to);
            let vid = dst.slots.push(at(src, rd(from, rec)).clone());
            record(to, None, vid, broot, rd(from, rec + 2))
        })
    }

    fn matching(&self, v: &Version<K, T>, i: usize, obj: &T) -> Vec<u32> {
        let mut values = Vec::new();
        self.values_into(obj, &mut values);
        let (arena, root, words) = (self.values(v, i), v.index_root(i), &v.indexes[i]);
        let mut found: Vec<u32> = Vec::new();
        for value in &values {
            if let Some(rec) = self.find(words, arena, root, value) {
                found.extend(hamt::Iter::new(words, rd(words, rec + 1)));
            }
        }
        if values.len() > 1 {
            found.sort_unstable();
            found.dedup();
        }
        found
    }

    fn bucket_str(&self, v: &Version<K, T>, i: usize, value: &str) -> Option<Option<Bucket>> {
        let me = (self as &dyn Any).downcast_ref::<Table<T, String>>()?;
        Some(me.bucket(v, i, value))
    }

    fn values_str(&self, v: &Version<K, T>, i: usize) -> Option<Vec<String>> {
        let me = (self as &dyn Any).downcast_ref::<Table<T, String>>()?;
        Some(me.values_iter(v, i).cloned().collect())
    }

    fn debug_entries(&self, v: &Version<K, T>, i: usize) -> Vec<(String, u32)> {
        let (values, words) = (self.values(v, i), &v.indexes[i]);
        let mut out = Vec::new();
        for rec in hamt::Iter::new(words, v.index_root(i)) {
            let value = format!("{:?}", at(values, rd(words, rec)));
            out.extend(hamt::Iter::new(words, rd(words, rec + 1)).map(|id| (value.clone(), id)));
        }
        out
    }

    fn debug_values(&self, obj: &T) -> Vec<String> {
        let mut values = Vec::new();
        self.values_into(obj, &mut values);
        values.iter().map(|v| format!("{v:?}")).collect()
    }

    fn verify_sizes(&self, v: &Version<K, T>, i: usize) -> Result<(), String> {
        let words = &v.indexes[i];
        for rec in hamt::Iter::new(words, v.index_root(i)) {
            let counted = hamt::Iter::new(words, rd(words, rec + 1)).count();
            let recorded = rd(words, rec + 2) as usize;
            if counted == 0 || counted != recorded {
                return Err(format!(
                    "a bucket holds {counted} entries and records {recorded}"
                ));
            }
        }
        Ok(())
    }
}
