//! The storage engine under every [`Snapshot`](crate::Snapshot): the objects by key and each
//! index, as persistent hash tries whose nodes refer to each other by number.
//!
//! # Why numbers, not pointers
//!
//! A cache publishes a new version after every write, so what a write copies decides its cost.
//! With reference-counted child pointers, copying a node increments the count of every sibling
//! it holds, and freeing the replaced node decrements them all again: most of a write went
//! there. Here nodes live in an append-only arena of words ([`hamt`]) and name their children
//! by offset; the entries (key and object) and each index's values live in append-only arenas
//! of write-once slots ([`slots`]), named by number. Copying a node copies integers.
//!
//! A published [`Version`] holds the arenas (three `Arc`s) and the offset of its root record;
//! the writer keeps appending past what any version can reach, and a version never changes.
//!
//! # Reclaiming space
//!
//! Replaced nodes and entries stay in the arenas until the writer *compacts*: it copies what
//! the current version reaches into fresh arenas, renumbering as it goes, and publishes on
//! them. It does so once the replaced entries exceed a tenth of the live ones (so that at most
//! about a tenth of the objects the cache holds are stale ones), or the words in use exceed
//! eight times those live after the last compaction: a copy of n live entries every n/10
//! writes, O(1) amortized per write. Snapshots taken before keep the old arenas alive; the
//! writer frees them, not a reader, once no snapshot uses them.

pub(crate) mod hamt;
mod slots;
mod table;

use std::any::Any;
use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, OnceLock};

use hamt::{Mem, NONE, Probe, Words, rd};
pub(crate) use slots::at;
use slots::Slots;
pub(crate) use table::{Bucket, ErasedTable, Table, ValuesFn};

/// The hasher of every map in the crate.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// An object with its key and the key's hash.
pub(crate) struct Entry<K, T> {
    pub(crate) key: K,
    pub(crate) obj: Arc<T>,
    pub(crate) hash: u64,
}

impl<K: Clone, T> Clone for Entry<K, T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            obj: self.obj.clone(),
            hash: self.hash,
        }
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

/// One published version of the storage: what a snapshot reads. It never changes.
pub(crate) struct Version<K, T> {
    pub(crate) words: Arc<Mem>,
    pub(crate) entries: Arc<[OnceLock<Entry<K, T>>]>,
    pub(crate) values: ValueViews,
    pub(crate) tables: Tables<K, T>,
    hasher: Hasher,
    /// The offset of the root record: `[objects root, object count, index roots...]`.
    root: u32,
}

impl<K, T> Clone for Version<K, T> {
    fn clone(&self) -> Self {
        Self {
            words: self.words.clone(),
            entries: self.entries.clone(),
            values: self.values.clone(),
            tables: self.tables.clone(),
            hasher: self.hasher.clone(),
            root: self.root,
        }
    }
}

/// Finds an entry by key.
struct KeyProbe<'a, K, T, Q: ?Sized> {
    entries: &'a [OnceLock<Entry<K, T>>],
    key: &'a Q,
    hash: u64,
}

impl<K: Borrow<Q>, T, Q: Eq + ?Sized> Probe for KeyProbe<'_, K, T, Q> {
    #[inline]
    fn is(&self, _: &Mem, p: u32) -> bool {
        let e = at(self.entries, p);
        e.hash == self.hash && e.key.borrow() == self.key
    }
    fn hash_of(&self, _: &Mem, p: u32) -> u64 {
        at(self.entries, p).hash
    }
}

/// Finds an entry by id.
struct IdProbe<'a, K, T> {
    id: u32,
    entries: &'a [OnceLock<Entry<K, T>>],
}

impl<K, T> Probe for IdProbe<'_, K, T> {
    fn is(&self, _: &Mem, p: u32) -> bool {
        p == self.id
    }
    fn hash_of(&self, _: &Mem, p: u32) -> u64 {
        at(self.entries, p).hash
    }
}

impl<K, T> Version<K, T> {
    /// The root of index `i`.
    pub(crate) fn index_root(&self, i: usize) -> u32 {
        rd(&self.words, self.root + 2 + i as u32)
    }
}

impl<K: Hash + Eq, T> Version<K, T> {
    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        rd(&self.words, self.root + 1) as usize
    }

    fn objects_root(&self) -> u32 {
        rd(&self.words, self.root)
    }

    /// The entry with this key.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&Entry<K, T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let probe = KeyProbe {
            entries: &self.entries,
            key,
            hash,
        };
        let id = hamt::get(&self.words, self.objects_root(), hash, &probe)?;
        Some(at(&self.entries, id))
    }

    /// Every entry, in hash order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Entry<K, T>> {
        Counted {
            inner: self.ids(self.objects_root()),
            left: self.len(),
        }
    }

    /// The entries of a trie of ids (a bucket).
    pub(crate) fn ids(&self, root: u32) -> impl Iterator<Item = &Entry<K, T>> {
        hamt::Iter::new(&self.words, root).map(|id| at(&self.entries, id))
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
    Entries(Arc<[OnceLock<Entry<K, T>>]>),
    Values(ValueViews),
}

