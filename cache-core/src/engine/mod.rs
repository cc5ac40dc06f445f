//! The storage engine under every [`Snapshot`](crate::Snapshot): the objects by key and each
//! index, in persistent structures whose nodes refer to each other by number.
//!
//! # Why numbers, not pointers
//!
//! A cache publishes a new version after every write, so what a write copies decides its cost.
//! With reference-counted child pointers, copying a node increments the count of every sibling
//! it holds, and freeing the replaced node decrements them all again: most of a write went
//! there. Here nodes live in an append-only arena of words ([`hamt`]) and name their children
//! by offset; the objects, the keys and each index's values live in append-only arenas of
//! write-once slots ([`slots`]), named by number. Copying a node copies integers.
//!
//! Each key keeps a *slot* for as long as it is present, and the key arena holds the key (with
//! its hash) under that slot number. A hash table, the [`directory`], finds a key's slot; only
//! the writer adds to it, and it never changes a slot it gave. Every index bucket names slots
//! too. A persistent vector ([`vector`]) maps each slot to its current *entry*, the object's
//! place in the entry arena: it is what makes a version's objects its own. An update that keeps
//! the object's index values stores the object as a new entry and copies one vector path; it
//! touches no trie and no key.
//!
//! The vector (with the root records) and each index have a word arena of their own. A write
//! grows only the arenas of what it changes, and each arena is compacted on its own growth: an
//! update copies no index whose values it keeps. A published [`Version`] holds the arenas and
//! the offset of its root record; the writer keeps appending past what any version can reach,
//! and a version never changes.
//!
//! # Reclaiming space
//!
//! Replaced nodes and entries stay in the arenas until the writer *compacts*. Once the replaced
//! entries exceed a tenth of the live ones, it copies the live entries into a fresh entry arena
//! and renumbers the vector's leaves into a fresh vector arena (so at most about a tenth of the
//! objects the cache holds are stale ones). An entry is an object alone, so copying one changes
//! one reference count. Once the words in use in an arena exceed six times those live after
//! its last compaction, it copies that arena's live tries, as they are, into fresh chunks. A
//! removed key keeps its slot, its place in the key arena and in the directory (the same key
//! added again takes it back) until the slots so freed exceed a tenth of the live ones: the
//! writer then rebuilds the key arena and the directory with those slots empty, for new keys to
//! take. Each is a copy of the live state every so many writes in proportion to it:
//! O(1) amortized per write. Snapshots taken before keep the old arenas alive; the writer frees
//! them, never a reader, once no snapshot uses them, and reuses their chunks.

mod directory;
pub(crate) mod hamt;
mod slots;
mod table;
mod vector;

use std::any::Any;
use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use directory::{Dir, Directory};
use hamt::{Mem, NONE, Probe, Words, rd};
use slots::{Arena, KeyArena, Keys, Slots, at, get_at, key_at};
pub(crate) use table::{Bucket, ErasedTable, Table, ValuesFn};
use vector::Vector;

/// The hasher of every map in the crate.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// One object of a version, with the slot of its key: what reads of many objects yield. The
/// key and the object are looked up when asked for, so a read that wants objects alone does
/// not touch the keys.
pub(crate) struct Item<'a, K, T> {
    look: Lookup<'a, K, T>,
    slot: u32,
    id: u32,
}

impl<K, T> Clone for Item<'_, K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Item<'_, K, T> {}

impl<'a, K, T> Item<'a, K, T> {
    #[inline]
    pub(crate) fn key(&self) -> &'a K {
        &key_at(self.look.keys, self.slot).0
    }

    #[inline]
    pub(crate) fn obj(&self) -> &'a Arc<T> {
        at(self.look.entries, self.id)
    }
}

/// A write that would put a second entry under a value of a unique index.
#[derive(Debug)]
pub(crate) struct Conflict {
    pub(crate) index: String,
    pub(crate) value: String,
    pub(crate) key: String,
    pub(crate) holder: String,
}

type Tables<K, T> = Arc<[Arc<dyn ErasedTable<K, T>>]>;
type ValueViews = Arc<[Arc<dyn Any + Send + Sync>]>;

