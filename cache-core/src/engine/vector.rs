//! A persistent vector of words in the word arena: slot number → entry number. Every key keeps
//! its slot for as long as it is present, so the directory and the index buckets name an object
//! by its slot and an update that keeps the object's index values changes only this
//! vector: one path of a radix tree, 32 words per level below the root, which is only as wide
//! as the slots in use need (4 words for 100,000 slots, instead of 32).

use std::sync::atomic::Ordering::Relaxed;

use super::hamt::{Mem, NONE, Words, copy_words, rd, span};

/// Bits of the slot number per level.
const BITS: u32 = 5;
const WIDTH: u32 = 1 << BITS;
const MASK: u32 = WIDTH - 1;
/// The most slots [`Vector::resolve`] takes at once.
pub(crate) const BATCH: usize = 16;

/// A vector's root, depth (levels of nodes; 0 for the empty vector) and root width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vector {
    pub(crate) root: u32,
    depth: u32,
    width: u32,
}

impl Vector {
    pub(crate) const EMPTY: Vector = Vector {
        root: NONE,
        depth: 0,
        width: 0,
    };

    /// The vector of a root record's two words: its root and its [`shape`](Self::shape).
    #[inline]
    pub(crate) fn from_record(root: u32, shape: u32) -> Self {
        Vector {
            root,
            depth: shape & 0xff,
            width: shape >> 8,
        }
    }

    /// The depth and the root's width, in one word.
    pub(crate) fn shape(self) -> u32 {
        self.depth | self.width << 8
    }

    /// How many slots the vector can hold at its depth and root width.
    #[inline]
    fn capacity(self) -> u64 {
        if self.depth == 0 {
            0
        } else {
            u64::from(self.width) << (BITS * (self.depth - 1))
        }
    }

    /// The word in slot `i` ([`NONE`] when unset).
    #[inline]
    pub(crate) fn get(self, words: &Mem, i: u32) -> u32 {
        if u64::from(i) >= self.capacity() {
            return NONE;
        }
        let mut node = self.root;
        let mut level = self.depth;
        while level > 0 {
            if node == NONE {
                return NONE;
            }
            level -= 1;
            node = rd(words, node + ((i >> (BITS * level)) & MASK));
        }
        node
    }

    /// Replaces each slot number in `slots` by its word, walking all of them down together one
    /// level at a time: their loads do not wait on each other, so their cache misses overlap.
    /// Every slot must be set.
    #[inline]
    pub(crate) fn resolve(self, words: &Mem, slots: &mut [u32]) {
        let mut nodes = [self.root; BATCH];
        let nodes = &mut nodes[..slots.len()];
        for level in (0..self.depth).rev() {
            for (n, s) in nodes.iter_mut().zip(slots.iter()) {
                *n = rd(words, *n + ((*s >> (BITS * level)) & MASK));
            }
        }
        slots.copy_from_slice(nodes);
    }

    /// The vector with slot `i` set to `v`: copies the path, except nodes allocated since the
    /// last publish, which it changes in place.
    pub(crate) fn set(self, w: &mut Words, i: u32, v: u32) -> Vector {
        let mut vec = self;
        // A level more while `i` has bits above the root's: the root, widened to a full node,
        // becomes the only child of a new root.
        while vec.depth == 0 || u64::from(i) >> (BITS * vec.depth) != 0 {
            let root = if vec.root == NONE {
                NONE
            } else {
                let full = widened(w, vec.root, vec.width, WIDTH);
                w.filled(1, full)
            };
            vec = Vector {
                root,
                depth: vec.depth + 1,
                width: 1,
            };
        }
        let needed = (i >> (BITS * (vec.depth - 1))) + 1;
        if needed > vec.width {
            if vec.root != NONE {
                vec.root = widened(w, vec.root, vec.width, needed);
            }
            vec.width = needed;
        }
        Vector {
            root: set_in(w, vec.root, vec.width, vec.depth, i, v),
            ..vec
        }
    }
}

/// A copy of the `width` words at `node`, widened to `to` with [`NONE`].
fn widened(w: &mut Words, node: u32, width: u32, to: u32) -> u32 {
    let at = w.filled(to, NONE);
    copy_words(span(&w.buf, at, width), span(&w.buf, node, width));
    at
}

/// Sets slot `i` under `node`, `width` words wide, `level` levels above the values. Inlined
/// into [`set_below`] and [`Vector::set`], so that below the root the width is a constant and
/// the copy of a node compiles to straight-line moves.
#[inline(always)]
fn set_in(w: &mut Words, node: u32, width: u32, level: u32, i: u32, v: u32) -> u32 {
    let node = if node == NONE {
        w.filled(width, NONE)
    } else {
        // A node shared with a published version is copied first.
        w.own(node, width)
    };
    let k = (i >> (BITS * (level - 1))) & MASK;
    let next = if level == 1 {
        v
    } else {
        set_below(w, w.get(node + k), level - 1, i, v)
    };
    w.set(node + k, next);
    node
}

/// Sets slot `i` under `node`, a full-width node below the root.
fn set_below(w: &mut Words, node: u32, level: u32, i: u32, v: u32) -> u32 {
    set_in(w, node, WIDTH, level, i, v)
}

