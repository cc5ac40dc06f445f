//! Waiting for several caches at once (client-go's `WaitForCacheSync` and
//! `WaitForNamedCacheSync`), over informers of different types.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{info, warn};

use super::SharedIndexInformer;
use super::listeners::HandlerRegistration;
use crate::object::Object;

/// How often [`wait_for_named_sync`] names the caches that have not synced yet, unless
/// told otherwise ([`wait_for_named_sync_every`]).
pub const DEFAULT_SYNC_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A wait for a first sync that cannot succeed any more: the caches it names stopped before
/// they synced (an informer stopped, a handler was removed or its informer stopped, a
/// controller was cancelled), so what they hold is incomplete.
///
/// Every sync wait returns it: [`SharedIndexInformer::wait_for_sync`],
/// [`HandlerRegistration::wait_for_sync`], [`CacheSync::wait_for_sync`], the waits for several
/// caches ([`wait_for_sync`], [`wait_for_named_sync`]), the
/// [factory's](super::InformerFactory::wait_for_sync) and the
/// [controller handle's](crate::controller::ControllerHandle::wait_for_sync).
///
/// ```
/// use cache_core::informer::SyncError;
///
/// let err = SyncError::stopped("pods");
/// assert_eq!(err.names(), ["pods"]);
/// assert_eq!(err.to_string(), "\"pods\" stopped before it synced");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(&self.names))]
pub struct SyncError {
    names: Vec<String>,
}

impl SyncError {
    /// The error of the cache named `name`, stopped before it synced.
    pub fn stopped(name: impl Into<String>) -> Self {
        Self {
            names: vec![name.into()],
        }
    }

    /// The names of the caches that stopped before they synced: one, or, from a wait for
    /// several caches, each of those found stopped when the wait ended, in the order they were
    /// given.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn describe(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.as_slice() {
        [] => "a cache stopped before it synced".to_owned(),
        [one] => format!("{one} stopped before it synced"),
        [init @ .., last] => format!("{} and {last} stopped before they synced", init.join(", ")),
    }
}

/// Something whose first sync can be awaited, whatever the type of its objects: an informer
/// ([`SharedIndexInformer`]) or a handler's registration ([`HandlerRegistration`]), so that the
/// caches of a controller are awaited together (client-go's `InformerSynced`).
pub trait CacheSync: Send + Sync {
    /// The name that logs give it.
    fn sync_name(&self) -> &str;

    /// Whether it has synced.
    fn has_synced(&self) -> bool;

    /// Waits until it has synced.
    ///
    /// # Errors
    ///
    /// A [`SyncError`] naming it ([`sync_name`](Self::sync_name)) when it stops (or is removed)
    /// before it synced.
    fn wait_for_sync(&self) -> BoxFuture<'_, Result<(), SyncError>>;
}

impl<T: Object> CacheSync for SharedIndexInformer<T> {
    fn sync_name(&self) -> &str {
        self.name()
    }
    fn has_synced(&self) -> bool {
        SharedIndexInformer::has_synced(self)
    }
    fn wait_for_sync(&self) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(self.wait_for_sync())
    }
}

impl CacheSync for HandlerRegistration {
    fn sync_name(&self) -> &str {
        self.name()
    }
    fn has_synced(&self) -> bool {
        HandlerRegistration::has_synced(self)
    }
    fn wait_for_sync(&self) -> BoxFuture<'_, Result<(), SyncError>> {
        Box::pin(HandlerRegistration::wait_for_sync(self))
    }
}

impl<C: CacheSync + ?Sized> CacheSync for Arc<C> {
    fn sync_name(&self) -> &str {
        (**self).sync_name()
    }
    fn has_synced(&self) -> bool {
        (**self).has_synced()
    }
    fn wait_for_sync(&self) -> BoxFuture<'_, Result<(), SyncError>> {
        (**self).wait_for_sync()
    }
}

/// The names of those of `caches` that have not synced yet, in order.
pub fn pending_syncs<'a>(caches: &[&'a dyn CacheSync]) -> Vec<&'a str> {
    caches
        .iter()
        .filter(|c| !c.has_synced())
        .map(|c| c.sync_name())
        .collect()
}