/// The arenas a version reads, shared by every version published between two changes of any
/// of them (a chunk added, a compaction, a relist, new indexes). Aligned so that its reference
/// count, which each publish and each dropped snapshot change, does not share a cache line with
/// the pointers readers load on every read.
#[repr(align(128))]
pub(crate) struct Arenas<K, T> {
    /// The slot of each key.
    directory: Directory,
    /// The vector's words and the root records.
    pub(crate) vector: Arc<Mem>,
    /// Each index's words.
    pub(crate) indexes: Box<[Arc<Mem>]>,
    /// The key of each slot.
    pub(crate) keys: Arc<KeyArena<K>>,
    /// The objects; the vector maps each slot to its object's number here.
    pub(crate) entries: Arc<Arena<Arc<T>>>,
    /// The entry each slot was last given ([`NONE`] once removed), which the writer overwrites
    /// in place: a version reads it when the entry is older than the version.
    latest: Arc<Arena<AtomicU32>>,
    pub(crate) values: ValueViews,
    pub(crate) tables: Tables<K, T>,
    hasher: Hasher,
}

/// One published version of the storage: what a snapshot reads. It never changes.
///
/// The roots a get needs are held here, beside the arenas, rather than in the vector's arena:
/// a reader that loads a version just published reads them from the line it loads anyway.
pub(crate) struct Version<K, T> {
    arenas: Arc<Arenas<K, T>>,
    count: u32,
    /// The entries stored when this version was published.
    entries_len: u32,
    slots: Vector,
    /// The offset of the index roots, in the vector's arena.
    index_roots: u32,
}

impl<K, T> std::ops::Deref for Version<K, T> {
    type Target = Arenas<K, T>;
    #[inline]
    fn deref(&self) -> &Arenas<K, T> {
        &self.arenas
    }
}

/// Positions in the writer's root record; those from `R_INDEXES` on are published in the
/// vector's arena.
const R_LEN: usize = 0;
const R_VECTOR: usize = 1;
const R_SHAPE: usize = 2;
const R_INDEXES: usize = 3;

/// Finds the key and the object of a slot: the key arena, the entry arena and the vector of
/// one version.
pub(crate) struct Lookup<'a, K, T> {
    keys: &'a KeyArena<K>,
    entries: &'a Arena<Arc<T>>,
    mem: &'a Mem,
    vector: Vector,
}

impl<K, T> Clone for Lookup<'_, K, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T> Copy for Lookup<'_, K, T> {}

impl<'a, K, T> Lookup<'a, K, T> {
    /// The object in `slot`.
    #[inline]
    pub(crate) fn obj(&self, slot: u32) -> &'a Arc<T> {
        at(self.entries, self.vector.get(self.mem, slot))
    }

    /// The key in `slot`.
    #[inline]
    pub(crate) fn key(&self, slot: u32) -> &'a K {
        &key_at(self.keys, slot).0
    }

    /// The hash of the key in `slot`.
    #[inline]
    pub(crate) fn hash(&self, slot: u32) -> u64 {
        key_at(self.keys, slot).1
    }
}

impl<K, T> Clone for Version<K, T> {
    fn clone(&self) -> Self {
        Self {
            arenas: self.arenas.clone(),
            ..*self
        }
    }
}

/// Finds a slot by number.
pub(crate) struct SlotProbe<'a, K, T> {
    pub(crate) slot: u32,
    pub(crate) look: Lookup<'a, K, T>,
}

impl<K, T> Probe for SlotProbe<'_, K, T> {
    fn is(&self, _: &Mem, p: u32) -> bool {
        p == self.slot
    }
    fn hash_of(&self, _: &Mem, p: u32) -> u64 {
        self.look.hash(p)
    }
}

impl<K, T> Version<K, T> {
    /// The root of index `i`.
    pub(crate) fn index_root(&self, i: usize) -> u32 {
        rd(&self.vector, self.index_roots + i as u32)
    }

    pub(crate) fn lookup(&self) -> Lookup<'_, K, T> {
        Lookup {
            keys: &self.keys,
            entries: &self.entries,
            mem: &self.vector,
            vector: self.slots,
        }
    }

    /// The object in `slot`.
    #[inline]
    pub(crate) fn obj(&self, slot: u32) -> &Arc<T> {
        self.lookup().obj(slot)
    }

    /// The key in `slot`.
    #[inline]
    pub(crate) fn key(&self, slot: u32) -> &K {
        self.lookup().key(slot)
    }
}

