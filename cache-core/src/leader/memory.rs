//! [`MemoryLock`]: a [`LeaseLock`] in memory, with fault injection, for tests and examples.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;

use super::lock::{LeaderRecord, LeaseLock, LockError, LockState, MalformedRecord, Written};

#[derive(Default)]
struct Shared {
    /// The stored record and its revision.
    current: Option<(Result<LeaderRecord, MalformedRecord>, u64)>,
    /// The last revision given out: every write takes the next one.
    revision: u64,
}

#[derive(Default)]
struct Faults {
    disconnected: AtomicBool,
    fail_next: AtomicU32,
    delay_ms: AtomicU64,
    operations: AtomicU64,
}

/// A [`LeaseLock`] held in memory, shared by every clone and by every [`connect`]ed client,
/// as a lock on a server would be by the candidates that use it. Each write takes the next
/// revision, which is both its version and its fencing token.
///
/// Faults are injected per client: [`disconnect`](Self::disconnect) cuts one candidate off
/// (its calls fail, the others' go through), [`fail_next`](Self::fail_next) fails a number of
/// calls, [`set_delay`](Self::set_delay) makes calls slow or hang. Clones share their client's
/// faults; [`connect`](Self::connect) makes a client of its own.
///
/// [`connect`]: Self::connect
///
/// ```
/// use cache_core::leader::{LeaseLock, MemoryLock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lock = MemoryLock::new();
/// let other = lock.connect();
/// other.disconnect();
/// assert!(other.get().await.is_err());
/// assert_eq!(lock.get().await, Ok(None));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryLock {
    shared: Arc<Mutex<Shared>>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for MemoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLock")
            .field("revision", &self.revision())
            .field(
                "disconnected",
                &self.faults.disconnected.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl MemoryLock {
    /// An empty lock (no record yet), and a first client of it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another client of the same lock, with faults of its own.
    pub fn connect(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            faults: Arc::default(),
        }
    }

    /// Cuts this client off: its calls fail with [`LockError::Unavailable`] until
    /// [`reconnect`](Self::reconnect).
    pub fn disconnect(&self) {
        self.faults.disconnected.store(true, Ordering::SeqCst);
    }

    /// Undoes [`disconnect`](Self::disconnect).
    pub fn reconnect(&self) {
        self.faults.disconnected.store(false, Ordering::SeqCst);
    }

    /// Fails the next `calls` calls of this client with [`LockError::Unavailable`].
    pub fn fail_next(&self, calls: u32) {
        self.faults.fail_next.store(calls, Ordering::SeqCst);
    }

    /// Makes every call of this client wait `delay` first (a slow store; a long delay is a
    /// hung one). `Duration::ZERO` removes it.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.faults.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many calls this client has made.
    pub fn operations(&self) -> u64 {
        self.faults.operations.load(Ordering::Relaxed)
    }

    /// The last revision written (0 before the first write).
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// The lock as stored, read without faults or delay.
    pub fn peek(&self) -> Option<LockState> {
        self.lock()
            .current
            .as_ref()
            .map(|(record, revision)| LockState {
                record: record.clone(),
                version: revision.to_string(),
            })
    }

    /// Overwrites the lock with a record that cannot be read (as a Lease with a malformed
    /// spec would be), naming `holder`; returns its revision.
    pub fn put_malformed(&self, holder: Option<&str>, reason: &str) -> u64 {
        let mut shared = self.lock();
        shared.revision += 1;
        let revision = shared.revision;
        shared.current = Some((
            Err(MalformedRecord {
                holder_identity: holder.map(str::to_owned),
                reason: reason.to_owned(),
            }),
            revision,
        ));
        revision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call(&self) -> Result<(), LockError> {
        self.faults.operations.fetch_add(1, Ordering::Relaxed);
        let delay = self.faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.faults.disconnected.load(Ordering::SeqCst) {
            return Err(LockError::Unavailable("disconnected (injected)".into()));
        }
        let failed = self
            .faults
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(LockError::Unavailable("failed (injected)".into()));
        }
        Ok(())
    }

    fn write(&self, expected: Option<&str>, record: &LeaderRecord) -> Result<Written, LockError> {
        let mut shared = self.lock();
        let current = shared.current.as_ref().map(|(_, rev)| rev.to_string());
        if current.as_deref() != expected {
            return Err(LockError::Conflict);
        }
        shared.revision += 1;
        let revision = shared.revision;
        shared.current = Some((Ok(record.clone()), revision));
        Ok(Written {
            version: revision.to_string(),
            token: revision,
        })
    }
}

impl LeaseLock for MemoryLock {
    fn get(&self) -> BoxFuture<'_, Result<Option<LockState>, LockError>> {
        Box::pin(async move {
            self.call().await?;
            Ok(self.peek())
        })
    }

    fn create<'a>(&'a self, record: &'a LeaderRecord) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            self.call().await?;
            self.write(None, record)
        })
    }

    fn update<'a>(
        &'a self,
        version: &'a str,
        record: &'a LeaderRecord,
    ) -> BoxFuture<'a, Result<Written, LockError>> {
        Box::pin(async move {
            self.call().await?;
            self.write(Some(version), record)
        })
    }

    fn describe(&self) -> String {
        String::from("in-memory lock")
    }
}
