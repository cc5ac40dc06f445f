//! What an informer hands its handlers: the [`EventHandler`] trait, its closure adapter
//! [`HandlerFns`], the [`FilteringHandler`] adapter, and the typed [`InformerEvent`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::fifo::DeletedObject;
use crate::object::Object;

/// Receives an informer's notifications (client-go's `ResourceEventHandler`, typed). Every
/// method has a default that does nothing: implement only what you need.
///
/// Each registered handler has its own unbounded buffer and its own task, which calls these
/// methods one at a time, in the order the changes happened. The informer's cache has already
/// been updated when a method runs, so a handler that reads the cache sees the change (or a
/// later state).
///
/// The methods are synchronous and run on a runtime worker thread: a handler that does
/// long or blocking work should hand it on (to a [`WorkQueue`](crate::workqueue::WorkQueue), or to
/// `tokio::task::spawn_blocking`) rather than hold the worker. A handler that panics loses the
/// notification it was handling (the panic is logged through `tracing`) and goes on with the
/// next one; other handlers are not affected.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use cache_core::informer::EventHandler;
/// use cache_core::{DeletedObject, Object};
///
/// struct Pod { name: String }
/// impl Object for Pod {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
///
/// #[derive(Default)]
/// struct Count { live: AtomicUsize }
///
/// impl EventHandler<Pod> for Count {
///     fn on_add(&self, _pod: Arc<Pod>, _is_in_initial_list: bool) {
///         self.live.fetch_add(1, Ordering::Relaxed);
///     }
///     fn on_delete(&self, _pod: DeletedObject<Pod>) {
///         self.live.fetch_sub(1, Ordering::Relaxed);
///     }
///     // on_update: the default, which does nothing.
/// }
///
/// let count = Count::default();
/// count.on_add(Arc::new(Pod { name: "web".into() }), true);
/// count.on_update(Arc::new(Pod { name: "web".into() }), Arc::new(Pod { name: "web".into() }));
/// assert_eq!(count.live.load(Ordering::Relaxed), 1);
/// ```
pub trait EventHandler<T: Object>: Send + Sync + 'static {
    /// An object was added. `is_in_initial_list` is true for the objects of the first list
    /// (and for the objects already cached when the handler was added to a running informer),
    /// false for objects created later, relists included.
    fn on_add(&self, obj: Arc<T>, is_in_initial_list: bool) {
        let _ = (obj, is_in_initial_list);
    }

    /// An object was changed, or is re-delivered by a resync (then `old` and `new` carry the
    /// same resource version, and are often the same object).
    fn on_update(&self, old: Arc<T>, new: Arc<T>) {
        let _ = (old, new);
    }

    /// An object was deleted: its last state, or a tombstone when the delete itself was missed
    /// and a relist showed the object gone.
    fn on_delete(&self, obj: DeletedObject<T>) {
        let _ = obj;
    }
}

impl<T: Object, H: EventHandler<T> + ?Sized> EventHandler<T> for Arc<H> {
    fn on_add(&self, obj: Arc<T>, is_in_initial_list: bool) {
        (**self).on_add(obj, is_in_initial_list);
    }
    fn on_update(&self, old: Arc<T>, new: Arc<T>) {
        (**self).on_update(old, new);
    }
    fn on_delete(&self, obj: DeletedObject<T>) {
        (**self).on_delete(obj);
    }
}

impl<T: Object, H: EventHandler<T> + ?Sized> EventHandler<T> for Box<H> {
    fn on_add(&self, obj: Arc<T>, is_in_initial_list: bool) {
        (**self).on_add(obj, is_in_initial_list);
    }
    fn on_update(&self, old: Arc<T>, new: Arc<T>) {
        (**self).on_update(old, new);
    }
    fn on_delete(&self, obj: DeletedObject<T>) {
        (**self).on_delete(obj);
    }
}

type AddFn<T> = Box<dyn Fn(Arc<T>, bool) + Send + Sync>;
type UpdateFn<T> = Box<dyn Fn(Arc<T>, Arc<T>) + Send + Sync>;
type DeleteFn<T> = Box<dyn Fn(DeletedObject<T>) + Send + Sync>;

/// An [`EventHandler`] made of closures (client-go's `ResourceEventHandlerDetailedFuncs`); the
/// ones not given do nothing.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cache_core::informer::{EventHandler, HandlerFns};
/// use cache_core::Object;
///
/// struct Pod { name: String }
/// impl Object for Pod {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let handler = HandlerFns::new()
///     .added({
///         let seen = seen.clone();
///         move |pod: Arc<Pod>, initial| seen.lock().unwrap().push(format!("add {} {initial}", pod.name))
///     })
///     .deleted({
///         let seen = seen.clone();
///         move |pod| seen.lock().unwrap().push(format!("delete {}", pod.key()))
///     });
///
/// handler.on_add(Arc::new(Pod { name: "web".into() }), true);
/// handler.on_update(Arc::new(Pod { name: "web".into() }), Arc::new(Pod { name: "web".into() }));
/// assert_eq!(*seen.lock().unwrap(), ["add web true"]);
/// ```
pub struct HandlerFns<T: Object> {
    add: Option<AddFn<T>>,
    update: Option<UpdateFn<T>>,
    delete: Option<DeleteFn<T>>,
}

