//! Hash array mapped tries whose nodes live in a word arena and refer to their children by
//! offset: copying a node copies integers and touches no reference count.
//!
//! A trie is named by one *slot* word: [`NONE`] (empty), a leaf (the [`LEAF`] bit set, the
//! other 31 bits a payload the caller gives meaning to: an entry id, a record offset), or the
//! offset of a node. A node at a level that still has hash bits is `[bitmap, slot...]`, one slot
//! per set bit, in bit order; below the last such level it is a collision list `[count, leaf...]`.
//! A node with one leaf is never kept: the leaf takes its place, so a trie of one entry is a
//! single leaf slot and needs no node at all.
//!
//! Writes copy the nodes on the path to what they change, except nodes allocated since the last
//! publish (at or above [`Words::fresh`]), which no reader can see and which are changed in
//! place: a batch of writes copies each upper node once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// The empty trie.
pub(crate) const NONE: u32 = u32::MAX;
/// Marks a slot as a leaf; the other bits are its payload.
pub(crate) const LEAF: u32 = 1 << 31;

/// Bits of hash consumed per level.
const BITS: u32 = 5;
/// The last level that still has hash bits; below it, colliding entries share one list.
const LAST_SHIFT: u32 = (63 / BITS) * BITS;

/// The slot index for `hash` at the level starting at `shift`: from the top bits down, so that
/// sorting by hash groups entries level by level (see [`build`]).
#[inline]
fn index(hash: u64, shift: u32) -> u32 {
    (hash.rotate_left(shift + BITS) & ((1 << BITS) - 1)) as u32
}

/// Where the slot for `bit` sits among a node's occupied slots.
#[inline]
fn position(bitmap: u32, bit: u32) -> u32 {
    if bitmap == u32::MAX {
        // A full node (the common case near the root): no population count, which the
        // baseline x86-64 target computes in software.
        return bit.trailing_zeros();
    }
    (bitmap & (bit - 1)).count_ones()
}

#[inline]
pub(crate) fn is_leaf(slot: u32) -> bool {
    slot != NONE && slot & LEAF != 0
}

/// Words per chunk of the arena. A node never straddles two chunks.
const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;

/// A fixed-size piece of the word arena. The arena grows by chunks, so growing copies nothing.
pub(crate) type Chunk = [AtomicU32; CHUNK];

/// The word arena as a snapshot sees it.
pub(crate) type Mem = [Arc<Chunk>];

/// Reads word `i`. Words are written once by the writer before the snapshot that reaches them
/// is published (a release store through arc-swap, which readers load with acquire), so a
/// relaxed load sees the written value.
#[inline]
pub(crate) fn rd(words: &Mem, i: u32) -> u32 {
    words[(i >> CHUNK_BITS) as usize][(i & CHUNK_MASK) as usize].load(Relaxed)
}

fn new_chunk() -> Arc<Chunk> {
    let words: Arc<[AtomicU32]> = (0..CHUNK).map(|_| AtomicU32::new(0)).collect();
    match Arc::<Chunk>::try_from(words) {
        Ok(chunk) => chunk,
        Err(_) => unreachable!("a chunk has CHUNK words"),
    }
}

/// The writer's side of a word arena: appends nodes, adds chunks as it fills.
pub(crate) struct Words {
    pub(crate) buf: Vec<Arc<Chunk>>,
    /// The chunks as last published; rebuilt after a chunk is added.
    view: Arc<Mem>,
    /// Words in use (including the unused tails of full chunks).
    pub(crate) used: u32,
    /// Words at or above this offset were allocated since the last publish.
    pub(crate) fresh: u32,
    /// Views replaced since, for the writer to free once no snapshot uses them.
    pub(crate) old: Vec<Arc<Mem>>,
    /// Chunks of arenas replaced by a compaction, until no snapshot uses them.
    retired: Vec<Arc<Chunk>>,
    /// Chunks no snapshot uses, ready for reuse: their old words are never read, since every
    /// word a trie reaches is written first.
    pool: Vec<Arc<Chunk>>,
}

