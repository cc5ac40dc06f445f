//! The wake-ups every queue shares: "an item is ready", "the queue has synced", "the queue is
//! closed", and the turn that serializes consumers.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, MutexGuard, Notify};

use super::Closed;

pub(crate) struct Signals {
    /// Woken when an item is queued (one waiter) and on close (all waiters).
    ready: Notify,
    /// Woken once when the queue syncs, and on close.
    synced_changed: Notify,
    synced: AtomicBool,
    closed: AtomicBool,
    /// Held by the `pop` being served: pops are served one at a time, in order, so that items
    /// are processed in queue order and the in-flight bookkeeping has one owner.
    turn: Mutex<()>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        Self {
            ready: Notify::new(),
            synced_changed: Notify::new(),
            synced: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            turn: Mutex::new(()),
        }
    }

    /// Waits for this pop's turn.
    pub(crate) async fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Calls `take` until it yields, waiting for a wake-up between calls. `take` must check the
    /// queue and return `Some(Err(Closed))` when it is closed and empty.
    pub(crate) async fn wait_for<R>(
        &self,
        mut take: impl FnMut() -> Option<Result<R, Closed>>,
    ) -> Result<R, Closed> {
        // Fast path: something is ready; no need to register for a wake-up.
        if let Some(out) = take() {
            return out;
        }
        loop {
            let mut notified = pin!(self.ready.notified());
            // Registered before looking, so a wake-up between the look and the wait is kept.
            notified.as_mut().enable();
            if let Some(out) = take() {
                return out;
            }
            notified.await;
        }
    }

    /// An item was queued.
    pub(crate) fn item_ready(&self) {
        self.ready.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the queue closed and wakes everyone. Call with the queue's state locked, so that no
    /// write lands after a pop has seen "closed and empty".
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
        self.synced_changed.notify_waiters();
    }

    pub(crate) fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Marks the queue synced (once; it never goes back).
    pub(crate) fn mark_synced(&self) {
        if !self.synced.swap(true, Ordering::AcqRel) {
            self.synced_changed.notify_waiters();
        }
    }

    pub(crate) async fn wait_for_sync(&self) -> Result<(), Closed> {
        loop {
            let mut notified = pin!(self.synced_changed.notified());
            notified.as_mut().enable();
            if self.has_synced() {
                return Ok(());
            }
            if self.is_closed() {
                return Err(Closed);
            }
            notified.await;
        }
    }
}

/// client-go's sync rule: synced once populated and the first list's items are all processed.
#[derive(Debug, Default)]
pub(crate) struct Population {
    populated: bool,
    /// Items of the first list not yet popped and processed.
    initial: usize,
}

impl Population {
    pub(crate) fn is_synced(&self) -> bool {
        self.populated && self.initial == 0
    }

    /// A write before the first list populates the queue with nothing to wait for.
    pub(crate) fn populate(&mut self, signals: &Signals) {
        if !self.populated {
            self.populated = true;
            self.settle(signals);
        }
    }

    /// The first list: `count` items to process before the queue has synced. Later lists change
    /// nothing.
    pub(crate) fn first_list(&mut self, count: usize, signals: &Signals) {
        if !self.populated {
            self.populated = true;
            self.initial = count;
            self.settle(signals);
        }
    }

    /// How many more items belong to the first list.
    pub(crate) fn remaining(&self) -> usize {
        self.initial
    }

    /// `count` items were processed.
    pub(crate) fn processed(&mut self, count: usize, signals: &Signals) {
        if self.initial > 0 {
            self.initial = self.initial.saturating_sub(count);
            self.settle(signals);
        }
    }

    fn settle(&self, signals: &Signals) {
        if self.is_synced() {
            signals.mark_synced();
        }
    }
}
