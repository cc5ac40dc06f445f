//! Append-only arenas of write-once slots: the entries (key and object) of a cache, and the
//! values of each index. A trie refers to a slot by its number.
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

use std::sync::Arc;

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

/// The item in slot `i`. Every slot a trie refers to was filled before the trie was published.
#[inline]
pub(crate) fn at<X>(buf: &Arena<X>, i: u32) -> &X {
    let i = i as usize;
    if let Some(x) = buf.base.get(i) {
        return x;
    }
    match buf.tail.get(i - buf.base.len()) {
        Some(x) => x,
        None => unreachable!("a trie refers to an empty slot"),
    }
}