/// The set slots' values, in slot order: a leaf node at a time, each read in one tight loop.
pub(crate) struct Iter<'a> {
    words: &'a Mem,
    /// (node, next position, width) per level above the leaves, the root first.
    stack: Vec<(u32, u32, u32)>,
    depth: usize,
    /// The rest of the current leaf node.
    leaf: std::slice::Iter<'a, std::sync::atomic::AtomicU32>,
    /// The slot of the current leaf node's first word.
    leaf_slot: u32,
    /// The current leaf node's width.
    leaf_width: u32,
}

impl<'a> Iter<'a> {
    pub(crate) fn new(words: &'a Mem, vec: Vector) -> Self {
        let mut it = Self {
            words,
            stack: Vec::with_capacity(vec.depth as usize),
            depth: vec.depth as usize,
            leaf: [].iter(),
            leaf_slot: 0,
            leaf_width: 0,
        };
        if vec.depth == 1 && vec.root != NONE {
            it.leaf = span(words, vec.root, vec.width).iter();
            it.leaf_width = vec.width;
        } else if vec.depth > 1 && vec.root != NONE {
            it.stack.push((vec.root, 0, vec.width));
        }
        it
    }

    /// Moves to the next leaf node; false at the end.
    fn next_leaf(&mut self) -> bool {
        // Only a vector of two levels or more has nodes above its leaves on the stack.
        let leaf_level = self.depth.saturating_sub(1);
        loop {
            let level = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                return false;
            };
            if top.1 == top.2 {
                self.stack.pop();
                continue;
            }
            let child = rd(self.words, top.0 + top.1);
            top.1 += 1;
            if child == NONE {
                continue;
            }
            if level == leaf_level {
                self.leaf = span(self.words, child, WIDTH).iter();
                self.leaf_width = WIDTH;
                // Each node on the stack has just passed the child leading here.
                self.leaf_slot = self
                    .stack
                    .iter()
                    .fold(0, |slot, &(_, next, _)| (slot << BITS) | (next - 1))
                    << BITS;
                return true;
            }
            self.stack.push((child, 0, WIDTH));
        }
    }
}

impl Iter<'_> {
    /// The next set slot and its value.
    #[inline]
    pub(crate) fn next_slot(&mut self) -> Option<(u32, u32)> {
        loop {
            for w in self.leaf.by_ref() {
                let v = w.load(Relaxed);
                if v != NONE {
                    let slot = self.leaf_slot + self.leaf_width - 1 - self.leaf.len() as u32;
                    return Some((slot, v));
                }
            }
            if !self.next_leaf() {
                return None;
            }
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        self.next_slot().map(|(_, v)| v)
    }
}

/// Copies the vector's nodes from `from` into `to`, mapping each set slot's value through
/// `leaf`, in slot order.
pub(crate) fn copy(
    from: &Mem,
    vec: Vector,
    to: &mut Words,
    leaf: &mut impl FnMut(u32) -> u32,
) -> Vector {
    fn node(
        from: &Mem,
        n: u32,
        width: u32,
        level: u32,
        to: &mut Words,
        leaf: &mut impl FnMut(u32) -> u32,
    ) -> u32 {
        if n == NONE {
            return NONE;
        }
        let at = to.alloc(width);
        let src = span(from, n, width);
        if level == 1 {
            for (d, s) in span(&to.buf, at, width).iter().zip(src) {
                let v = s.load(Relaxed);
                d.store(if v == NONE { NONE } else { leaf(v) }, Relaxed);
            }
            return at;
        }
        for (k, s) in src.iter().enumerate() {
            let child = node(from, s.load(Relaxed), WIDTH, level - 1, to, leaf);
            to.set(at + k as u32, child);
        }
        at
    }
    if vec.depth == 0 {
        return vec;
    }
    Vector {
        root: node(from, vec.root, vec.width, vec.depth, to, leaf),
        ..vec
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn agrees_with_a_map_and_old_versions_keep_their_values(
            ops in prop::collection::vec((0..5000u32, 0..1000u32, any::<bool>()), 1..200),
        ) {
            let mut w = Words::new();
            let mut vec = Vector::EMPTY;
            let mut model = BTreeMap::new();
            let mut versions = Vec::new();
            for (i, v, publish) in ops {
                vec = vec.set(&mut w, i, v);
                model.insert(i, v);
                if publish {
                    w.fresh = w.used;
                    versions.push((vec, model.clone()));
                }
            }
            for (vec, model) in versions.iter().chain([&(vec, model.clone())]) {
                for i in 0..5000u32 {
                    prop_assert_eq!(vec.get(&w.buf, i), model.get(&i).copied().unwrap_or(NONE));
                }
                let values: Vec<u32> = Iter::new(&w.buf, *vec).collect();
                prop_assert_eq!(Iter::new(&w.buf, Vector::EMPTY).count(), 0);
                prop_assert_eq!(values, model.values().copied().collect::<Vec<_>>());
                let mut it = Iter::new(&w.buf, *vec);
                let pairs: Vec<(u32, u32)> = std::iter::from_fn(|| it.next_slot()).collect();
                prop_assert_eq!(pairs, model.iter().map(|(i, v)| (*i, *v)).collect::<Vec<_>>());
            }
        }
    }
}