impl<K: Hash + Eq, T> Version<K, T> {
    /// The number of objects.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// The object under this key.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&Arc<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let keys = &*self.keys;
        let slot = self
            .directory
            .find(hash, |s| key_at(keys, s).0.borrow() == key)?;
        // The slot's latest entry is this version's if it is older than the version, since a
        // later write would have given the slot a newer one. Otherwise (the slot was written
        // since, or its key removed) the version's vector knows; it has no entry for keys the
        // directory knows but the version does not, added since or removed before it.
        let id = match get_at(&self.latest, slot).map(|l| l.load(Relaxed)) {
            Some(id) if id < self.entries_len => id,
            _ => self.slots.get(&self.vector, slot),
        };
        (id != NONE).then(|| at(&self.entries, id))
    }

    /// Every object, in slot order: straight down the vector, whose leaves (after a
    /// compaction) are in the order of the entries' arena.
    pub(crate) fn objects(&self) -> impl ExactSizeIterator<Item = &Arc<T>> {
        let look = self.lookup();
        Counted {
            inner: vector::Iter::new(look.mem, look.vector).map(move |id| at(look.entries, id)),
            left: self.len(),
        }
    }

    /// Every object with its key, in slot order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = Item<'_, K, T>> {
        let look = self.lookup();
        let mut slots = vector::Iter::new(look.mem, look.vector);
        Counted {
            inner: std::iter::from_fn(move || {
                let (slot, id) = slots.next_slot()?;
                Some(Item { look, slot, id })
            }),
            left: self.len(),
        }
    }

    /// The objects of a bucket, with their slots.
    pub(crate) fn ids(&self, bucket: Bucket) -> Ids<'_, K, T> {
        Ids {
            slots: hamt::Iter::new(&self.indexes[bucket.index as usize], bucket.root),
            look: self.lookup(),
            batch: [0; vector::BATCH],
            ids: [0; vector::BATCH],
            len: 0,
            next: 0,
        }
    }
}

/// The objects of a trie of slots. Slots are resolved to entries a batch at a time
/// ([`Vector::resolve`]), so that the vector walks of a batch overlap.
pub(crate) struct Ids<'a, K, T> {
    slots: hamt::Iter<'a>,
    look: Lookup<'a, K, T>,
    /// The slots of the current batch.
    batch: [u32; vector::BATCH],
    /// The entries of those slots.
    ids: [u32; vector::BATCH],
    len: usize,
    next: usize,
}

impl<'a, K, T> Iterator for Ids<'a, K, T> {
    type Item = Item<'a, K, T>;

    #[inline]
    fn next(&mut self) -> Option<Item<'a, K, T>> {
        if self.next == self.len {
            self.len = 0;
            self.next = 0;
            for (b, slot) in self.batch.iter_mut().zip(self.slots.by_ref()) {
                *b = slot;
                self.len += 1;
            }
            if self.len == 0 {
                return None;
            }
            let ids = &mut self.ids[..self.len];
            ids.copy_from_slice(&self.batch[..self.len]);
            self.look.vector.resolve(self.look.mem, ids);
        }
        let (slot, id) = (self.batch[self.next], self.ids[self.next]);
        self.next += 1;
        Some(Item {
            look: self.look,
            slot,
            id,
        })
    }
}

/// An iterator that knows its length.
struct Counted<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let x = self.inner.next()?;
        self.left = self.left.saturating_sub(1);
        Some(x)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator> ExactSizeIterator for Counted<I> {}

/// Arenas replaced by a compaction or a relist, kept until no snapshot uses them.
enum Old<K, T> {
    Entries(Arc<Arena<Arc<T>>>, Arc<Arena<AtomicU32>>),
    Keys(Arc<KeyArena<K>>),
    Directory(Directory),
    Values(ValueViews),
}

impl<K, T> Old<K, T> {
    fn in_use(&self) -> bool {
        match self {
            Old::Entries(a, l) => Arc::strong_count(a) > 1 || Arc::strong_count(l) > 1,
            Old::Keys(a) => Arc::strong_count(a) > 1,
            Old::Directory(d) => d.in_use(),
            Old::Values(a) => Arc::strong_count(a) > 1,
        }
    }
}

/// Floor of the compaction thresholds, so that a small cache does not compact all the time.
const SLACK_ENTRIES: u32 = 64;
const SLACK_WORDS: u32 = 1 << 14;
/// Compact when the words in use exceed this many times those live after the last compaction.
const WORD_GROWTH: u32 = 6;

