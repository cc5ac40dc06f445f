//! [`InformerFactory`]: one shared informer per type, source and options, for every controller
//! of a program (client-go's `SharedInformerFactory`).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sync::{CacheSync, SyncError, pending_syncs, wait_for_named_sync, wait_for_sync};
use super::{DEFAULT_BATCH_SIZE, QueueKind, SharedIndexInformer, SharedIndexInformerBuilder};
use crate::index::Indexed;
use crate::object::Object;
use crate::short_type_name;
use crate::source::ListerWatcher;

/// What makes two informers of one type and one source different: each distinct set of options
/// gets its own informer. Options left unset take the factory's defaults.
///
/// ```
/// use std::time::Duration;
/// use cache_core::informer::{InformerOptions, QueueKind};
///
/// let options = InformerOptions::new().resync(Duration::from_secs(30)).queue(QueueKind::Delta);
/// assert_ne!(options, InformerOptions::new());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct InformerOptions {
    resync: Option<Duration>,
    queue: QueueKind,
    batch_size: Option<usize>,
}

impl InformerOptions {
    /// The defaults: the factory's resync period, [`QueueKind::Real`], [`DEFAULT_BATCH_SIZE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The informer's resync period ([`SharedIndexInformerBuilder::resync`]) instead of the
    /// factory's.
    #[must_use]
    pub fn resync(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    /// The queue between the reflector and the cache.
    #[must_use]
    pub fn queue(mut self, kind: QueueKind) -> Self {
        self.queue = kind;
        self
    }

    /// The most deltas applied to the cache in one batch.
    #[must_use]
    pub fn batch_size(mut self, deltas: usize) -> Self {
        self.batch_size = Some(deltas.max(1));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    type_id: TypeId,
    source: String,
    options: InformerOptions,
}

#[derive(Clone)]
struct Entry {
    informer: Arc<dyn Held>,
    /// Whether [`InformerFactory::start`] has spawned its run (it marks itself started only
    /// once its task runs).
    spawned: bool,
}

impl Entry {
    fn running(&self) -> bool {
        self.spawned || self.informer.is_started()
    }
}

/// An informer of any type, as the factory keeps it.
trait Held: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn as_sync(&self) -> &dyn CacheSync;
    fn is_started(&self) -> bool;
    fn spawn(&self, cancel: CancellationToken) -> JoinHandle<()>;
}

impl<T: Object> Held for SharedIndexInformer<T> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_sync(&self) -> &dyn CacheSync {
        self
    }
    fn is_started(&self) -> bool {
        SharedIndexInformer::is_started(self)
    }
    fn spawn(&self, cancel: CancellationToken) -> JoinHandle<()> {
        let informer = self.clone();
        tokio::spawn(async move { informer.run(cancel).await })
    }
}

/// Hands out shared informers: one per object type, source and [`InformerOptions`], created on
/// the first request and the same one for every later request, so that every controller of a
/// program that watches pods shares one list+watch and one cache (client-go's
/// `SharedInformerFactory`).
///
/// - A source is named by the caller (`"etcd"`, `"kube:prod"`): the name stands for the source
///   in the key, and the function that makes the source runs only when the informer is created.
/// - [`start`](Self::start) runs, together, every informer not running yet, each on its own
///   task; call it again after requesting more informers (it starts only the new ones).
/// - [`wait_for_sync`](Self::wait_for_sync) is one wait for all the started
///   informers; [`wait_for_named_sync`](Self::wait_for_named_sync) also logs which
///   ones are late, by name.
/// - [`shutdown`](Self::shutdown) stops them all and waits for their tasks.
///
/// Cloning is cheap: clones share one factory.
///
/// ```
/// use cache_core::informer::{InformerFactory, InformerOptions};
/// use cache_core::source::memory::MemorySource;
/// use cache_core::{Indexed, ResourceVersion};
///
/// #[derive(Clone, Debug, Indexed)]
/// struct Pod { #[key] name: String, #[index] node: String, #[resource_version] rv: Option<ResourceVersion> }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let source = MemorySource::new();
/// source.put(Pod { name: "web".into(), node: "n1".into(), rv: None });
///
/// let factory = InformerFactory::new();
/// // Two controllers ask for pods from the same source: they get one informer.
/// let for_scheduler = factory.informer::<Pod, _>("memory", &InformerOptions::new(), || source.clone());
/// let for_autoscaler = factory.informer::<Pod, _>("memory", &InformerOptions::new(), || source.clone());
/// assert!(for_scheduler.cache().same_cache(for_autoscaler.cache()));
///
/// factory.start();
/// factory.wait_for_sync().await?;
/// assert_eq!(for_autoscaler.cache().by_node("n1").len(), 1);
/// factory.shutdown().await;
/// assert!(for_scheduler.is_stopped());
/// # Ok::<(), cache_core::informer::SyncError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct InformerFactory {
    inner: Arc<Inner>,
}

