//! Append-only arenas of write-once slots: the objects of a cache, the keys of its slots, and
//! the values of each index. A trie refers to a slot by its number.
//!
//! An arena is a *base*, the slots filled at once when it was made (by a compaction or a
//! relist), followed by a *tail*, a [`boxcar::Vec`] the writer appends to through a shared
//! reference while readers read the slots their version reaches. Growing the tail copies
//! nothing (it adds buckets of doubling size). A slot is written once, before any published
//! trie names it.
//!
//! The base is a plain vector: filling it is a copy with no per-slot synchronization and no
//! zeroed buckets, and reading it is an index, which is why a compaction builds one rather
//! than appending to a fresh tail.

use std::sync::{Arc, OnceLock};

/// A slot arena as a snapshot sees it.
pub(crate) struct Arena<X> {
    /// Slots `0..base.len()`.
    base: Vec<X>,
    /// Slots from `base.len()` on.
    tail: boxcar::Vec<X>,
}

/// The writer's side of a slot arena.
pub(crate) struct Slots<X> {
    pub(crate) buf: Arc<Arena<X>>,
}

impl<X> Slots<X> {
    /// An empty arena.
    pub(crate) fn new() -> Self {
        Self::filled(Vec::new())
    }

    /// An arena whose first slots are `base`, in order. Its tail is not given a capacity:
    /// `boxcar` allocates each bucket (zeroed) as a push nears the end of the one before, and
    /// when that bucket was preallocated it allocates and frees it again.
    pub(crate) fn filled(base: Vec<X>) -> Self {
        Self {
            buf: Arc::new(Arena {
                base,
                tail: boxcar::Vec::new(),
            }),
        }
    }

    /// Stores `x` in a new slot; its number. Slots already handed out stay where they are, so
    /// references into the arena stay valid across a push.
    #[inline]
    pub(crate) fn push(&self, x: X) -> u32 {
        let at = self.buf.base.len() + self.buf.tail.push(x);
        assert!(at < (1 << 31), "slot arena exceeds 2^31 slots");
        at as u32
    }
}

impl<X> Arena<X> {
    /// The slots filled so far.
    pub(crate) fn len(&self) -> usize {
        self.base.len() + self.tail.count()
    }
}

/// The item in slot `i`, if it was filled.
#[inline]
pub(crate) fn get_at<X>(buf: &Arena<X>, i: u32) -> Option<&X> {
    let i = i as usize;
    match buf.base.get(i) {
        Some(x) => Some(x),
        None => buf.tail.get(i - buf.base.len()),
    }
}

/// The item in slot `i`. Every slot a trie refers to was filled before the trie was published.
#[inline]
pub(crate) fn at<X>(buf: &Arena<X>, i: u32) -> &X {
    match get_at(buf, i) {
        Some(x) => x,
        None => unreachable!("a trie refers to an empty slot"),
    }
}

/// The key (and its hash) of each slot, as a snapshot sees them. A key stays in its slot for
/// as long as it is present, through every update of its object, so the entries hold objects
/// only and copying one (a compaction does) touches one reference count.
///
/// A slot freed by a removal keeps its key until the arena is rebuilt; the rebuilt arena
/// leaves such slots empty, to be filled once by a later new key. Slots past the base were
/// added since, in slot order.
pub(crate) struct KeyArena<K> {
    base: Vec<OnceLock<(K, u64)>>,
    tail: boxcar::Vec<(K, u64)>,
}

/// The key and hash in `slot`. Every slot a trie refers to holds one.
#[inline]
pub(crate) fn key_at<K>(keys: &KeyArena<K>, slot: u32) -> &(K, u64) {
    let i = slot as usize;
    let kh = match keys.base.get(i) {
        Some(cell) => cell.get(),
        None => keys.tail.get(i - keys.base.len()),
    };
    match kh {
        Some(kh) => kh,
        None => unreachable!("a trie refers to a slot with no key"),
    }
}

/// The writer's side of a key arena.
pub(crate) struct Keys<K> {
    pub(crate) buf: Arc<KeyArena<K>>,
}

impl<K> Keys<K> {
    /// An arena of `len` slots holding `keys` (slot, key, hash); the others empty, to be
    /// filled once each.
    pub(crate) fn with(len: u32, keys: impl IntoIterator<Item = (u32, K, u64)>) -> Self {
        let base: Vec<OnceLock<(K, u64)>> = (0..len).map(|_| OnceLock::new()).collect();
        for (slot, key, hash) in keys {
            if base[slot as usize].set((key, hash)).is_err() {
                unreachable!("two keys for one slot");
            }
        }
        Self {
            buf: Arc::new(KeyArena {
                base,
                tail: boxcar::Vec::new(),
            }),
        }
    }

    /// Puts `key` in `slot`, which is either an empty slot of the base or the next slot after
    /// the last one.
    #[inline]
    pub(crate) fn set(&self, slot: u32, key: K, hash: u64) {
        let i = slot as usize;
        let placed = match self.buf.base.get(i) {
            Some(cell) => cell.set((key, hash)).is_ok(),
            None => self.buf.base.len() + self.buf.tail.push((key, hash)) == i,
        };
        assert!(placed, "slot {slot} is not free for a key");
    }
}