/// A word arena with the words it held live right after its last compaction.
struct Space {
    words: Words,
    live: u32,
}

impl Space {
    fn new(words: Words) -> Self {
        let live = words.used;
        Self { words, live }
    }

    /// Whether the words in use exceed [`WORD_GROWTH`] times those live after the last
    /// compaction.
    fn grown(&self) -> bool {
        self.words.used > self.live.saturating_mul(WORD_GROWTH) + SLACK_WORDS
    }

    /// Makes `words` (a compacted copy) the arena; the old one goes to its care until no
    /// snapshot uses it.
    fn install(&mut self, words: Words) {
        let old = std::mem::replace(&mut self.words, words);
        self.words.retire(old);
        self.words.fresh = 0;
        self.live = self.words.used;
    }

    /// An empty arena that takes over this one's spare chunks.
    fn successor(&mut self) -> Words {
        self.words.successor()
    }
}

/// The writer's indexes, borrowed apart from its other fields so that a write can update them
/// while it reads the entries and the vector.
struct Indexes<'a, K, T> {
    tables: &'a [Arc<dyn ErasedTable<K, T>>],
    spaces: &'a mut [Space],
    writing: &'a mut [Box<dyn Any + Send + Sync>],
    roots: &'a mut [u32],
}

impl<K, T> Indexes<'_, K, T> {
    /// Moves `slot` (its key hashing to `hash`) from the buckets of `old`'s values to those of
    /// `new`'s, in every index.
    fn update(
        self,
        look: Lookup<'_, K, T>,
        slot: u32,
        hash: u64,
        old: Option<&T>,
        new: Option<&T>,
    ) {
        for (i, t) in self.tables.iter().enumerate() {
            self.roots[i] = t.update(
                &mut self.spaces[i].words,
                &mut *self.writing[i],
                look,
                self.roots[i],
                slot,
                hash,
                old,
                new,
            );
        }
    }
}

/// The only writer of a cache's storage. It builds on what it last published and publishes
/// [`Version`]s.
pub(crate) struct Writer<K, T> {
    /// The slot of each key in the key arena.
    directory: Dir,
    /// The vector's words and the root records.
    vector: Space,
    /// Each index's words.
    indexes: Vec<Space>,
    keys: Keys<K>,
    entries: Slots<Arc<T>>,
    /// The entry each slot was last given, in place.
    latest: Slots<AtomicU32>,
    writing: Vec<Box<dyn Any + Send + Sync>>,
    views: ValueViews,
    views_stale: bool,
    tables: Tables<K, T>,
    /// The root record of the next version: `[object count, vector root, vector shape, index
    /// roots...]`.
    roots: Vec<u32>,
    /// Whether any index is unique.
    unique: bool,
    /// Where the vector's arena holds the index roots as last published; `None` after the
    /// arena is replaced or the indexes change.
    index_record: Option<u32>,
    /// Empty slots of the key arena, for new keys.
    free: Vec<u32>,
    /// How many slots removals freed since the key arena was last rebuilt: they still hold
    /// their keys (the same key added again takes its slot back), and take new ones once a
    /// rebuild has emptied them.
    freed: u32,
    /// The lowest slot never used.
    next_slot: u32,
    /// Entries replaced or removed since the last compaction.
    dead: u32,
    hasher: Hasher,
    /// The arenas as last published, reused until one of them changes.
    published: Option<Arc<Arenas<K, T>>>,
    old: Vec<Old<K, T>>,
    /// How many compactions ran (for tests and benchmarks).
    compactions: u64,
}