struct Inner {
    resync: Duration,
    informers: Mutex<HashMap<Key, Entry>>,
    /// In the order of creation, for logs and waits.
    order: Mutex<Vec<Key>>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps and lists are valid after any panic.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for InformerFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InformerFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InformerFactory")
            .field("resync", &self.inner.resync)
            .field("informers", &self.len())
            .field("shut_down", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

impl InformerFactory {
    /// A factory whose informers do not resync unless their options say so.
    pub fn new() -> Self {
        Self::with_resync(Duration::ZERO)
    }

    /// A factory whose informers resync with this period unless their options say otherwise
    /// (client-go's `defaultResync`).
    pub fn with_resync(period: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                resync: period,
                informers: Mutex::new(HashMap::new()),
                order: Mutex::new(Vec::new()),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The informer of `T` from the source named `source` with `options`: the one already made
    /// for that triple, or a new one over `make_source()` with the type's own indexes, named
    /// `source/Type`.
    pub fn informer<T, S>(
        &self,
        source: &str,
        options: &InformerOptions,
        make_source: impl FnOnce() -> S,
    ) -> SharedIndexInformer<T>
    where
        T: Indexed,
        S: ListerWatcher<T>,
    {
        self.informer_with(source, options, make_source, |builder| builder)
    }

    /// [`informer`](Self::informer), and `configure` adjusts the builder of a new informer (its
    /// name, transform, extra indexes, error handler). Only the request that creates the
    /// informer configures it; later requests get it as it is (add indexes to a running
    /// informer with [`SharedIndexInformer::add_indexers`]).
    ///
    /// `make_source` and `configure` run outside the factory's lock. When two requests for one
    /// new informer race, both may build one; the first to finish is kept and handed to both.
    pub fn informer_with<T, S>(
        &self,
        source: &str,
        options: &InformerOptions,
        make_source: impl FnOnce() -> S,
        configure: impl FnOnce(SharedIndexInformerBuilder<T>) -> SharedIndexInformerBuilder<T>,
    ) -> SharedIndexInformer<T>
    where
        T: Indexed,
        S: ListerWatcher<T>,
    {
        let key = Key {
            type_id: TypeId::of::<T>(),
            source: source.to_owned(),
            options: options.clone(),
        };
        if let Some(found) = self.find::<T>(&key) {
            return found;
        }
        let builder = SharedIndexInformer::builder(make_source())
            .name(format!("{source}/{}", short_type_name::<T>()))
            .resync(options.resync.unwrap_or(self.inner.resync))
            .queue(options.queue)
            .batch_size(options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE));
        let built = configure(builder).build();
        let mut informers = lock(&self.inner.informers);
        if let Some(entry) = informers.get(&key) {
            return downcast::<T>(entry.informer.as_ref());
        }
        let entry = Entry {
            informer: Arc::new(built.clone()),
            spawned: false,
        };
        informers.insert(key.clone(), entry);
        lock(&self.inner.order).push(key);
        built
    }

    fn find<T: Object>(&self, key: &Key) -> Option<SharedIndexInformer<T>> {
        lock(&self.inner.informers)
            .get(key)
            .map(|entry| downcast::<T>(entry.informer.as_ref()))
    }

    /// How many informers the factory holds.
    pub fn len(&self) -> usize {
        lock(&self.inner.informers).len()
    }

    /// Whether the factory holds no informer yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The informers that are running (or were), in the order they were created.
    fn started(&self) -> Vec<Arc<dyn Held>> {
        let informers = lock(&self.inner.informers);
        lock(&self.inner.order)
            .iter()
            .filter_map(|k| informers.get(k))
            .filter(|e| e.running())
            .map(|e| e.informer.clone())
            .collect()
    }

    /// Runs every informer that is not running yet, each on its own task of the current tokio
    /// runtime, and returns how many it started. Informers requested later need another call.
    /// After [`shutdown`](Self::shutdown) it starts nothing.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns tasks).
    pub fn start(&self) -> usize {
        let mut tasks = lock(&self.inner.tasks);
        if self.inner.cancel.is_cancelled() {
            return 0;
        }
        let mut started = 0;
        let mut informers = lock(&self.inner.informers);
        for key in lock(&self.inner.order).iter() {
            if let Some(entry) = informers.get_mut(key)
                && !entry.running()
            {
                tasks.push(entry.informer.spawn(self.inner.cancel.child_token()));
                entry.spawned = true;
                started += 1;
            }
        }
        started
    }

    /// Waits until every started informer has synced. Informers not started are not waited for
    /// (as in client-go).
    ///
    /// # Errors
    ///
    /// A [`SyncError`] as soon as an informer stops before it synced, naming it.
    pub async fn wait_for_sync(&self) -> Result<(), SyncError> {
        let held = self.started();
        let caches: Vec<&dyn CacheSync> = held.iter().map(|h| h.as_sync()).collect();
        wait_for_sync(&caches).await
    }

    /// [`wait_for_sync`](Self::wait_for_sync) with the logs of
    /// [`wait_for_named_sync`](super::wait_for_named_sync): for `controller`, the
    /// informers still not synced are named every
    /// [`DEFAULT_SYNC_REPORT_INTERVAL`](super::DEFAULT_SYNC_REPORT_INTERVAL).
    ///
    /// # Errors
    ///
    /// A [`SyncError`] as soon as an informer stops before it synced, naming it.
    pub async fn wait_for_named_sync(&self, controller: &str) -> Result<(), SyncError> {
        let held = self.started();
        let caches: Vec<&dyn CacheSync> = held.iter().map(|h| h.as_sync()).collect();
        wait_for_named_sync(controller, &caches).await
    }

    /// The names of the started informers that have not synced yet.
    pub fn pending(&self) -> Vec<String> {
        let held = self.started();
        let caches: Vec<&dyn CacheSync> = held.iter().map(|h| h.as_sync()).collect();
        pending_syncs(&caches)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Stops every informer and waits until their tasks have ended (client-go's `Shutdown`).
    /// The factory starts nothing afterwards.
    pub async fn shutdown(&self) {
        let tasks = {
            let mut tasks = lock(&self.inner.tasks);
            self.inner.cancel.cancel();
            std::mem::take(&mut *tasks)
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn downcast<T: Object>(held: &dyn Held) -> SharedIndexInformer<T> {
    held.as_any()
        .downcast_ref::<SharedIndexInformer<T>>()
        .expect("the key's type id is the informer's type")
        .clone()
}
