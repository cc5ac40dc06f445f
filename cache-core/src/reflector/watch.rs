//! Watching: applying events in batches from the last version, resyncing, and re-watching or
//! giving up for a relist.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::backoff::RetryWithDeadline;
use super::recovery::{Phase, Recovery, recovery};
use super::{Reflector, ReflectorError, is_unset, or_cancel, sleep_or_cancel};
use crate::object::{Object, ResourceVersion};
use crate::source::{ListOptions, SourceError, SourceErrorKind, WatchEvent, WatchStream};
use crate::store::Change;

/// How one watch ended without an error.
enum WatchEnd {
    Closed,
    Cancelled,
}

/// The resync timer of one watch phase.
struct ResyncTimer {
    period: Duration,
    sleep: Option<std::pin::Pin<Box<Sleep>>>,
}

impl ResyncTimer {
    fn new(period: Duration) -> Self {
        let sleep = (!period.is_zero()).then(|| Box::pin(tokio::time::sleep(period)));
        Self { period, sleep }
    }

    async fn tick(&mut self) {
        match &mut self.sleep {
            Some(sleep) => {
                sleep.as_mut().await;
                let period = self.period;
                sleep.as_mut().reset(Instant::now() + period);
            }
            None => std::future::pending().await,
        }
    }
}

/// Watch events gathered for one store transaction.
struct Batch<T> {
    changes: Vec<Change<T>>,
    resource_version: Option<ResourceVersion>,
}

