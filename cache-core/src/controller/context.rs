//! [`Context`]: what a reconcile gets besides its object.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::leader::Leadership;
use crate::object::Object;
use crate::store::CacheReader;
use crate::workqueue::WorkQueue;

/// The caches a controller knows by type: its primary cache and those of its secondary watches.
#[derive(Clone, Default)]
pub(crate) struct CacheMap {
    caches: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl CacheMap {
    /// Registers `cache` under its type, unless a cache of that type is registered already.
    pub(crate) fn insert<U: Object>(&mut self, cache: CacheReader<U>) {
        self.caches
            .entry(TypeId::of::<U>())
            .or_insert_with(|| Arc::new(cache));
    }

    pub(crate) fn get<U: Object>(&self) -> Option<CacheReader<U>> {
        self.caches
            .get(&TypeId::of::<U>())
            .and_then(|cache| cache.downcast_ref::<CacheReader<U>>())
            .cloned()
    }
}

/// What the controller shares with every reconcile.
pub(crate) struct Shared<T: Object> {
    pub(crate) name: Arc<str>,
    pub(crate) cache: CacheReader<T>,
    pub(crate) caches: CacheMap,
    pub(crate) queue: WorkQueue<T::Key>,
}

/// What a reconcile gets besides its object: the user's data (shared, as an `Arc`), the
/// controller's primary cache and the caches of its secondary watches, by type.
///
/// It dereferences to the user's data, so `ctx.client` reads a field of it. Cloning is cheap.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cache_core::controller::{Action, Context, Controller};
/// use cache_core::{Cache, Indexed};
/// use tokio_util::sync::CancellationToken;
///
/// #[derive(Debug, Indexed)]
/// struct Pod { #[key] name: String, #[index] node: String }
///
/// #[derive(Debug, Indexed)]
/// struct Node { #[key] name: String, unschedulable: bool }
///
/// struct Eviction { dry_run: bool, evicted: Mutex<Vec<String>> }
///
/// async fn reconcile(pod: Arc<Pod>, ctx: Context<Pod, Eviction>) -> Result<Action, std::convert::Infallible> {
///     // Another cache of the controller, by type.
///     let cordoned = ctx
///         .cache_of::<Node>()
///         .and_then(|nodes| nodes.get_by_key(&pod.node))
///         .is_some_and(|node| node.unschedulable);
///     // `ctx.dry_run`: a field of the user's data.
///     if cordoned && !ctx.dry_run {
///         ctx.evicted.lock().unwrap().push(pod.name.clone());
///     }
///     Ok(Action::await_change())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cache_core::StoreError> {
/// let (pods, nodes) = (Arc::new(Cache::<Pod>::new()), Arc::new(Cache::<Node>::new()));
/// pods.add(Arc::new(Pod { name: "web".into(), node: "n1".into() }))?;
/// pods.add(Arc::new(Pod { name: "db".into(), node: "n2".into() }))?;
/// nodes.add(Arc::new(Node { name: "n1".into(), unschedulable: true }))?;
///
/// let controller = Controller::for_cache(pods).with_cache(nodes);
/// let handle = controller.handle();
/// let data = Arc::new(Eviction { dry_run: false, evicted: Mutex::new(Vec::new()) });
/// let stop = CancellationToken::new();
/// let run = tokio::spawn(controller.run(reconcile, data.clone(), stop.clone()));
/// while handle.stats().reconciles < 2 {
///     tokio::task::yield_now().await;
/// }
/// stop.cancel();
/// run.await.unwrap();
/// assert_eq!(*data.evicted.lock().unwrap(), ["web"]);
/// # Ok(())
/// # }
/// ```
pub struct Context<T: Object, D> {
    shared: Arc<Shared<T>>,
    data: Arc<D>,
    term: Option<Leadership>,
}

impl<T: Object, D> Clone for Context<T, D> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            data: self.data.clone(),
            term: self.term.clone(),
        }
    }
}

impl<T: Object, D> Context<T, D> {
    pub(crate) fn new(shared: Arc<Shared<T>>, data: Arc<D>, term: Option<Leadership>) -> Self {
        Self { shared, data, term }
    }

    /// The term of leadership this reconcile runs under, when the controller runs under
    /// [leader election](super::Controller::leader_election); `None` otherwise.
    pub fn leadership(&self) -> Option<&Leadership> {
        self.term.as_ref()
    }

    /// The fencing token of the term this reconcile runs under (see
    /// [`Leadership::fencing_token`]): pass it with writes that a replaced leader must not make.
    pub fn fencing_token(&self) -> Option<u64> {
        self.term.as_ref().map(Leadership::fencing_token)
    }

    /// The user's data, as given to [`Controller::run`](super::Controller::run).
    pub fn data(&self) -> &Arc<D> {
        &self.data
    }

    /// The controller's name (the `controller` label of its metrics).
    pub fn controller_name(&self) -> &str {
        &self.shared.name
    }

    /// The primary cache, read-only: the objects this controller reconciles.
    pub fn cache(&self) -> &CacheReader<T> {
        &self.shared.cache
    }

    /// The cache of objects of type `U` that the controller knows: its primary cache when `U`
    /// is `T`, or the cache of a secondary watch of `U` (the first one, if it has several).
    /// `None` if it knows no cache of that type. The handle is read-only.
    pub fn cache_of<U: Object>(&self) -> Option<CacheReader<U>> {
        self.shared.caches.get::<U>()
    }

    /// How many times `key` has been requeued with backoff since its last success (see
    /// [`Action::requeue_rate_limited`](super::Action::requeue_rate_limited)). An error policy
    /// can give up after a number of retries.
    pub fn num_requeues(&self, key: &T::Key) -> u32 {
        self.shared.queue.num_requeues(key)
    }
}

impl<T: Object, D> Deref for Context<T, D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.data
    }
}

impl<T: Object, D: fmt::Debug> fmt::Debug for Context<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("controller", &self.shared.name)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}