/// How many unused chunks the writer keeps for reuse.
const POOL: usize = 256;

impl Words {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            view: Arc::from(Vec::new()),
            used: 0,
            fresh: 0,
            old: Vec::new(),
            retired: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// An empty arena that takes over this one's spare chunks.
    pub(crate) fn successor(&mut self) -> Self {
        let mut next = Self::new();
        next.retired = std::mem::take(&mut self.retired);
        next.pool = std::mem::take(&mut self.pool);
        next
    }

    /// Moves the chunks of replaced arenas that no snapshot uses any more to the pool.
    #[inline]
    pub(crate) fn recycle(&mut self) {
        if !self.old.is_empty() || !self.retired.is_empty() {
            self.recycle_now();
        }
    }

    #[cold]
    fn recycle_now(&mut self) {
        self.old.retain(|a| Arc::strong_count(a) > 1);
        let mut i = 0;
        while i < self.retired.len() {
            if Arc::strong_count(&self.retired[i]) == 1 {
                let chunk = self.retired.swap_remove(i);
                if self.pool.len() < POOL {
                    self.pool.push(chunk);
                }
            } else {
                i += 1;
            }
        }
    }

    /// The chunks, for a snapshot.
    #[inline]
    pub(crate) fn view(&mut self) -> &Arc<Mem> {
        if self.view.len() != self.buf.len() {
            self.new_view();
        }
        &self.view
    }

    #[cold]
    fn new_view(&mut self) {
        let view = Arc::from(self.buf.clone());
        self.old.push(std::mem::replace(&mut self.view, view));
    }

    #[inline]
    pub(crate) fn get(&self, i: u32) -> u32 {
        rd(&self.buf, i)
    }

    #[inline]
    pub(crate) fn set(&self, i: u32, v: u32) {
        self.buf[(i >> CHUNK_BITS) as usize][(i & CHUNK_MASK) as usize].store(v, Relaxed);
    }

    /// Room for `n` more words, in one chunk; the offset of the first.
    #[inline]
    pub(crate) fn alloc(&mut self, n: u32) -> u32 {
        let mut at = self.used;
        if (at >> CHUNK_BITS) as usize >= self.buf.len() || (at & CHUNK_MASK) + n > CHUNK as u32 {
            at = self.add_chunk(n);
        }
        self.used = at + n;
        at
    }

    /// Adds a chunk; the offset of its first word.
    #[cold]
    fn add_chunk(&mut self, n: u32) -> u32 {
        assert!(n as usize <= CHUNK, "a node larger than a chunk");
        let start = (self.buf.len() as u32) << CHUNK_BITS;
        assert!(start < LEAF - CHUNK as u32, "word arena exceeds 2^31 words");
        let chunk = self.pool.pop().unwrap_or_else(new_chunk);
        self.buf.push(chunk);
        start
    }

    /// Takes over a replaced arena: its views until no snapshot uses them, its chunks for reuse
    /// after that.
    pub(crate) fn retire(&mut self, old: Words) {
        self.old.extend(old.old);
        self.old.push(old.view);
        self.retired.extend(old.buf);
    }

    /// A node with `slots`, after `head` (the bitmap, or the count of a collision list).
    fn node(&mut self, head: u32, slots: &[u32]) -> u32 {
        let n = 1 + slots.len() as u32;
        let at = self.alloc(n);
        let d = span(&self.buf, at, n);
        d[0].store(head, Relaxed);
        for (d, s) in d[1..].iter().zip(slots) {
            d.store(*s, Relaxed);
        }
        at
    }

    /// A copy of the `len` words at `from`, unless the node is fresh (then itself).
    #[inline(always)]
    pub(crate) fn own(&mut self, from: u32, len: u32) -> u32 {
        if from >= self.fresh {
            return from;
        }
        let to = self.alloc(len);
        copy_words(span(&self.buf, to, len), span(&self.buf, from, len));
        to
    }

