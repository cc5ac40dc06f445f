//! The directory: from a key's hash to its slot. An open-addressing hash table of the keys in
//! one key arena, which only the writer adds to and which readers probe without a lock.
//!
//! A key keeps its slot from the time it is added until the key arena is rebuilt, removals
//! included (see [`Keys`](super::slots::Keys)), so the directory never changes a cell it has
//! filled: it only fills empty ones. A version reads it through the vector: a slot the
//! directory gives is the key's in that version only if the version's vector holds an entry
//! there. A key added after the version was published may already be in the directory; its
//! slot is empty in the version's vector, so the version does not see it.
//!
//! A cell is `0` (empty) or the top 32 bits of the key's hash above the slot plus one. The
//! probe starts at the cell the top bits of the hash name and goes on to the next, so a table
//! grows (into a fresh one, twice as large, when it is three quarters full) from its cells
//! alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fewest cells a table has.
const MIN_CELLS: usize = 16;

/// The cells of a directory, as a version sees them.
#[derive(Clone)]
pub(crate) struct Directory {
    cells: Arc<[AtomicU64]>,
}

impl Directory {
    /// An empty table with room for `keys` keys before it must grow.
    fn with_room(keys: usize) -> Self {
        let len = (keys.saturating_mul(2)).next_power_of_two().max(MIN_CELLS);
        Self {
            cells: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The first cell to probe for a key whose hash has these top 32 bits.
    #[inline]
    fn start(&self, tag: u64) -> usize {
        // The table has at most 2^31 cells, so the index is the tag's top bits.
        (tag >> (32 - self.cells.len().trailing_zeros())) as usize
    }

    /// The slot under `hash` that `is` accepts (it compares the slot's key with the one looked
    /// for).
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = hash >> 32;
        let mask = self.cells.len() - 1;
        let mut i = self.start(tag);
        loop {
            // Acquire: the writer stores the key in its slot before it fills the cell.
            let cell = self.cells[i].load(Ordering::Acquire);
            if cell == 0 {
                return None;
            }
            if cell >> 32 == tag {
                let slot = (cell as u32).wrapping_sub(1);
                if is(slot) {
                    return Some(slot);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Fills the first empty cell of `hash`'s probe with `cell`. The table must have one.
    fn fill(&self, cell: u64) {
        let mask = self.cells.len() - 1;
        let mut i = self.start(cell >> 32);
        while self.cells[i].load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        self.cells[i].store(cell, Ordering::Release);
    }

    /// Whether the two are the same table.
    pub(crate) fn same(&self, other: &Directory) -> bool {
        Arc::ptr_eq(&self.cells, &other.cells)
    }

    /// Whether a snapshot still reads this table.
    pub(crate) fn in_use(&self) -> bool {
        Arc::strong_count(&self.cells) > 1
    }
}

/// The writer's side of a directory.
pub(crate) struct Dir {
    pub(crate) table: Directory,
    /// Cells filled.
    len: usize,
}

impl Dir {
    /// A directory of `keys` (hash, slot), with room for as many again.
    pub(crate) fn with(keys: impl ExactSizeIterator<Item = (u64, u32)>) -> Self {
        let table = Directory::with_room(keys.len());
        let len = keys.len();
        for (hash, slot) in keys {
            table.fill(cell(hash, slot));
        }
        Self { table, len }
    }

    /// Adds `slot` under `hash`; no key in the table may be the slot's. Returns the table
    /// replaced when it had to grow, for the writer to free once no snapshot reads it.
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) -> Option<Directory> {
        let mut replaced = None;
        if (self.len + 1) * 4 > self.table.cells.len() * 3 {
            let grown = Directory::with_room(self.table.cells.len());
            for c in self.table.cells.iter() {
                let c = c.load(Ordering::Relaxed);
                if c != 0 {
                    grown.fill(c);
                }
            }
            replaced = Some(std::mem::replace(&mut self.table, grown));
        }
        self.table.fill(cell(hash, slot));
        self.len += 1;
        replaced
    }
}

fn cell(hash: u64, slot: u32) -> u64 {
    assert!(slot < 1 << 31, "more than 2^31 slots");
    (hash >> 32) << 32 | u64::from(slot + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes that share their top bits collide in the table; each is still found, by its slot.
    #[test]
    fn colliding_keys_are_found_and_absent_ones_are_not() {
        let mut dir = Dir::with(std::iter::empty());
        let hash = |k: u32| u64::from(k % 7) << 60 | u64::from(k);
        for k in 0..1000 {
            dir.insert(hash(k), k);
        }
        for k in 0..1000 {
            assert_eq!(dir.table.find(hash(k), |s| s == k), Some(k));
        }
        assert_eq!(dir.table.find(hash(1000), |s| s == 1000), None);
        assert!(dir.table.cells.len() * 3 >= 1000 * 4);
    }

    /// A table replaced by growth keeps what it held, for the versions that read it.
    #[test]
    fn a_grown_table_leaves_the_old_one_as_it_was() {
        let mut dir = Dir::with((0..12u32).map(|k| (u64::from(k) << 40, k)));
        let before = dir.table.clone();
        let mut replaced = None;
        for k in 12..100u32 {
            replaced = replaced.or(dir.insert(u64::from(k) << 40, k));
        }
        assert!(replaced.is_some_and(|r| Arc::ptr_eq(&r.cells, &before.cells)));
        assert_eq!(before.find(5 << 40, |s| s == 5), Some(5));
        assert_eq!(before.find(50 << 40, |s| s == 50), None);
        assert_eq!(dir.table.find(50 << 40, |s| s == 50), Some(50));
    }
}
