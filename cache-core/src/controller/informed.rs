//! A [`Controller`] on [`SharedIndexInformer`]s: the primary informer's cache and changes, and
//! secondary informers mapped to primary keys.

use std::future::{Future, ready};
use std::sync::Arc;

use futures::StreamExt;
use tracing::warn;

use super::runtime::{Controller, ObservedStore, StoreStatus};
use crate::informer::{EventStream, InformerError, InformerEvent, SharedIndexInformer};
use crate::object::Object;

/// Waits until `events` has synced: its informer has synced, and the stream has yielded every
/// add of the initial list (so the controller has queued them, and does not reconcile an
/// object once for its initial pass and again for its initial add). An informer that stops
/// before never opens the gate: the controller then waits for its cancellation, reconciling
/// nothing. An informer that is never run is named in a warning every
/// [`NEVER_RUN_WARNING_PERIOD`](crate::informer::NEVER_RUN_WARNING_PERIOD).
fn synced<U: Object>(
    informer: &SharedIndexInformer<U>,
    events: &EventStream<U>,
) -> impl Future<Output = ()> + Send + 'static {
    let registration = events.registration().clone();
    let informer = informer.clone();
    async move {
        // The informer syncs first (and warns while it is never run), then the stream catches up.
        let synced = match informer.wait_for_sync().await {
            Ok(()) => registration.wait_for_sync().await,
            Err(err) => Err(err),
        };
        if let Err(err) = synced {
            warn!(
                informer = informer.name(),
                error = %err,
                "the informer stopped before its cache synced; the controller will not start"
            );
            std::future::pending::<()>().await;
        }
    }
}

fn status_of<U: Object>(informer: &SharedIndexInformer<U>) -> StoreStatus {
    StoreStatus::new(informer.cache().len(), Some(informer.reflector_stats()))
}

impl<T: Object> Controller<T> {
    /// A controller of the objects of `informer`: it reads them from the informer's cache, waits
    /// for the informer's first sync (and for its initial adds to reach the controller) before
    /// the first reconcile, and reconciles an object when
    /// it is added or updated (resyncs included). Deletes trigger nothing: a deleted object is
    /// gone from the cache, so there is nothing left to reconcile.
    ///
    /// The informer is not run by the controller: it is shared, and runs on its own
    /// ([`SharedIndexInformer::run`]). Its size, relists, watch restarts, events and errors
    /// are reported with the controller's metrics under `store = informer.name()`.
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] if the informer has stopped already.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cache_core::controller::{Action, Context, Controller};
    /// use cache_core::informer::SharedIndexInformer;
    /// use cache_core::source::memory::MemorySource;
    /// use cache_core::{Indexed, ResourceVersion};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// #[derive(Clone, Debug, Indexed)]
    /// struct Pod { #[key] name: String, #[index] node: String, #[resource_version] rv: Option<ResourceVersion> }
    ///
    /// #[derive(Clone, Debug, Indexed)]
    /// struct Node { #[key] name: String, cordoned: bool, #[resource_version] rv: Option<ResourceVersion> }
    ///
    /// async fn reconcile(pod: Arc<Pod>, ctx: Context<Pod, ()>) -> Result<Action, std::convert::Infallible> {
    ///     let nodes = ctx.cache_of::<Node>().expect("watched");
    ///     if nodes.get_by_key(&pod.node).is_some_and(|n| n.cordoned) {
    ///         println!("{} runs on a cordoned node", pod.name);
    ///     }
    ///     Ok(Action::await_change())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (pod_source, node_source) = (MemorySource::new(), MemorySource::new());
    /// pod_source.put(Pod { name: "web".into(), node: "n1".into(), rv: None });
    /// node_source.put(Node { name: "n1".into(), cordoned: false, rv: None });
    /// let pods = SharedIndexInformer::builder(pod_source).name("pods").build();
    /// let nodes = SharedIndexInformer::builder(node_source.clone()).name("nodes").build();
    ///
    /// // A node's change reconciles the pods on it, found through the pods' node index.
    /// let pod_cache = pods.cache().clone();
    /// let controller = Controller::new(&pods)?
    ///     .watches(&nodes, move |node: &Node| pod_cache.snapshot().keys_by(Pod::NODE, &node.name))?;
    /// let handle = controller.handle();
    ///
    /// let stop = CancellationToken::new();
    /// let informers = tokio::spawn({
    ///     let (pods, nodes, stop) = (pods.clone(), nodes.clone(), stop.clone());
    ///     async move { tokio::join!(pods.run(stop.clone()), nodes.run(stop)) }
    /// });
    /// let run = tokio::spawn(controller.run(reconcile, Arc::new(()), stop.clone()));
    ///
    /// handle.wait_for_sync().await?;
    /// node_source.put(Node { name: "n1".into(), cordoned: true, rv: None });
    /// while handle.stats().reconciles < 2 {
    ///     tokio::task::yield_now().await;
    /// }
    /// stop.cancel();
    /// run.await.unwrap();
    /// informers.await.unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(informer: &SharedIndexInformer<T>) -> Result<Self, InformerError> {
        let events = informer.events()?;
        let mut controller = Self::for_cache(informer.cache().clone())
            .wait_for(synced(informer, &events))
            .trigger(events.filter_map(|event| {
                ready(match event {
                    InformerEvent::Added { object, .. } => Some(object.key()),
                    InformerEvent::Updated { new, .. } => Some(new.key()),
                    InformerEvent::Deleted(_) => None,
                })
            }));
        let observed = informer.clone();
        controller.stores[0] = ObservedStore {
            name: informer.name().to_owned(),
            probe: Box::new(move || status_of(&observed)),
        };
        Ok(controller)
    }

    /// A secondary watch: every change of an object of `informer` (added, updated, deleted)
    /// reconciles the primary objects whose keys `mapper` gives for it, as an owner for its
    /// children or the pods of a node. For an update, the keys of both the old and the new
    /// object are reconciled (a relation that moved is seen at both ends); for a delete, those
    /// of the object's last known state.
    ///
    /// The controller also waits for this informer's first sync before its first reconcile,
    /// hands its cache to reconciles ([`Context::cache_of`](super::Context::cache_of)), and
    /// reports its store metrics under `store = informer.name()`.
    ///
    /// # Errors
    ///
    /// [`InformerError::HandlerAfterStop`] if the informer has stopped already.
    pub fn watches<U, I>(
        self,
        informer: &SharedIndexInformer<U>,
        mapper: impl Fn(&U) -> I + Send + Sync + 'static,
    ) -> Result<Self, InformerError>
    where
        U: Object,
        I: IntoIterator<Item = T::Key>,
    {
        let events = informer.events()?;
        let keys = move |event: &InformerEvent<U>| -> Vec<T::Key> {
            match event {
                InformerEvent::Added { object, .. } => mapper(object).into_iter().collect(),
                InformerEvent::Updated { old, new } => {
                    let mut keys: Vec<_> = mapper(new).into_iter().collect();
                    if !Arc::ptr_eq(old, new) {
                        keys.extend(mapper(old));
                    }
                    keys
                }
                InformerEvent::Deleted(deleted) => deleted
                    .object()
                    .map(|object| mapper(object).into_iter().collect())
                    .unwrap_or_default(),
            }
        };
        let observed = informer.clone();
        Ok(self
            .wait_for(synced(informer, &events))
            .watches_stream(events, keys)
            .with_cache(informer.cache().clone())
            .observe(informer.name(), move || status_of(&observed)))
    }
}