impl<K, T> Old<K, T> {
    fn in_use(&self) -> bool {
        match self {
            Old::Entries(a) => Arc::strong_count(a) > 1,
            Old::Values(a) => Arc::strong_count(a) > 1,
        }
    }
}

/// Floor of the compaction thresholds, so that a small cache does not compact all the time.
const SLACK_ENTRIES: u32 = 64;
const SLACK_WORDS: u32 = 1 << 16;
/// Compact when the words in use exceed this many times those live after the last compaction.
const WORD_GROWTH: u32 = 8;

/// The only writer of a cache's storage. It builds on what it last published and publishes
/// [`Version`]s.
pub(crate) struct Writer<K, T> {
    words: Words,
    entries: Slots<Entry<K, T>>,
    writing: Vec<Box<dyn Any + Send + Sync>>,
    views: ValueViews,
    views_stale: bool,
    tables: Tables<K, T>,
    /// `[objects root, object count, index roots...]`, as the next version will have them.
    roots: Vec<u32>,
    /// Entries replaced or removed since the last compaction.
    dead: u32,
    /// Words in use right after the last compaction.
    live_words: u32,
    hasher: Hasher,
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
        let writing: Vec<_> = tables.iter().map(|t| t.writing(16)).collect();
        let views = tables
            .iter()
            .zip(&writing)
            .map(|(t, w)| t.view(&**w))
            .collect();
        let mut roots = vec![NONE, 0];
        roots.extend(tables.iter().map(|_| NONE));
        Self {
            words: Words::new(),
            entries: Slots::with_capacity(16),
            writing,
            views,
            views_stale: false,
            tables: tables.into(),
            roots,
            dead: 0,
            live_words: 0,
            hasher,
            old: Vec::new(),
            compactions: 0,
        }
    }

    pub(crate) fn compactions(&self) -> u64 {
        self.compactions
    }

    /// The id of the entry with this key.
    fn find(&self, key: &K, hash: u64) -> Option<u32> {
        let probe = KeyProbe {
            entries: &self.entries.buf,
            key,
            hash,
        };
        hamt::get(&self.words.buf, self.roots[0], hash, &probe)
    }

    /// Inserts or replaces the object under `key`.
    ///
    /// # Errors
    ///
    /// A unique index conflict; nothing is written then.
    pub(crate) fn put(&mut self, key: K, obj: Arc<T>) -> Result<(), Conflict> {
        self.maybe_compact();
        let hash = self.hasher.hash_one(&key);
        let old = self.find(&key, hash);
        if let Some(id) = old
            && Arc::ptr_eq(&at(&self.entries.buf, id).obj, &obj)
        {
            return Ok(());
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.is_unique() {
                let (words, entries) = (&self.words.buf, &self.entries.buf);
                t.check(words, &*self.writing[i], entries, self.roots[2 + i], &key, old, &obj)?;
            }
        }
        // Keep the stored key: its allocation stays shared.
        let key = match old {
            Some(id) => at(&self.entries.buf, id).key.clone(),
            None => key,
        };
        let id = self.entries.push(Entry { key, obj, hash });
        let probe = IdProbe {
            id: old.unwrap_or(NONE),
            entries: &self.entries.buf,
        };
        self.roots[0] = hamt::insert(&mut self.words, self.roots[0], hash, id, &probe).0;
        match old {
            Some(_) => self.dead += 1,
            None => self.roots[1] += 1,
        }
        self.reindex(old, Some(id));
        Ok(())
    }

    /// Removes the object under `key`; returns it.
    pub(crate) fn remove(&mut self, key: &K) -> Option<Arc<T>> {
        self.maybe_compact();
        let hash = self.hasher.hash_one(key);
        let id = self.find(key, hash)?;
        let probe = IdProbe {
            id,
            entries: &self.entries.buf,
        };
        let (root, _) = hamt::remove(&mut self.words, self.roots[0], hash, &probe)?;
        self.roots[0] = root;
        self.roots[1] -= 1;
        self.dead += 1;
        self.reindex(Some(id), None);
        Some(at(&self.entries.buf, id).obj.clone())
    }

    fn reindex(&mut self, old: Option<u32>, new: Option<u32>) {
        let entries = &self.entries.buf;
        let old = old.map(|id| (id, &*at(entries, id).obj));
        let new = new.map(|id| (id, &*at(entries, id).obj));
        for (i, t) in self.tables.iter().enumerate() {
            let root = self.roots[2 + i];
            self.roots[2 + i] =
                t.update(&mut self.words, &mut *self.writing[i], entries, root, old, new);
        }
    }

    /// Publishes what was written so far as a new version.
    pub(crate) fn publish(&mut self) -> Version<K, T> {
        // A value arena that grew must be shown to readers.
        let stale = self.views_stale
            || self
                .tables
                .iter()
                .zip(&self.writing)
                .zip(self.views.iter())
                .any(|((t, w), v)| !t.is_view_of(&**v, &**w));
        if stale {
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
        let at = self.words.alloc(self.roots.len() as u32);
        for (i, r) in self.roots.iter().enumerate() {
            self.words.set(at + i as u32, *r);
        }
        self.words.fresh = self.words.used;
        Version {
            words: self.words.view(),
            entries: self.entries.buf.clone(),
            values: self.views.clone(),
            tables: self.tables.clone(),
            hasher: self.hasher.clone(),
            root: at,
        }
    }

    /// Frees the arenas that no snapshot uses any more.
    pub(crate) fn free_unused(&mut self) {
        self.old.retain(Old::in_use);
        self.words.recycle();
        self.entries.free_unused();
        for (t, w) in self.tables.iter().zip(&mut self.writing) {
            t.free_unused(&mut **w);
        }
    }

    fn maybe_compact(&mut self) {
        let live = self.roots[1];
        if self.dead > live / 10 + SLACK_ENTRIES
            || self.words.used > self.live_words.saturating_mul(WORD_GROWTH) + SLACK_WORDS
        {
            self.compact();
        }
    }

    /// Copies what the next version reaches into fresh arenas.
    pub(crate) fn compact(&mut self) {
        let live = self.roots[1] as usize;
        let mut words = self.words.successor();
        let from = &self.words.buf;
        let src = &self.entries.buf;
        // The live entries, renumbered in trie order, into an arena filled in one pass.
        let mut map = vec![NONE; self.entries.used as usize];
        let mut n = 0;
        let kept = hamt::Iter::new(from, self.roots[0]).map(|id| {
            map[id as usize] = n;
            n += 1;
            OnceLock::from(at(src, id).clone())
        });
        let spare = live / 10 + SLACK_ENTRIES as usize + 1;
        let entries = Slots::filled(kept.chain((0..spare).map(|_| OnceLock::new())).collect(), live);
        let mut roots = vec![
            hamt::copy(from, self.roots[0], &mut words, &mut |_, id| map[id as usize]),
            self.roots[1],
        ];
        let mut writing = Vec::with_capacity(self.tables.len());
        for (i, t) in self.tables.iter().enumerate() {
            let mut to = t.writing(16);
            roots.push(t.copy(
                from,
                &*self.writing[i],
                self.roots[2 + i],
                &mut words,
                &mut *to,
                &map,
            ));
            writing.push(to);
        }
        self.install(words, entries, writing, roots);
        self.compactions += 1;
    }

    /// Makes fresh arenas the current ones; the old go to the writer's care.
    fn install(
        &mut self,
        words: Words,
        entries: Slots<Entry<K, T>>,
        writing: Vec<Box<dyn Any + Send + Sync>>,
        roots: Vec<u32>,
    ) {
        let old_words = std::mem::replace(&mut self.words, words);
        let old_entries = std::mem::replace(&mut self.entries, entries);
        self.words.retire(old_words);
        self.old.push(Old::Entries(old_entries.buf));
        self.old.extend(old_entries.old.into_iter().map(Old::Entries));
        self.writing = writing;
        self.views_stale = true;
        self.roots = roots;
        self.dead = 0;
        self.words.fresh = 0;
        self.live_words = self.words.used;
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
        // Stable by position among equal hashes, so the last of equal keys can be kept.
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
        let mut slots: Vec<Option<(K, Arc<T>)>> = items.into_iter().map(Some).collect();
        let mut entries = Slots::with_capacity(keep.len() + keep.len() / 10 + 1);
        let mut pairs = Vec::with_capacity(keep.len());
        for (h, i) in keep {
            if let Some((key, obj)) = slots[i as usize].take() {
                pairs.push((h, entries.push(Entry { key, obj, hash: h })));
            }
        }
        let ids: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let mut words = Words::new();
        let mut roots = vec![hamt::build(&mut words, &pairs), pairs.len() as u32];
        let mut writing = Vec::with_capacity(self.tables.len());
        for t in self.tables.iter() {
            let mut w = t.writing(16);
            roots.push(t.build(&mut words, &mut *w, &entries.buf, &ids));
            writing.push(w);
        }
        self.install(words, entries, writing, roots);
    }

    /// Whether any index is unique.
    pub(crate) fn has_unique(&self) -> bool {
        self.tables.iter().any(|t| t.is_unique())
    }

    /// Removes everything (in fresh arenas).
    pub(crate) fn clear(&mut self) {
        self.replace(Vec::new());
    }

    /// Adds indexes, built from the current entries.
    pub(crate) fn add_tables(&mut self, tables: Vec<Arc<dyn ErasedTable<K, T>>>) {
        let ids: Vec<u32> = hamt::Iter::new(&self.words.buf, self.roots[0]).collect();
        let mut all: Vec<_> = self.tables.iter().cloned().collect();
        for t in tables {
            let mut w = t.writing(16);
            let root = t.build(&mut self.words, &mut *w, &self.entries.buf, &ids);
            self.roots.push(root);
            self.writing.push(w);
            all.push(t);
        }
        self.tables = all.into();
        self.views_stale = true;
    }
}
