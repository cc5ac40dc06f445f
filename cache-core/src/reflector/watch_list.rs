//! Filling the store by a streaming list: the initial events of a watch, ended by a bookmark,
//! after which the same watch goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::recovery::{Phase, Recovery, recovery};
use super::{Reflector, ReflectorError, or_cancel, sleep_or_cancel};
use crate::object::Object;
use crate::source::{
    ListOptions, SourceError, SourceErrorKind, VersionMatch, WatchEvent, WatchStream,
};

impl<T: Object> Reflector<T> {
    /// The streaming initial list. `Ok(Some(stream))`: the store was replaced and the watch is
    /// still open; `Ok(None)`: cancelled; `Err`: fall back to a list.
    pub(super) async fn watch_list(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<WatchStream<T>>, SourceError> {
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let rv = {
                let state = self.state();
                if state.unavailable {
                    None
                } else {
                    state.last_sync.clone()
                }
            };
            let options = ListOptions {
                resource_version: rv,
                version_match: VersionMatch::NotOlderThan,
                allow_bookmarks: true,
                send_initial_events: true,
                timeout: Some(self.watch_timeout()),
                ..ListOptions::default()
            };
            let opened = match or_cancel(cancel, self.inner.source.watch(options)).await {
                None => return Ok(None),
                Some(opened) => opened,
            };
            let failure = match opened {
                Ok(stream) => {
                    self.inner
                        .counters
                        .watch_starts
                        .fetch_add(1, Ordering::Relaxed);
                    match self.stream_initial(stream, cancel).await {
                        Initial::Done(stream) => return Ok(Some(stream)),
                        Initial::Cancelled => return Ok(None),
                        Initial::Closed => None,
                        Initial::Failed(error) => Some(error),
                    }
                }
                Err(error) => Some(error),
            };
            match (
                recovery(Phase::StreamingList, failure.as_ref().map(|e| e.kind)),
                failure,
            ) {
                (Recovery::RetryAfterBackoff, failure) => {
                    match failure {
                        // Closed before the end of the initial events: start over.
                        None => {
                            debug!(reflector = %self.inner.name, "streaming list closed early, retrying");
                        }
                        Some(error) => self.report(&ReflectorError::WatchStart(error)),
                    }
                    if !sleep_or_cancel(cancel, self.next_delay()).await {
                        return Ok(None);
                    }
                }
                (Recovery::RetryFromLatest, Some(error)) => {
                    debug!(reflector = %self.inner.name, %error, "streaming list version unavailable");
                    self.state().unavailable = true;
                }
                (_, Some(error)) => return Err(error),
                // Not a rule of the table (a failure without an error is retried): fall back.
                (_, None) => {
                    return Err(SourceError::new(
                        SourceErrorKind::Other,
                        "the streaming list ended without its initial events",
                    ));
                }
            }
        }
    }

    /// Reads the initial events of a streaming list into a temporary map, then replaces the
    /// store at the bookmark that ends them.
    async fn stream_initial(
        &self,
        mut stream: WatchStream<T>,
        cancel: &CancellationToken,
    ) -> Initial<T> {
        let mut temp = Initials::new();
        let started = Instant::now();
        let mut last_event: Option<Instant> = None;
        let mut ticker =
            tokio::time::interval_at(started + Duration::from_secs(10), Duration::from_secs(10));
        loop {
            let first = tokio::select! {
                biased;
                () = cancel.cancelled() => return Initial::Cancelled,
                item = stream.next() => item,
                _ = ticker.tick() => {
                    match last_event {
                        None => warn!(reflector = %self.inner.name, waited = ?started.elapsed(),
                            "awaiting required bookmark event for initial events stream, no events received"),
                        Some(at) => warn!(reflector = %self.inner.name, since = ?at.elapsed(),
                            "hasn't received required bookmark event marking the end of initial events stream"),
                    }
                    continue;
                }
            };
            last_event = Some(Instant::now());
            // Take what is already waiting without going back to the select.
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    None => return Initial::Closed,
                    Some(Ok(WatchEvent::Added(obj))) => {
                        if self.check(&obj) {
                            temp.add(obj);
                        }
                    }
                    Some(Ok(WatchEvent::Modified(obj))) => {
                        if self.check(&obj) {
                            temp.keyed().insert(obj.key(), obj);
                        }
                    }
                    Some(Ok(WatchEvent::Deleted(obj))) => {
                        temp.keyed().remove(&obj.key());
                    }
                    Some(Ok(WatchEvent::Bookmark {
                        resource_version,
                        initial_events_end: true,
                    })) => {
                        self.state().unavailable = false;
                        let items = temp.into_items();
                        if let Err(error) = self
                            .inner
                            .store
                            .replace(items, Some(resource_version.clone()))
                        {
                            self.report(&ReflectorError::Store(error));
                        }
                        self.inner.counters.lists.fetch_add(1, Ordering::Relaxed);
                        self.set_last_sync(resource_version);
                        return Initial::Done(stream);
                    }
                    Some(Ok(WatchEvent::Bookmark { .. })) => {}
                    Some(Err(error))
                        if recovery(Phase::StreamingList, Some(error.kind)) == Recovery::Skip =>
                    {
                        self.report(&ReflectorError::Decode(error));
                    }
                    Some(Ok(WatchEvent::Error(error)) | Err(error)) => {
                        return Initial::Failed(error);
                    }
                }
                next = stream.next().now_or_never();
            }
        }
    }
}

/// The objects of a streaming initial list so far.
///
/// While only `Added` events come (one per object, as a server sends its initial events), they
/// are kept in arrival order without computing a key. The first `Modified` or `Deleted` event
/// switches to a map by key (in key order, which keeps the replace walking memory in the order
/// the objects came).
struct Initials<T: Object> {
    added: Vec<Arc<T>>,
    keyed: Option<BTreeMap<T::Key, Arc<T>>>,
}

impl<T: Object> Initials<T> {
    fn new() -> Self {
        Self {
            added: Vec::new(),
            keyed: None,
        }
    }

    fn add(&mut self, obj: Arc<T>) {
        match &mut self.keyed {
            Some(map) => {
                map.insert(obj.key(), obj);
            }
            None => self.added.push(obj),
        }
    }

    fn keyed(&mut self) -> &mut BTreeMap<T::Key, Arc<T>> {
        let added = &mut self.added;
        self.keyed.get_or_insert_with(|| {
            std::mem::take(added)
                .into_iter()
                .map(|o| (o.key(), o))
                .collect()
        })
    }

    fn into_items(self) -> Vec<Arc<T>> {
        match self.keyed {
            Some(map) => map.into_values().collect(),
            None => self.added,
        }
    }
}

/// How a streaming initial list ended.
enum Initial<T> {
    Done(WatchStream<T>),
    Cancelled,
    Closed,
    Failed(SourceError),
}