/// Waits until every one of `caches` has synced (client-go's `WaitForCacheSync`); with no
/// cache at all, it returns at once.
///
/// It does not poll: each cache wakes the wait when it syncs. Bound the wait with
/// [`tokio::time::timeout`] or a `select!` on a cancellation.
///
/// # Errors
///
/// A [`SyncError`] as soon as one of the caches stops before it synced, without waiting for
/// the others: it names that cache, and any other found stopped by then.
///
/// ```
/// use cache_core::informer::{wait_for_sync, SharedIndexInformer};
/// use cache_core::source::memory::MemorySource;
/// use cache_core::{Indexed, ResourceVersion};
/// use tokio_util::sync::CancellationToken;
///
/// #[derive(Clone, Debug, Indexed)]
/// struct Pod { #[key] name: String, #[resource_version] rv: Option<ResourceVersion> }
/// #[derive(Clone, Debug, Indexed)]
/// struct Node { #[key] name: String, #[resource_version] rv: Option<ResourceVersion> }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let pods = SharedIndexInformer::<Pod>::new(MemorySource::new());
/// let nodes = SharedIndexInformer::<Node>::new(MemorySource::new());
/// let stop = CancellationToken::new();
/// for run in [
///     tokio::spawn({ let (i, s) = (pods.clone(), stop.clone()); async move { i.run(s).await } }),
///     tokio::spawn({ let (i, s) = (nodes.clone(), stop.clone()); async move { i.run(s).await } }),
/// ] { drop(run); }
/// wait_for_sync(&[&pods, &nodes]).await?;
/// stop.cancel();
/// # Ok::<(), cache_core::informer::SyncError>(())
/// # }).unwrap();
/// ```
pub async fn wait_for_sync(caches: &[&dyn CacheSync]) -> Result<(), SyncError> {
    let mut waits = indexed_waits(caches);
    while let Some((index, synced)) = waits.next().await {
        if let Err(err) = synced {
            return Err(with_others_stopped(index, err, &mut waits));
        }
    }
    Ok(())
}

/// The waits of `caches`, each with its place in `caches`.
fn indexed_waits<'a>(
    caches: &[&'a dyn CacheSync],
) -> FuturesUnordered<BoxFuture<'a, (usize, Result<(), SyncError>)>> {
    caches
        .iter()
        .enumerate()
        .map(|(index, c)| c.wait_for_sync().map(move |r| (index, r)).boxed())
        .collect()
}

/// The error `first` (of the cache at `index`) with those of the other waits that have ended
/// in an error too by now, in the order of the caches.
fn with_others_stopped(
    index: usize,
    first: SyncError,
    waits: &mut FuturesUnordered<BoxFuture<'_, (usize, Result<(), SyncError>)>>,
) -> SyncError {
    let mut stopped = vec![(index, first)];
    while let Some(Some((index, synced))) = waits.next().now_or_never() {
        if let Err(err) = synced {
            stopped.push((index, err));
        }
    }
    stopped.sort_by_key(|(index, _)| *index);
    SyncError {
        names: stopped.into_iter().flat_map(|(_, e)| e.names).collect(),
    }
}

/// [`wait_for_sync`] for the caches of the controller `controller`, with logs
/// (client-go's `WaitForNamedCacheSync`, and more): it logs when the wait starts, names the
/// caches still not synced every [`DEFAULT_SYNC_REPORT_INTERVAL`] (a warning), and logs the
/// end: synced, or which cache stopped first.
///
/// # Errors
///
/// As [`wait_for_sync`]: a [`SyncError`] as soon as a cache stops before it synced.
pub async fn wait_for_named_sync(
    controller: &str,
    caches: &[&dyn CacheSync],
) -> Result<(), SyncError> {
    wait_for_named_sync_every(controller, caches, DEFAULT_SYNC_REPORT_INTERVAL).await
}

/// [`wait_for_named_sync`], naming the late caches every `report_every` (zero: never).
///
/// # Errors
///
/// As [`wait_for_sync`]: a [`SyncError`] as soon as a cache stops before it synced.
pub async fn wait_for_named_sync_every(
    controller: &str,
    caches: &[&dyn CacheSync],
    report_every: Duration,
) -> Result<(), SyncError> {
    info!(controller, "Waiting for caches to sync");
    let mut waits = indexed_waits(caches);
    let mut report = (!report_every.is_zero()).then(|| {
        let start = tokio::time::Instant::now() + report_every;
        tokio::time::interval_at(start, report_every)
    });
    loop {
        let tick = async {
            match report.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = waits.next() => match next {
                None => break,
                Some((_, Ok(()))) => {}
                Some((index, Err(err))) => {
                    let err = with_others_stopped(index, err, &mut waits);
                    warn!(controller, error = %err, "unable to sync caches");
                    return Err(err);
                }
            },
            () = tick => {
                let late = pending_syncs(caches);
                if !late.is_empty() {
                    warn!(controller, late = %late.join(", "), "caches not synced yet");
                }
            }
        }
    }
    info!(controller, "Caches are synced");
    Ok(())
}