impl<K, T> Writer<K, T>
where
    K: Clone + Hash + Eq + Debug + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    /// An empty store with these indexes.
    pub(crate) fn new(tables: Vec<Arc<dyn ErasedTable<K, T>>>, hasher: Hasher) -> Self {
        let writing: Vec<_> = tables.iter().map(|t| t.writing()).collect();
        let views = tables
            .iter()
            .zip(&writing)
            .map(|(t, w)| t.view(&**w))
            .collect();
        let unique = tables.iter().any(|t| t.is_unique());
        let mut roots = vec![0, Vector::EMPTY.root, Vector::EMPTY.shape()];
        roots.extend(tables.iter().map(|_| NONE));
        Self {
            directory: Dir::with(std::iter::empty()),
            vector: Space::new(Words::new()),
            indexes: tables.iter().map(|_| Space::new(Words::new())).collect(),
            keys: Keys::with(0, []),
            entries: Slots::new(),
            latest: Slots::new(),
            writing,
            views,
            views_stale: false,
            tables: tables.into(),
            roots,
            index_record: None,
            unique,
            free: Vec::new(),
            freed: 0,
            next_slot: 0,
            dead: 0,
            hasher,
            published: None,
            old: Vec::new(),
            compactions: 0,
        }
    }

    pub(crate) fn compactions(&self) -> u64 {
        self.compactions
    }

    fn vector(&self) -> Vector {
        Vector::from_record(self.roots[R_VECTOR], self.roots[R_SHAPE])
    }

    fn set_vector(&mut self, slot: u32, entry: u32) {
        let v = self.vector().set(&mut self.vector.words, slot, entry);
        self.roots[R_VECTOR] = v.root;
        self.roots[R_SHAPE] = v.shape();
    }

    fn lookup(&self) -> Lookup<'_, K, T> {
        Lookup {
            keys: &self.keys.buf,
            entries: &self.entries.buf,
            mem: &self.vector.words.buf,
            vector: self.vector(),
        }
    }

    /// The slot of the key, and the number of its entry ([`NONE`] when the key was removed
    /// since the key arena was last rebuilt).
    fn find(&self, key: &K, hash: u64) -> Option<(u32, u32)> {
        let keys = &*self.keys.buf;
        let slot = self
            .directory
            .table
            .find(hash, |s| key_at(keys, s).0 == *key)?;
        Some((slot, at(&self.latest.buf, slot).load(Relaxed)))
    }

    /// Inserts or replaces the object under `key`.
    ///
    /// # Errors
    ///
    /// A unique index conflict; nothing is written then.
    pub(crate) fn put(&mut self, key: K, obj: Arc<T>) -> Result<(), Conflict> {
        self.maybe_compact();
        let hash = self.hasher.hash_one(&key);
        // Entries stay where they are while the arena grows, so `old` and the new entry are
        // borrowed from it, not cloned; the borrows below are field by field for that reason.
        let found = self.find(&key, hash);
        let entries = &self.entries.buf;
        let (slot, old) = match found {
            Some((slot, NONE)) => (Some(slot), None),
            Some((slot, id)) => (Some(slot), Some(at(entries, id))),
            None => (None, None),
        };
        if old.is_some_and(|o| Arc::ptr_eq(o, &obj)) {
            return Ok(());
        }
        for (i, t) in self.tables.iter().enumerate() {
            if self.unique && t.is_unique() {
                let root = self.roots[R_INDEXES + i];
                t.check(
                    &self.indexes[i].words.buf,
                    &*self.writing[i],
                    self.lookup(),
                    root,
                    &key,
                    slot,
                    &obj,
                )?;
            }
        }
        let id = self.entries.push(obj);
        // A present key keeps its slot, and the key stored in it; so does a key removed since
        // the key arena was last rebuilt.
        let slot = match (slot, old) {
            (Some(s), Some(_)) => {
                self.dead += 1;
                s
            }
            (Some(s), None) => {
                self.freed -= 1;
                self.roots[R_LEN] += 1;
                s
            }
            (None, _) => {
                let s = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.next_slot += 1;
                        let s = self.latest.push(AtomicU32::new(NONE));
                        debug_assert_eq!(s, self.next_slot - 1);
                        s
                    }
                };
                self.keys.set(s, key, hash);
                if let Some(d) = self.directory.insert(hash, s) {
                    self.old.push(Old::Directory(d));
                }
                self.roots[R_LEN] += 1;
                s
            }
        };
        at(&self.latest.buf, slot).store(id, Relaxed);
        let vector = self.vector().set(&mut self.vector.words, slot, id);
        self.roots[R_VECTOR] = vector.root;
        self.roots[R_SHAPE] = vector.shape();
        let look = Lookup {
            keys: &self.keys.buf,
            entries,
            mem: &self.vector.words.buf,
            vector,
        };
        let new = &**at(entries, id);
        let indexes = Indexes {
            tables: &self.tables,
            spaces: &mut self.indexes,
            writing: &mut self.writing,
            roots: &mut self.roots[R_INDEXES..],
        };
        indexes.update(look, slot, hash, old.map(|o| &**o), Some(new));
        Ok(())
    }

    /// Removes the object under `key`; returns it.
    pub(crate) fn remove(&mut self, key: &K) -> Option<Arc<T>> {
        self.maybe_compact();
        let hash = self.hasher.hash_one(key);
        let (slot, id) = self.find(key, hash)?;
        if id == NONE {
            return None;
        }
        let old = at(&self.entries.buf, id).clone();
        self.roots[R_LEN] -= 1;
        self.dead += 1;
        let look = Lookup {
            keys: &self.keys.buf,
            entries: &self.entries.buf,
            mem: &self.vector.words.buf,
            vector: self.vector(),
        };
        let indexes = Indexes {
            tables: &self.tables,
            spaces: &mut self.indexes,
            writing: &mut self.writing,
            roots: &mut self.roots[R_INDEXES..],
        };
        indexes.update(look, slot, hash, Some(&old), None);
        self.set_vector(slot, NONE);
        at(&self.latest.buf, slot).store(NONE, Relaxed);
        self.freed += 1;
        Some(old)
    }

    /// Publishes what was written so far as a new version.
    pub(crate) fn publish(&mut self) -> Version<K, T> {
        // Value arenas replaced (by a compaction, a relist, new indexes) must be shown to readers.
        if self.views_stale {
            let views: ValueViews = self
                .tables
                .iter()
                .zip(&self.writing)
                .map(|(t, w)| t.view(&**w))
                .collect();
            self.old
                .push(Old::Values(std::mem::replace(&mut self.views, views)));
            self.views_stale = false;
        }
        let vw = &mut self.vector.words;
        let index_roots = &self.roots[R_INDEXES..];
        // The index roots as last published, when no write changed them since (an update that
        // keeps its index values changes none).
        let at = match self.index_record {
            Some(at) if (0..index_roots.len()).all(|i| vw.get(at + i as u32) == index_roots[i]) => {
                at
            }
            _ => {
                let at = vw.alloc(index_roots.len() as u32);
                for (i, r) in index_roots.iter().enumerate() {
                    vw.set(at + i as u32, *r);
                }
                self.index_record = Some(at);
                at
            }
        };
        self.vector.words.fresh = self.vector.words.used;
        for s in &mut self.indexes {
            s.words.fresh = s.words.used;
        }
        let current = self.published.as_ref().is_some_and(|a| {
            Arc::ptr_eq(&a.entries, &self.entries.buf)
                && Arc::ptr_eq(&a.latest, &self.latest.buf)
                && Arc::ptr_eq(&a.keys, &self.keys.buf)
                && Arc::ptr_eq(&a.values, &self.views)
                && Arc::ptr_eq(&a.tables, &self.tables)
                && a.directory.same(&self.directory.table)
                && Arc::ptr_eq(&a.vector, self.vector.words.view())
                && a.indexes.len() == self.indexes.len()
                && a.indexes
                    .iter()
                    .zip(&mut self.indexes)
                    .all(|(a, s)| Arc::ptr_eq(a, s.words.view()))
        });
        if !current {
            self.published = Some(Arc::new(Arenas {
                directory: self.directory.table.clone(),
                vector: self.vector.words.view().clone(),
                indexes: self
                    .indexes
                    .iter_mut()
                    .map(|s| s.words.view().clone())
                    .collect(),
                keys: self.keys.buf.clone(),
                entries: self.entries.buf.clone(),
                latest: self.latest.buf.clone(),
                values: self.views.clone(),
                tables: self.tables.clone(),
                hasher: self.hasher.clone(),
            }));
        }
        let arenas = match &self.published {
            Some(a) => a.clone(),
            None => unreachable!("set above"),
        };
        Version {
            arenas,
            count: self.roots[R_LEN],
            entries_len: self.entries.buf.len() as u32,
            slots: self.vector(),
            index_roots: at,
        }
    }

    /// Frees the arenas that no snapshot uses any more.
    pub(crate) fn free_unused(&mut self) {
        self.old.retain(Old::in_use);
        self.vector.words.recycle();
        for s in &mut self.indexes {
            s.words.recycle();
        }
    }

    fn maybe_compact(&mut self) {
        let live = self.roots[R_LEN];
        if self.dead > live / 10 + SLACK_ENTRIES {
            self.compact_entries();
        }
        if self.freed > live / 10 + SLACK_ENTRIES {
            self.rebuild_keys();
        }
        if self.vector.grown() {
            self.compact_vector();
        }
        for i in 0..self.indexes.len() {
            if self.indexes[i].grown() {
                self.compact_index(i);
            }
        }
    }

    /// Reclaims every arena now.
    pub(crate) fn compact(&mut self) {
        self.compact_entries();
        self.rebuild_keys();
        for i in 0..self.indexes.len() {
            self.compact_index(i);
        }
    }

    /// Copies the live entries into a fresh entry arena and the vector, its leaves renumbered in
    /// slot order, into a fresh vector arena. The tries name slots, not entries, so they stay as
    /// they are.
    fn compact_entries(&mut self) {
        let src = &self.entries.buf;
        let mut kept = Vec::with_capacity(self.roots[R_LEN] as usize);
        let mut to = self.vector.successor();
        let vector = vector::copy(&self.vector.words.buf, self.vector(), &mut to, &mut |id| {
            kept.push(at(src, id).clone());
            (kept.len() - 1) as u32
        });
        let entries = Slots::filled(kept);
        self.install_vector(to, vector);
        self.install_entries(entries);
        self.dead = 0;
        self.compactions += 1;
    }

    /// Makes `entries` the entry arena, which the vector (installed first) numbers, with fresh
    /// latest-entry cells read from the vector.
    fn install_entries(&mut self, entries: Slots<Arc<T>>) {
        let mut latest: Vec<AtomicU32> =
            (0..self.next_slot).map(|_| AtomicU32::new(NONE)).collect();
        for (slot, id) in self.live() {
            latest[slot as usize] = AtomicU32::new(id);
        }
        let entries = std::mem::replace(&mut self.entries, entries);
        let latest = std::mem::replace(&mut self.latest, Slots::filled(latest));
        self.old.push(Old::Entries(entries.buf, latest.buf));
    }

    /// Copies the keys of the present objects into a fresh key arena and a fresh directory:
    /// the other slots are empty there, and take new keys.
    fn rebuild_keys(&mut self) {
        let src = &self.keys.buf;
        let live: Vec<u32> = self.live().map(|(slot, _)| slot).collect();
        let keys = Keys::with(
            self.next_slot,
            live.iter().map(|&slot| {
                let (key, hash) = key_at(src, slot);
                (slot, key.clone(), *hash)
            }),
        );
        let directory = Dir::with(live.iter().map(|&slot| (key_at(src, slot).1, slot)));
        self.free.clear();
        let mut next = live.iter().peekable();
        for slot in 0..self.next_slot {
            if next.next_if_eq(&&slot).is_none() {
                self.free.push(slot);
            }
        }
        // `free` is popped from its end: the lowest slots go first.
        self.free.reverse();
        let old = std::mem::replace(&mut self.keys, keys);
        self.old.push(Old::Keys(old.buf));
        let old = std::mem::replace(&mut self.directory, directory);
        self.old.push(Old::Directory(old.table));
        self.freed = 0;
        self.compactions += 1;
    }

    /// The slots of the present objects, in order, with their entries.
    fn live(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut it = vector::Iter::new(&self.vector.words.buf, self.vector());
        std::iter::from_fn(move || it.next_slot())
    }

    /// Makes `words` the vector's arena, with `vector` in it as the slot vector.
    fn install_vector(&mut self, words: Words, vector: Vector) {
        self.roots[R_VECTOR] = vector.root;
        self.roots[R_SHAPE] = vector.shape();
        self.vector.install(words);
        // The index roots last published were in the replaced arena.
        self.index_record = None;
    }

    /// Copies the vector into a fresh arena.
    fn compact_vector(&mut self) {
        let mut to = self.vector.successor();
        let vector = vector::copy(&self.vector.words.buf, self.vector(), &mut to, &mut |id| id);
        self.install_vector(to, vector);
        self.compactions += 1;
    }

    /// Copies index `i`, its values included, into fresh arenas.
    fn compact_index(&mut self, i: usize) {
        let t = &self.tables[i];
        let mut to = self.indexes[i].successor();
        let mut writing = t.writing();
        let root = self.roots[R_INDEXES + i];
        self.roots[R_INDEXES + i] = t.copy(
            &self.indexes[i].words.buf,
            &*self.writing[i],
            root,
            &mut to,
            &mut *writing,
        );
        self.indexes[i].install(to);
        self.writing[i] = writing;
        self.views_stale = true;
        self.compactions += 1;
    }

    /// Replaces everything with `items` in fresh arenas, built in one pass. A later item wins
    /// over an earlier one with the same key. Without unique indexes; see
    /// [`has_unique`](Self::has_unique).
    pub(crate) fn replace(&mut self, items: Vec<(K, Arc<T>)>) {
        let mut hashed: Vec<(u64, u32)> = items
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (self.hasher.hash_one(k), i as u32))
            .collect();
        // By position among equal hashes, so the last of equal keys can be kept.
        hashed.sort_unstable();
        let mut keep = Vec::with_capacity(hashed.len());
        for (j, &(h, i)) in hashed.iter().enumerate() {
            let later = hashed[j + 1..]
                .iter()
                .take_while(|(h2, _)| *h2 == h)
                .any(|(_, i2)| items[*i2 as usize].0 == items[i as usize].0);
            if !later {
                keep.push((h, i));
            }
        }
        let mut items: Vec<Option<(K, Arc<T>)>> = items.into_iter().map(Some).collect();
        let mut base = Vec::with_capacity(keep.len());
        let mut keys = Vec::with_capacity(keep.len());
        // Slot n holds entry n.
        let mut pairs = Vec::with_capacity(keep.len());
        for (h, i) in keep {
            if let Some((key, obj)) = items[i as usize].take() {
                let slot = base.len() as u32;
                pairs.push((h, slot));
                keys.push((slot, key, h));
                base.push(obj);
            }
        }
        let entries = Slots::filled(base);
        let n = pairs.len() as u32;
        let keys = Keys::with(n, keys);
        let directory = Dir::with(pairs.into_iter());
        let mut roots = vec![n];
        let mut vwords = self.vector.successor();
        let mut vector = Vector::EMPTY;
        for s in 0..n {
            vector = vector.set(&mut vwords, s, s);
        }
        roots.extend([vector.root, vector.shape()]);
        let slots: Vec<u32> = (0..n).collect();
        let look = Lookup {
            keys: &keys.buf,
            entries: &entries.buf,
            mem: &vwords.buf,
            vector,
        };
        let mut writing = Vec::with_capacity(self.tables.len());
        let mut indexes = Vec::with_capacity(self.tables.len());
        for (i, t) in self.tables.iter().enumerate() {
            let mut w = t.writing();
            let mut to = self.indexes[i].successor();
            roots.push(t.build(&mut to, &mut *w, look, &slots));
            writing.push(w);
            indexes.push(to);
        }
        for (s, to) in self.indexes.iter_mut().zip(indexes) {
            s.install(to);
        }
        let old_keys = std::mem::replace(&mut self.keys, keys);
        self.old.push(Old::Keys(old_keys.buf));
        let old_directory = std::mem::replace(&mut self.directory, directory);
        self.old.push(Old::Directory(old_directory.table));
        self.writing = writing;
        self.views_stale = true;
        self.roots = roots;
        self.install_vector(vwords, vector);
        self.dead = 0;
        self.free.clear();
        self.freed = 0;
        self.next_slot = n;
        self.install_entries(entries);
    }

    /// Whether any index is unique.
    pub(crate) fn has_unique(&self) -> bool {
        self.unique
    }

    /// Removes everything (in fresh arenas).
    pub(crate) fn clear(&mut self) {
        self.replace(Vec::new());
    }

    /// Adds indexes, built from the current entries.
    pub(crate) fn add_tables(&mut self, tables: Vec<Arc<dyn ErasedTable<K, T>>>) {
        let slots: Vec<u32> = self.live().map(|(slot, _)| slot).collect();
        let mut all: Vec<_> = self.tables.iter().cloned().collect();
        for t in tables {
            let mut w = t.writing();
            let mut words = Words::new();
            let root = t.build(&mut words, &mut *w, self.lookup(), &slots);
            self.roots.push(root);
            self.index_record = None;
            self.writing.push(w);
            self.indexes.push(Space::new(words));
            all.push(t);
        }
        self.unique = all.iter().any(|t| t.is_unique());
        self.tables = all.into();
        self.views_stale = true;
    }
}