    /// `len` new words, each `v`.
    pub(crate) fn filled(&mut self, len: u32, v: u32) -> u32 {
        let at = self.alloc(len);
        for w in span(&self.buf, at, len) {
            w.store(v, Relaxed);
        }
        at
    }

    /// Copies the `len` words at `from`, changing word `at` (relative) to `v`; in place when
    /// the node is fresh.
    fn with_word(&mut self, from: u32, len: u32, at: u32, v: u32) -> u32 {
        if from >= self.fresh {
            self.set(from + at, v);
            return from;
        }
        let to = self.alloc(len);
        let (d, s) = (span(&self.buf, to, len), span(&self.buf, from, len));
        copy_words(d, s);
        d[at as usize].store(v, Relaxed);
        to
    }

    /// Copies the `len` words at `from` with `v` inserted at relative position `at`, and the
    /// head word replaced by `head`.
    fn inserted(&mut self, from: u32, len: u32, head: u32, at: u32, v: u32) -> u32 {
        let to = self.alloc(len + 1);
        let (d, s) = (span(&self.buf, to, len + 1), span(&self.buf, from, len));
        let at = at as usize;
        d[0].store(head, Relaxed);
        copy_words(&d[1..at], &s[1..at]);
        d[at].store(v, Relaxed);
        copy_words(&d[at + 1..], &s[at..]);
        to
    }

    /// Copies the `len` words at `from` without the word at relative position `at`, and the
    /// head word replaced by `head`.
    fn removed(&mut self, from: u32, len: u32, head: u32, at: u32) -> u32 {
        let to = self.alloc(len - 1);
        let (d, s) = (span(&self.buf, to, len - 1), span(&self.buf, from, len));
        let at = at as usize;
        d[0].store(head, Relaxed);
        copy_words(&d[1..at], &s[1..at]);
        copy_words(&d[at..], &s[at + 1..]);
        to
    }
}

/// The `len` words at `at`, which lie in one chunk.
#[inline]
pub(crate) fn span(mem: &Mem, at: u32, len: u32) -> &[AtomicU32] {
    let o = (at & CHUNK_MASK) as usize;
    &mem[(at >> CHUNK_BITS) as usize][o..o + len as usize]
}

#[inline]
pub(crate) fn copy_words(to: &[AtomicU32], from: &[AtomicU32]) {
    debug_assert_eq!(to.len(), from.len());
    // Eight words per step, as straight-line moves: atomic words are copied one at a time,
    // and a loop step per word would cost more than the move itself.
    let (to8, to_rest) = to.as_chunks::<8>();
    let (from8, from_rest) = from.as_chunks::<8>();
    for (d, s) in to8.iter().zip(from8) {
        for i in 0..8 {
            d[i].store(s[i].load(Relaxed), Relaxed);
        }
    }
    for (d, s) in to_rest.iter().zip(from_rest) {
        d.store(s.load(Relaxed), Relaxed);
    }
}

/// How a trie's payloads relate to the key being looked for.
pub(crate) trait Probe {
    /// Whether `payload` is the one looked for.
    fn is(&self, words: &Mem, payload: u32) -> bool;
    /// The hash of the payload's key (needed when a new payload must share its slot).
    fn hash_of(&self, words: &Mem, payload: u32) -> u64;
}

/// The payload under `hash` that `probe` accepts.
#[inline]
pub(crate) fn get(words: &Mem, root: u32, hash: u64, probe: &impl Probe) -> Option<u32> {
    let mut slot = root;
    let mut shift = 0;
    loop {
        if slot == NONE {
            return None;
        }
        if slot & LEAF != 0 {
            let p = slot & !LEAF;
            return probe.is(words, p).then_some(p);
        }
        if shift > LAST_SHIFT {
            let n = rd(words, slot);
            return (1..=n)
                .map(|i| rd(words, slot + i) & !LEAF)
                .find(|p| probe.is(words, *p));
        }
        let bitmap = rd(words, slot);
        let bit = 1 << index(hash, shift);
        if bitmap & bit == 0 {
            return None;
        }
        slot = rd(words, slot + 1 + position(bitmap, bit));
        shift += BITS;
    }
}

