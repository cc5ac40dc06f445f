//! Waiting for several caches at once (client-go's `WaitForCacheSync` and
//! `WaitForNamedCacheSync`), over informers of different types.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{info, warn};

use super::SharedIndexInformer;
use super::listeners::HandlerRegistration;
use crate::object::Object;

/// How often [`wait_for_named_sync`] names the caches that have not synced yet, unless
/// told otherwise ([`wait_for_named_sync_every`]).
pub const DEFAULT_SYNC_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Something whose first sync can be awaited, whatever the type of its objects: an informer
/// ([`SharedIndexInformer`]) or a handler's registration ([`HandlerRegistration`]), so that the
/// caches of a controller are awaited together (client-go's `InformerSynced`).
pub trait CacheSync: Send + Sync {
    /// The name that logs give it.
    fn sync_name(&self) -> &str;

    /// Whether it has synced.
    fn has_synced(&self) -> bool;

    /// Waits until it has synced: true then; false when it stops (or is removed) first.
    fn wait_for_sync(&self) -> BoxFuture<'_, bool>;
}

impl<T: Object> CacheSync for SharedIndexInformer<T> {
    fn sync_name(&self) -> &str {
        self.name()
    }
    fn has_synced(&self) -> bool {
        SharedIndexInformer::has_synced(self)
    }
    fn wait_for_sync(&self) -> BoxFuture<'_, bool> {
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
    fn wait_for_sync(&self) -> BoxFuture<'_, bool> {
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
    fn wait_for_sync(&self) -> BoxFuture<'_, bool> {
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

/// Waits until every one of `caches` has synced (client-go's `WaitForCacheSync`): true then.
/// False as soon as one of them stops before it synced, without waiting for the others. No
/// cache at all is true at once.
///
/// It does not poll: each cache wakes the wait when it syncs. Bound the wait with
/// [`tokio::time::timeout`] or a `select!` on a cancellation.
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
/// assert!(wait_for_sync(&[&pods, &nodes]).await);
/// stop.cancel();
/// # });
/// ```
#[must_use = "false means a cache stopped before it synced"]
pub async fn wait_for_sync(caches: &[&dyn CacheSync]) -> bool {
    let mut waits: FuturesUnordered<_> = caches.iter().map(|c| c.wait_for_sync()).collect();
    while let Some(synced) = waits.next().await {
        if !synced {
            return false;
        }
    }
    true
}

/// [`wait_for_sync`] for the caches of the controller `controller`, with logs
/// (client-go's `WaitForNamedCacheSync`, and more): it logs when the wait starts, names the
/// caches still not synced every [`DEFAULT_SYNC_REPORT_INTERVAL`] (a warning), and logs the
/// end: synced, or which cache stopped first.
#[must_use = "false means a cache stopped before it synced"]
pub async fn wait_for_named_sync(controller: &str, caches: &[&dyn CacheSync]) -> bool {
    wait_for_named_sync_every(controller, caches, DEFAULT_SYNC_REPORT_INTERVAL).await
}

/// [`wait_for_named_sync`], naming the late caches every `report_every` (zero: never).
#[must_use = "false means a cache stopped before it synced"]
pub async fn wait_for_named_sync_every(
    controller: &str,
    caches: &[&dyn CacheSync],
    report_every: Duration,
) -> bool {
    info!(controller, "Waiting for caches to sync");
    let mut waits: FuturesUnordered<_> = caches
        .iter()
        .map(|c| {
            let name = c.sync_name();
            let wait = c.wait_for_sync();
            async move { (name, wait.await) }
        })
        .collect();
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
                Some((_, true)) => {}
                Some((name, false)) => {
                    warn!(controller, cache = name, "unable to sync caches: a cache stopped before it synced");
                    return false;
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
    true
}