impl<T: Object> Reflector<T> {
    /// Watches from the last version (or goes on with `stream`, left open by a streaming list)
    /// until a relist is due or `cancel` fires.
    pub(super) async fn watch(
        &self,
        mut stream: Option<WatchStream<T>>,
        cancel: &CancellationToken,
    ) -> Result<(), ReflectorError> {
        let mut resync = ResyncTimer::new(self.inner.options.resync_period);
        let mut retry = RetryWithDeadline::new(
            self.inner.options.max_internal_error_retry,
            Duration::from_secs(60),
        );
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let (watch, from) = match stream.take() {
                Some(watch) => (watch, self.last_sync_resource_version()),
                None => {
                    let from = self.last_sync_resource_version();
                    let options = ListOptions {
                        resource_version: from.clone(),
                        allow_bookmarks: true,
                        timeout: Some(self.watch_timeout()),
                        ..ListOptions::default()
                    };
                    match or_cancel(cancel, self.inner.source.watch(options)).await {
                        None => return Ok(()),
                        Some(Ok(watch)) => {
                            self.inner
                                .counters
                                .watch_starts
                                .fetch_add(1, Ordering::Relaxed);
                            (watch, from)
                        }
                        Some(Err(error)) => {
                            match recovery(Phase::WatchStart, Some(error.kind)) {
                                Recovery::RetryAfterBackoff => {
                                    self.report(&ReflectorError::WatchStart(error));
                                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                                        return Ok(());
                                    }
                                    continue;
                                }
                                Recovery::RelistFromLatest => self.state().unavailable = true,
                                _ => {}
                            }
                            return Err(ReflectorError::WatchStart(error));
                        }
                    }
                }
            };
            let error = match self
                .handle_watch(watch, !is_unset(from.as_ref()), &mut resync, cancel)
                .await
            {
                Ok(WatchEnd::Closed) => continue,
                Ok(WatchEnd::Cancelled) => return Ok(()),
                Err(error) => error,
            };
            let kind = error.source_kind();
            retry.after(kind == Some(SourceErrorKind::Internal));
            match recovery(Phase::Watching, kind) {
                Recovery::RetryAfterBackoff => {
                    self.report(&error);
                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                        return Ok(());
                    }
                }
                Recovery::RetryWhileAllowed if retry.should_retry() => {
                    self.report(&error);
                }
                Recovery::RelistFromLatest => {
                    self.state().unavailable = true;
                    return Err(error);
                }
                _ => {
                    debug!(reflector = %self.inner.name, %error, "watch ended with error, relisting");
                    return Err(error);
                }
            }
        }
    }

    /// Applies the events of one watch until it ends. `propagate`: whether `Added` events carry
    /// versions to keep (false for a watch from `""`/`"0"`, until its first other event).
    async fn handle_watch(
        &self,
        mut stream: WatchStream<T>,
        mut propagate: bool,
        resync: &mut ResyncTimer,
        cancel: &CancellationToken,
    ) -> Result<WatchEnd, ReflectorError> {
        let started = Instant::now();
        let mut seen = 0usize;
        let max_batch = self.inner.options.max_batch.max(1);
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(WatchEnd::Cancelled),
                () = resync.tick() => {
                    self.resync()?;
                    continue;
                }
                item = stream.next() => item,
            };
            let Some(first) = first else {
                if seen == 0 && started.elapsed() < Duration::from_secs(1) {
                    return Err(ReflectorError::VeryShortWatch);
                }
                return Ok(WatchEnd::Closed);
            };
            // Drain what is already waiting, then apply it in one transaction.
            let mut batch = Batch {
                changes: Vec::new(),
                resource_version: None,
            };
            let mut next = Some(first);
            let mut ended = false;
            let mut taken = 0;
            while let Some(item) = next.take() {
                seen += 1;
                taken += 1;
                if let Err(error) = self.absorb(item, &mut batch, &mut propagate) {
                    self.flush(&mut batch);
                    return Err(error);
                }
                if taken < max_batch {
                    match stream.next().now_or_never() {
                        Some(Some(item)) => next = Some(item),
                        Some(None) => ended = true,
                        None => {}
                    }
                }
            }
            self.flush(&mut batch);
            if ended {
                return Ok(WatchEnd::Closed);
            }
        }
    }

    /// Adds one watch item to `batch`; bookmarks flush it first. An error ends the watch.
    fn absorb(
        &self,
        item: Result<WatchEvent<T>, SourceError>,
        batch: &mut Batch<T>,
        propagate: &mut bool,
    ) -> Result<(), ReflectorError> {
        let (change, added) = match item {
            Ok(WatchEvent::Added(obj)) => (Change::Add(obj), true),
            Ok(WatchEvent::Modified(obj)) => (Change::Update(obj), false),
            Ok(WatchEvent::Deleted(obj)) => (Change::Delete(obj), false),
            Ok(WatchEvent::Bookmark {
                resource_version, ..
            }) => {
                self.flush(batch);
                if self.is_behind(&resource_version) {
                    // A lagging or restarted etcd member can report progress below what this
                    // watch has already seen; applying it would move the version backwards.
                    debug!(reflector = %self.inner.name, bookmark = %resource_version,
                        last = ?self.last_sync_resource_version(), "ignoring a stale bookmark");
                    return Ok(());
                }
                self.inner
                    .counters
                    .bookmarks
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.store.bookmark(resource_version.clone());
                *propagate = true;
                self.set_last_sync(resource_version);
                return Ok(());
            }
            Ok(WatchEvent::Error(error)) => return Err(ReflectorError::WatchEnded(error)),
            Err(error) if recovery(Phase::Watching, Some(error.kind)) == Recovery::Skip => {
                self.report(&ReflectorError::Decode(error));
                return Ok(());
            }
            Err(error) => return Err(ReflectorError::WatchEnded(error)),
        };
        if !added {
            *propagate = true;
        }
        if !self.check(change.object()) {
            return Ok(());
        }
        if *propagate && let Some(rv) = change.object().resource_version() {
            batch.resource_version = Some(rv);
        }
        batch.changes.push(change);
        Ok(())
    }

    /// Applies the gathered events in one transaction and records their version.
    fn flush(&self, batch: &mut Batch<T>) {
        if !batch.changes.is_empty() {
            let changes = std::mem::take(&mut batch.changes);
            self.inner
                .counters
                .events
                .fetch_add(changes.len() as u64, Ordering::Relaxed);
            if let Err(error) = self.inner.store.transaction(changes) {
                self.report(&ReflectorError::Transaction(error));
            }
        }
        if let Some(rv) = batch.resource_version.take() {
            self.set_last_sync(rv);
        }
    }

    fn resync(&self) -> Result<(), ReflectorError> {
        if self.inner.should_resync.as_ref().is_none_or(|f| f()) {
            self.inner.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            self.inner.store.resync().map_err(ReflectorError::Resync)?;
        }
        Ok(())
    }
}