/// Inserts `payload` under `hash`, replacing the payload `probe` accepts. Returns the new root
/// and the replaced payload.
pub(crate) fn insert(
    w: &mut Words,
    root: u32,
    hash: u64,
    payload: u32,
    probe: &impl Probe,
) -> (u32, Option<u32>) {
    ins(w, root, 0, hash, payload, probe)
}

fn ins(
    w: &mut Words,
    slot: u32,
    shift: u32,
    hash: u64,
    payload: u32,
    probe: &impl Probe,
) -> (u32, Option<u32>) {
    if slot == NONE {
        return (LEAF | payload, None);
    }
    if slot & LEAF != 0 {
        let p = slot & !LEAF;
        if probe.is(&w.buf, p) {
            return (LEAF | payload, Some(p));
        }
        return (
            pair(w, p, probe.hash_of(&w.buf, p), payload, hash, shift),
            None,
        );
    }
    if shift > LAST_SHIFT {
        let n = w.get(slot);
        for i in 1..=n {
            let p = w.get(slot + i) & !LEAF;
            if probe.is(&w.buf, p) {
                return (w.with_word(slot, n + 1, i, LEAF | payload), Some(p));
            }
        }
        return (w.inserted(slot, n + 1, n + 1, n + 1, LEAF | payload), None);
    }
    let bitmap = w.get(slot);
    let bit = 1 << index(hash, shift);
    let len = 1 + bitmap.count_ones();
    let at = 1 + position(bitmap, bit);
    if bitmap & bit == 0 {
        return (
            w.inserted(slot, len, bitmap | bit, at, LEAF | payload),
            None,
        );
    }
    let child = w.get(slot + at);
    let (next, old) = ins(w, child, shift + BITS, hash, payload, probe);
    if next == child {
        return (slot, old);
    }
    (w.with_word(slot, len, at, next), old)
}

/// A slot holding the two leaves `a` and `b`, which agree on every level above `shift`.
fn pair(w: &mut Words, a: u32, ha: u64, b: u32, hb: u64, shift: u32) -> u32 {
    if shift > LAST_SHIFT {
        return w.node(2, &[LEAF | a, LEAF | b]);
    }
    let (ia, ib) = (index(ha, shift), index(hb, shift));
    if ia == ib {
        let child = pair(w, a, ha, b, hb, shift + BITS);
        return w.node(1 << ia, &[child]);
    }
    let (first, second) = if ia < ib { (a, b) } else { (b, a) };
    w.node((1 << ia) | (1 << ib), &[LEAF | first, LEAF | second])
}

/// Removes the payload under `hash` that `probe` accepts. Returns the new root and the removed
/// payload, or `None` (and copies nothing) when there is none.
pub(crate) fn remove(
    w: &mut Words,
    root: u32,
    hash: u64,
    probe: &impl Probe,
) -> Option<(u32, u32)> {
    // `rem` copies on the way back up, once the payload is found: an absent one copies nothing.
    rem(w, root, 0, hash, probe)
}

/// Replaces the payload `probe` accepts by `f(payload)` in one walk, copying the path to it.
/// `None`, with nothing copied, when no payload is accepted (then `f` is not called) or when `f`
/// returns [`NONE`] (the caller removes the payload then).
pub(crate) fn modify(
    w: &mut Words,
    root: u32,
    hash: u64,
    probe: &impl Probe,
    f: impl FnOnce(&mut Words, u32) -> u32,
) -> Option<u32> {
    let mut f = Some(f);
    modify_at(w, root, 0, hash, probe, &mut f)
}