impl<T: Object> Default for HandlerFns<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Object> fmt::Debug for HandlerFns<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFns")
            .field("added", &self.add.is_some())
            .field("updated", &self.update.is_some())
            .field("deleted", &self.delete.is_some())
            .finish()
    }
}

impl<T: Object> HandlerFns<T> {
    /// A handler that does nothing yet.
    pub fn new() -> Self {
        Self {
            add: None,
            update: None,
            delete: None,
        }
    }

    /// Calls `f(obj, is_in_initial_list)` on each add.
    #[must_use]
    pub fn added(mut self, f: impl Fn(Arc<T>, bool) + Send + Sync + 'static) -> Self {
        self.add = Some(Box::new(f));
        self
    }

    /// Calls `f(old, new)` on each update.
    #[must_use]
    pub fn updated(mut self, f: impl Fn(Arc<T>, Arc<T>) + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }

    /// Calls `f(deleted)` on each delete.
    #[must_use]
    pub fn deleted(mut self, f: impl Fn(DeletedObject<T>) + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<T: Object> EventHandler<T> for HandlerFns<T> {
    fn on_add(&self, obj: Arc<T>, is_in_initial_list: bool) {
        if let Some(f) = &self.add {
            f(obj, is_in_initial_list);
        }
    }
    fn on_update(&self, old: Arc<T>, new: Arc<T>) {
        if let Some(f) = &self.update {
            f(old, new);
        }
    }
    fn on_delete(&self, obj: DeletedObject<T>) {
        if let Some(f) = &self.delete {
            f(obj);
        }
    }
}

/// Passes on to `handler` only what concerns objects for which `filter` holds (client-go's
/// `FilteringResourceEventHandler`).
///
/// - An add or a delete is passed on when the filter holds for its object. A tombstone without
///   a last known state is always passed on: nothing is known to filter it by, and dropping it
///   could leave `handler` believing the object still exists.
/// - An update is mapped by what the filter says of the old and the new object:
///
///   | old | new | `handler` gets |
///   |---|---|---|
///   | holds | holds | `on_update(old, new)` |
///   | fails | holds | `on_add(new, false)`: the object entered the set |
///   | holds | fails | `on_delete(old)`: the object left the set |
///   | fails | fails | nothing |
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use cache_core::informer::{EventHandler, FilteringHandler, HandlerFns};
/// use cache_core::Object;
///
/// struct Pod { name: String, running: bool }
/// impl Object for Pod {
///     type Key = String;
///     fn key(&self) -> String { self.name.clone() }
/// }
/// let pod = |running| Arc::new(Pod { name: "web".into(), running });
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let inner = HandlerFns::new()
///     .added({ let s = seen.clone(); move |_, _| s.lock().unwrap().push("add") })
///     .updated({ let s = seen.clone(); move |_, _| s.lock().unwrap().push("update") })
///     .deleted({ let s = seen.clone(); move |_| s.lock().unwrap().push("delete") });
/// let running = FilteringHandler::new(|p: &Pod| p.running, inner);
///
/// running.on_add(pod(false), true);        // filtered out
/// running.on_update(pod(false), pod(true)); // entered the set
/// running.on_update(pod(true), pod(true));
/// running.on_update(pod(true), pod(false)); // left the set
/// assert_eq!(*seen.lock().unwrap(), ["add", "update", "delete"]);
/// ```
pub struct FilteringHandler<F, H> {
    filter: F,
    handler: H,
}

impl<F, H: fmt::Debug> fmt::Debug for FilteringHandler<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilteringHandler")
            .field("handler", &self.handler)
            .finish_non_exhaustive()
    }
}

impl<F, H> FilteringHandler<F, H> {
    /// Passes on to `handler` what concerns objects for which `filter` holds.
    pub fn new(filter: F, handler: H) -> Self {
        Self { filter, handler }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.handler
    }
}

impl<T, F, H> EventHandler<T> for FilteringHandler<F, H>
where
    T: Object,
    F: Fn(&T) -> bool + Send + Sync + 'static,
    H: EventHandler<T>,
{
    fn on_add(&self, obj: Arc<T>, is_in_initial_list: bool) {
        if (self.filter)(&obj) {
            self.handler.on_add(obj, is_in_initial_list);
        }
    }

    fn on_update(&self, old: Arc<T>, new: Arc<T>) {
        match ((self.filter)(&old), (self.filter)(&new)) {
            (true, true) => self.handler.on_update(old, new),
            (false, true) => self.handler.on_add(new, false),
            (true, false) => self.handler.on_delete(DeletedObject::Object(old)),
            (false, false) => {}
        }
    }

    fn on_delete(&self, obj: DeletedObject<T>) {
        if obj.object().is_none_or(|o| (self.filter)(o)) {
            self.handler.on_delete(obj);
        }
    }
}

