//! Append-only arenas of write-once slots: the entries (key and object) of a cache, and the
//! values of each index. A trie refers to a slot by its number.

use std::sync::{Arc, OnceLock};

/// The writer's side of a slot arena.
pub(crate) struct Slots<X> {
    pub(crate) buf: Arc<[OnceLock<X>]>,
    pub(crate) used: u32,
    /// Arenas replaced by growth, for the writer to free once no snapshot uses them.
    pub(crate) old: Vec<Arc<[OnceLock<X>]>>,
}

pub(crate) fn empty<X>(cap: usize) -> Arc<[OnceLock<X>]> {
    (0..cap).map(|_| OnceLock::new()).collect()
}

impl<X: Clone> Slots<X> {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            buf: empty(cap.max(16)),
            used: 0,
            old: Vec::new(),
        }
    }

    /// An arena over `buf`, whose first `used` slots are filled.
    pub(crate) fn filled(buf: Arc<[OnceLock<X>]>, used: usize) -> Self {
        Self {
            buf,
            used: used as u32,
            old: Vec::new(),
        }
    }

    /// Stores `x` in a new slot; its number.
    pub(crate) fn push(&mut self, x: X) -> u32 {
        if self.used as usize == self.buf.len() {
            self.grow();
        }
        let at = self.used;
        // The slot is past every slot handed out, so it is empty: `set` cannot fail.
        let _ = self.buf[at as usize].set(x);
        self.used += 1;
        at
    }

    #[cold]
    fn grow(&mut self) {
        let cap = self.buf.len() * 2;
        assert!(cap < (1 << 31), "slot arena exceeds 2^31 slots");
        let buf: Arc<[OnceLock<X>]> = self
            .buf
            .iter()
            .map(|s| s.get().cloned().map_or_else(OnceLock::new, OnceLock::from))
            .chain((self.buf.len()..cap).map(|_| OnceLock::new()))
            .collect();
        self.old.push(std::mem::replace(&mut self.buf, buf));
    }

    /// Drops the replaced arenas no snapshot uses any more.
    pub(crate) fn free_unused(&mut self) {
        self.old.retain(|a| Arc::strong_count(a) > 1);
    }
}

/// The item in slot `i`. Every slot a trie refers to was filled before the trie was published.
#[inline]
pub(crate) fn at<X>(buf: &[OnceLock<X>], i: u32) -> &X {
    match buf[i as usize].get() {
        Some(x) => x,
        None => unreachable!("a trie refers to an empty slot"),
    }
}