fn modify_at<F: FnOnce(&mut Words, u32) -> u32>(
    w: &mut Words,
    slot: u32,
    shift: u32,
    hash: u64,
    probe: &impl Probe,
    f: &mut Option<F>,
) -> Option<u32> {
    if slot == NONE {
        return None;
    }
    if slot & LEAF != 0 {
        let p = slot & !LEAF;
        if !probe.is(&w.buf, p) {
            return None;
        }
        let next = (f.take()?)(w, p);
        return (next != NONE).then_some(LEAF | next);
    }
    if shift > LAST_SHIFT {
        let n = w.get(slot);
        let i = (1..=n).find(|i| probe.is(&w.buf, w.get(slot + i) & !LEAF))?;
        let p = w.get(slot + i) & !LEAF;
        let next = (f.take()?)(w, p);
        if next == NONE {
            return None;
        }
        if next == p {
            return Some(slot);
        }
        return Some(w.with_word(slot, n + 1, i, LEAF | next));
    }
    let bitmap = w.get(slot);
    let bit = 1 << index(hash, shift);
    if bitmap & bit == 0 {
        return None;
    }
    let at = 1 + position(bitmap, bit);
    let child = w.get(slot + at);
    let next = modify_at(w, child, shift + BITS, hash, probe, f)?;
    if next == child {
        return Some(slot);
    }
    Some(w.with_word(slot, 1 + bitmap.count_ones(), at, next))
}

fn rem(w: &mut Words, slot: u32, shift: u32, hash: u64, probe: &impl Probe) -> Option<(u32, u32)> {
    if slot == NONE {
        return None;
    }
    if slot & LEAF != 0 {
        let p = slot & !LEAF;
        return probe.is(&w.buf, p).then_some((NONE, p));
    }
    if shift > LAST_SHIFT {
        let n = w.get(slot);
        let i = (1..=n).find(|i| probe.is(&w.buf, w.get(slot + i) & !LEAF))?;
        let p = w.get(slot + i) & !LEAF;
        if n == 2 {
            return Some((w.get(slot + 3 - i), p));
        }
        return Some((w.removed(slot, n + 1, n - 1, i), p));
    }
    let bitmap = w.get(slot);
    let bit = 1 << index(hash, shift);
    if bitmap & bit == 0 {
        return None;
    }
    let len = 1 + bitmap.count_ones();
    let at = 1 + position(bitmap, bit);
    let child = w.get(slot + at);
    let (next, p) = rem(w, child, shift + BITS, hash, probe)?;
    if next == NONE {
        if len == 2 {
            return Some((NONE, p));
        }
        if len == 3 {
            // One slot left: a leaf takes the node's place.
            let other = w.get(slot + 3 - at);
            if is_leaf(other) {
                return Some((other, p));
            }
        }
        return Some((w.removed(slot, len, bitmap & !bit, at), p));
    }
    if len == 2 && is_leaf(next) {
        return Some((next, p));
    }
    if next == child {
        return Some((slot, p));
    }
    Some((w.with_word(slot, len, at, next), p))
}

/// Builds a trie of `items`, `(hash, payload)` pairs sorted by hash, bottom-up in one pass.
pub(crate) fn build(w: &mut Words, items: &[(u64, u32)]) -> u32 {
    match items {
        [] => NONE,
        [(_, p)] => LEAF | p,
        _ => build_node(w, items, 0),
    }
}

fn build_node(w: &mut Words, items: &[(u64, u32)], shift: u32) -> u32 {
    if shift > LAST_SHIFT {
        let leaves: Vec<u32> = items.iter().map(|(_, p)| LEAF | p).collect();
        return w.node(leaves.len() as u32, &leaves);
    }
    let mut bitmap = 0;
    let mut slots = Vec::with_capacity(items.len().min(32));
    let mut rest = items;
    while let Some(&(h, p)) = rest.first() {
        let idx = index(h, shift);
        let n = rest
            .iter()
            .take_while(|(h2, _)| index(*h2, shift) == idx)
            .count();
        bitmap |= 1 << idx;
        slots.push(if n == 1 {
            LEAF | p
        } else {
            build_node(w, &rest[..n], shift + BITS)
        });
        rest = &rest[n..];
    }
    w.node(bitmap, &slots)
}

