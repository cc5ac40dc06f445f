//! Append-only arenas of write-once slots: the entries (key and object) of a cache, and the
//! values of each index. A trie refers to a slot by its number.
//!
//! An arena is a [`boxcar::Vec`]: the writer appends through a shared reference while readers
//! read the slots their version reaches, and growing it copies nothing (it adds buckets of
//! doubling size). A slot is written once, before any published trie names it.

use std::sync::Arc;

/// A slot arena as a snapshot sees it.
pub(crate) type Arena<X> = boxcar::Vec<X>;

/// The writer's side of a slot arena.
pub(crate) struct Slots<X> {
    pub(crate) buf: Arc<Arena<X>>,
}

impl<X> Slots<X> {
    /// An empty arena. It is not given a capacity: `boxcar` allocates each bucket (zeroed) as a
    /// push nears the end of the one before, and when that bucket was preallocated it allocates
    /// and frees it again, so preallocating would zero the memory twice.
    pub(crate) fn new() -> Self {
        Self {
            buf: Arc::new(Arena::new()),
        }
    }

    /// An arena over `buf`, filled by its only writer.
    pub(crate) fn filled(buf: Arena<X>) -> Self {
        Self { buf: Arc::new(buf) }
    }

    /// Stores `x` in a new slot; its number. Slots already handed out stay where they are, so
    /// references into the arena stay valid across a push.
    #[inline]
    pub(crate) fn push(&self, x: X) -> u32 {
        let at = self.buf.push(x);
        assert!(at < (1 << 31), "slot arena exceeds 2^31 slots");
        at as u32
    }
}

/// The item in slot `i`. Every slot a trie refers to was filled before the trie was published.
#[inline]
pub(crate) fn at<X>(buf: &Arena<X>, i: u32) -> &X {
    match buf.get(i as usize) {
        Some(x) => x,
        None => unreachable!("a trie refers to an empty slot"),
    }
}