/// One notification of an informer, as its [event stream](super::SharedIndexInformer::events)
/// yields it: what an [`EventHandler`] method would receive.
pub enum InformerEvent<T: Object> {
    /// An object was added (see [`EventHandler::on_add`]).
    Added {
        /// The object.
        object: Arc<T>,
        /// Whether it belongs to the first list.
        is_in_initial_list: bool,
    },
    /// An object was changed or resynced (see [`EventHandler::on_update`]).
    Updated {
        /// The object as it was.
        old: Arc<T>,
        /// The object as it is.
        new: Arc<T>,
    },
    /// An object was deleted (see [`EventHandler::on_delete`]).
    Deleted(DeletedObject<T>),
}

impl<T: Object> InformerEvent<T> {
    /// The key of the object concerned.
    pub fn key(&self) -> T::Key {
        match self {
            InformerEvent::Added { object, .. } => object.key(),
            InformerEvent::Updated { new, .. } => new.key(),
            InformerEvent::Deleted(d) => d.key(),
        }
    }

    /// The object as it is now: the added or updated object, or a deleted object's last known
    /// state (`None` for a tombstone without one).
    pub fn object(&self) -> Option<&Arc<T>> {
        match self {
            InformerEvent::Added { object, .. } => Some(object),
            InformerEvent::Updated { new, .. } => Some(new),
            InformerEvent::Deleted(d) => d.object(),
        }
    }

    /// Hands the event to the matching method of `handler`.
    pub fn dispatch<H: EventHandler<T> + ?Sized>(self, handler: &H) {
        match self {
            InformerEvent::Added {
                object,
                is_in_initial_list,
            } => handler.on_add(object, is_in_initial_list),
            InformerEvent::Updated { old, new } => handler.on_update(old, new),
            InformerEvent::Deleted(d) => handler.on_delete(d),
        }
    }

    pub(crate) fn is_initial_add(&self) -> bool {
        matches!(
            self,
            InformerEvent::Added {
                is_in_initial_list: true,
                ..
            }
        )
    }
}

impl<T: Object> Clone for InformerEvent<T> {
    fn clone(&self) -> Self {
        match self {
            InformerEvent::Added {
                object,
                is_in_initial_list,
            } => InformerEvent::Added {
                object: object.clone(),
                is_in_initial_list: *is_in_initial_list,
            },
            InformerEvent::Updated { old, new } => InformerEvent::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            InformerEvent::Deleted(d) => InformerEvent::Deleted(d.clone()),
        }
    }
}

impl<T: Object + fmt::Debug> fmt::Debug for InformerEvent<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InformerEvent::Added {
                object,
                is_in_initial_list,
            } => f
                .debug_struct("Added")
                .field("object", object)
                .field("is_in_initial_list", is_in_initial_list)
                .finish(),
            InformerEvent::Updated { old, new } => f
                .debug_struct("Updated")
                .field("old", old)
                .field("new", new)
                .finish(),
            InformerEvent::Deleted(d) => f.debug_tuple("Deleted").field(d).finish(),
        }
    }
}

impl<T: Object + PartialEq> PartialEq for InformerEvent<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                InformerEvent::Added {
                    object: a,
                    is_in_initial_list: ia,
                },
                InformerEvent::Added {
                    object: b,
                    is_in_initial_list: ib,
                },
            ) => a == b && ia == ib,
            (
                InformerEvent::Updated { old: oa, new: na },
                InformerEvent::Updated { old: ob, new: nb },
            ) => oa == ob && na == nb,
            (InformerEvent::Deleted(a), InformerEvent::Deleted(b)) => a == b,
            _ => false,
        }
    }
}

/// How a handler is registered; see
/// [`add_event_handler_with`](super::SharedIndexInformer::add_event_handler_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// How often the handler gets every cached object again as an update (`old` and `new` the
    /// same). `None`: the informer's default; zero: never. Clamped as client-go does (see the
    /// [module documentation](super#resync)).
    pub resync_period: Option<Duration>,
    /// The handler's name in logs (default: its type name).
    pub name: Option<String>,
}

impl HandlerOptions {
    /// The defaults: the informer's resync period, the type name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`resync_period`](Self::resync_period).
    #[must_use]
    pub fn resync_period(mut self, period: Duration) -> Self {
        self.resync_period = Some(period);
        self
    }

    /// Sets [`name`](Self::name).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}