/// Copies the trie at `slot` of `from` into `to` as it is.
pub(crate) fn copy_same(from: &Mem, slot: u32, to: &mut Words) -> u32 {
    copy_same_at(from, slot, 0, to)
}

fn copy_same_at(from: &Mem, slot: u32, shift: u32, to: &mut Words) -> u32 {
    if slot & LEAF != 0 {
        // A leaf, or NONE: nothing to copy.
        return slot;
    }
    let head = rd(from, slot);
    // A collision list holds leaves only.
    let deep = shift > LAST_SHIFT;
    let n = if deep { head } else { head.count_ones() };
    // The node as it is, then each child node's copy over its old offset.
    let at = to.alloc(1 + n);
    let src = span(from, slot, 1 + n);
    copy_words(span(&to.buf, at, 1 + n), src);
    if !deep {
        for (k, s) in src.iter().enumerate().skip(1) {
            let s = s.load(Relaxed);
            if s & LEAF == 0 {
                let child = copy_same_at(from, s, shift + BITS, to);
                to.set(at + k as u32, child);
            }
        }
    }
    at
}

/// Copies the trie at `slot` of `from` into `to`, mapping each leaf's payload through `leaf`.
pub(crate) fn copy(
    from: &Mem,
    slot: u32,
    to: &mut Words,
    leaf: &mut impl FnMut(&mut Words, u32) -> u32,
) -> u32 {
    copy_at(from, slot, 0, to, leaf)
}

fn copy_at(
    from: &Mem,
    slot: u32,
    shift: u32,
    to: &mut Words,
    leaf: &mut impl FnMut(&mut Words, u32) -> u32,
) -> u32 {
    if slot == NONE {
        return NONE;
    }
    if slot & LEAF != 0 {
        return LEAF | leaf(to, slot & !LEAF);
    }
    let head = rd(from, slot);
    let n = if shift > LAST_SHIFT {
        head
    } else {
        head.count_ones()
    };
    let at = to.alloc(1 + n);
    to.set(at, head);
    for (i, s) in span(from, slot + 1, n).iter().enumerate() {
        let copied = copy_at(from, s.load(Relaxed), shift + BITS, to, leaf);
        to.set(at + 1 + i as u32, copied);
    }
    at
}

/// Iterates a trie's payloads, depth first: the slots of the node being read are a slice, so
/// leaves next to each other come out of one tight loop.
pub(crate) struct Iter<'a> {
    words: &'a Mem,
    /// The slots still to read of each node above the current one, the root's first.
    stack: Vec<std::slice::Iter<'a, AtomicU32>>,
    /// The slots still to read of the current node.
    slots: std::slice::Iter<'a, AtomicU32>,
    single: Option<u32>,
}

impl<'a> Iter<'a> {
    pub(crate) fn new(words: &'a Mem, root: u32) -> Self {
        let mut it = Self {
            words,
            stack: Vec::new(),
            slots: [].iter(),
            single: None,
        };
        if is_leaf(root) {
            it.single = Some(root & !LEAF);
        } else if root != NONE {
            it.slots = slots_of(words, root, 0);
        }
        it
    }
}

/// The slots of the node at `node`, `level` levels below the root.
fn slots_of(words: &Mem, node: u32, level: u32) -> std::slice::Iter<'_, AtomicU32> {
    let head = rd(words, node);
    let n = if level * BITS > LAST_SHIFT {
        head
    } else {
        head.count_ones()
    };
    span(words, node + 1, n).iter()
}

impl Iterator for Iter<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if let Some(p) = self.single.take() {
            return Some(p);
        }
        loop {
            match self.slots.next() {
                Some(w) => {
                    // A node's slots are leaves or nodes, never empty.
                    let slot = w.load(Relaxed);
                    if slot & LEAF != 0 {
                        return Some(slot & !LEAF);
                    }
                    let child = slots_of(self.words, slot, self.stack.len() as u32 + 1);
                    self.stack.push(std::mem::replace(&mut self.slots, child));
                }
                None => self.slots = self.stack.pop()?,
            }
        }
    }
}
