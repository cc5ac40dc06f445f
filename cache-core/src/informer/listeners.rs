//! The handlers' side of an informer (client-go's `sharedProcessor` and `processorListener`):
//! the registered listeners, each with its own unbounded buffer and its own task, the resync
//! schedule, and the per-handler sync tracking.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::handler::{EventHandler, HandlerOptions, InformerEvent};
use super::{InformerError, SyncError};
use crate::object::Object;
use crate::store::Cache;
use crate::{panic_message, short_type_name};

/// The shortest resync period a handler can ask for; shorter ones are raised to it
/// (client-go's `minimumResyncPeriod`).
pub const MINIMUM_RESYNC_PERIOD: Duration = Duration::from_secs(1);

/// Identities of informers and listeners, so that a registration of one informer is told apart
/// from another's.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

type ListenerTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Whether the informer has synced and whether it has stopped.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Status {
    pub(super) synced: bool,
    pub(super) stopped: bool,
}

pub(super) struct Processor<T: Object> {
    id: u64,
    pub(super) name: String,
    pub(super) cache: Arc<Cache<T>>,
    state: Mutex<State<T>>,
    pub(super) status: watch::Sender<Status>,
}

/// Everything the processing of deltas and the registration of handlers must see together:
/// holding this lock is client-go's `blockDeltas`.
pub(super) struct State<T: Object> {
    listeners: Vec<Listener<T>>,
    started: bool,
    stopped: bool,
    synced: bool,
    runtime: Option<Handle>,
    tasks: Vec<JoinHandle<()>>,
    default_resync: Duration,
    resync_check_period: Duration,
    /// Whether the last resync check found a listener due.
    any_syncing: bool,
}

struct Listener<T: Object> {
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<InformerEvent<T>>,
    /// The period asked for, after clamping to the minimum.
    requested_resync: Duration,
    resync_period: Duration,
    next_resync: Instant,
    /// Due for a resync: gets the sync notifications of the current resync.
    syncing: bool,
    /// The task, until the informer starts and spawns it (`None` for a stream).
    task: Option<ListenerTask>,
}

impl<T: Object> Processor<T> {
    pub(super) fn new(name: String, cache: Arc<Cache<T>>, default_resync: Duration) -> Self {
        Self {
            id: next_id(),
            name,
            cache,
            state: Mutex::new(State {
                listeners: Vec::new(),
                started: false,
                stopped: false,
                synced: false,
                runtime: None,
                tasks: Vec::new(),
                default_resync,
                resync_check_period: default_resync,
                any_syncing: false,
            }),
            status: watch::Sender::new(Status::default()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No user code runs under this lock, and every change to the state is completed
        // before it is released: a poisoned lock is consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn is_started(&self) -> bool {
        self.lock().started
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    pub(super) fn handler_count(&self) -> usize {
        self.lock().listeners.len()
    }

    pub(super) fn resync_check_period(&self) -> Duration {
        self.lock().resync_check_period
    }

    /// Registers a handler that runs on its own task.
    pub(super) fn add_handler<H: EventHandler<T>>(
        &self,
        handler: H,
        options: &HandlerOptions,
    ) -> Result<HandlerRegistration, InformerError> {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| short_type_name::<H>().to_owned());
        self.register(name, options, |rx, shared| {
            Some(Box::pin(run_listener(handler, rx, shared)))
        })
    }

    /// Registers a stream.
    pub(super) fn add_stream(
        self: &Arc<Self>,
        options: &HandlerOptions,
    ) -> Result<EventStream<T>, InformerError> {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| "event stream".to_owned());
        let mut receiver = None;
        let registration = self.register(name, options, |rx, _| {
            receiver = Some(rx);
            None
        })?;
        let rx = receiver.expect("register hands the receiver over before returning Ok");
        Ok(EventStream {
            rx,
            registration,
            processor: Arc::downgrade(self),
            ended: false,
        })
    }

    /// client-go's `AddEventHandlerWithOptions`: the resync rules, then, on a running informer,
    /// synthetic adds of everything cached, all under the lock that processing holds, so that
    /// the new listener misses nothing and gets nothing twice.
    fn register(
        &self,
        name: String,
        options: &HandlerOptions,
        attach: impl FnOnce(
            mpsc::UnboundedReceiver<InformerEvent<T>>,
            Arc<Shared>,
        ) -> Option<ListenerTask>,
    ) -> Result<HandlerRegistration, InformerError> {
        let mut state = self.lock();
        let state = &mut *state;
        if state.stopped {
            return Err(InformerError::HandlerAfterStop { handler: name });
        }
        let requested = state.requested_period(options.resync_period, &name);
        let period = determine_resync_period(requested, state.resync_check_period, &name);
        let (sender, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            id: next_id(),
            informer: self.id,
            name,
            pending: AtomicUsize::new(0),
            upstream: AtomicBool::new(false),
            resync_nanos: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            status: watch::Sender::new(ListenerStatus::default()),
        });
        shared.set_resync_period(period);
        if state.started {
            for obj in self.cache.snapshot().iter() {
                shared.start_initial();
                let _ = sender.send(InformerEvent::Added {
                    object: obj.clone(),
                    is_in_initial_list: true,
                });
            }
        }
        if state.synced {
            shared.upstream_synced();
        }
        let mut task = attach(rx, shared.clone());
        if state.started
            && let (Some(runtime), Some(t)) = (&state.runtime, task.take())
        {
            state.tasks.retain(|t| !t.is_finished());
            state.tasks.push(runtime.spawn(t));
        }
        state.listeners.push(Listener {
            shared: shared.clone(),
            sender,
            requested_resync: requested,
            resync_period: period,
            next_resync: Instant::now() + period,
            syncing: false,
            task,
        });
        Ok(HandlerRegistration { shared })
    }

    /// Unregisters; false for a registration that is not (or no longer) here.
    pub(super) fn remove(&self, registration: &HandlerRegistration) -> bool {
        let shared = &registration.shared;
        if shared.informer != self.id {
            return false;
        }
        let mut state = self.lock();
        let Some(at) = state
            .listeners
            .iter()
            .position(|l| l.shared.id == shared.id)
        else {
            return false;
        };
        let listener = state.listeners.remove(at);
        drop(state);
        listener.shared.mark_removed();
        listener.shared.cancel.cancel();
        if listener.task.is_some() {
            // Never spawned: nothing will run.
            listener.shared.mark_finished();
        }
        true
    }

    /// Marks the informer started and spawns the listeners' tasks; false if it had started.
    pub(super) fn start(&self, runtime: Handle) -> bool {
        let mut state = self.lock();
        let state = &mut *state;
        if state.started {
            return false;
        }
        state.started = true;
        for listener in &mut state.listeners {
            if let Some(task) = listener.task.take() {
                state.tasks.push(runtime.spawn(task));
            }
        }
        state.runtime = Some(runtime);
        true
    }

    /// The informer's queue has synced: so has the informer, and each listener once it has
    /// handled its initial adds.
    pub(super) fn mark_synced(&self) {
        let mut state = self.lock();
        state.synced = true;
        for listener in &state.listeners {
            listener.shared.upstream_synced();
        }
        drop(state);
        self.status.send_modify(|s| s.synced = true);
    }

    /// Marks the informer stopped, stops every listener (a callback in progress finishes; what
    /// is still buffered for it is dropped; a stream yields what it has buffered, then ends),
    /// and hands over the tasks to wait for. Idempotent.
    pub(super) fn stop(&self) -> Vec<JoinHandle<()>> {
        let mut state = self.lock();
        state.stopped = true;
        let listeners = std::mem::take(&mut state.listeners);
        let tasks = std::mem::take(&mut state.tasks);
        drop(state);
        for listener in listeners {
            listener.shared.mark_removed();
            listener.shared.cancel.cancel();
            if listener.task.is_some() {
                listener.shared.mark_finished();
            }
        }
        self.status.send_modify(|s| s.stopped = true);
        tasks
    }

    /// client-go's `shouldResync`: marks the listeners due for a resync, schedules their next
    /// one, and says whether any is due.
    pub(super) fn should_resync(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let mut any = false;
        for listener in &mut state.listeners {
            listener.syncing = !listener.resync_period.is_zero() && now >= listener.next_resync;
            if listener.syncing {
                any = true;
                listener.next_resync = now + listener.resync_period;
            }
        }
        state.any_syncing = any;
        any
    }
}

impl<T: Object> State<T> {
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether a sync notification would reach anyone.
    pub(super) fn any_syncing(&self) -> bool {
        self.any_syncing
    }

    /// Hands `event` to every listener; a sync notification only to the listeners due for a
    /// resync.
    pub(super) fn distribute(&self, event: InformerEvent<T>, sync: bool) {
        if sync && !self.any_syncing {
            return;
        }
        let initial = event.is_initial_add();
        for listener in &self.listeners {
            if sync && !listener.syncing {
                continue;
            }
            if initial {
                listener.shared.start_initial();
            }
            if listener.sender.send(event.clone()).is_err() && initial {
                listener.shared.finish_initial();
            }
        }
    }

    /// client-go's rules for the period a new handler asks for: at least the minimum; below
    /// the check period, it lowers the check period before the start (re-deriving every
    /// listener's period) and is raised to it after.
    fn requested_period(&mut self, asked: Option<Duration>, name: &str) -> Duration {
        let mut period = asked.unwrap_or(self.default_resync);
        if period.is_zero() {
            return period;
        }
        if period < MINIMUM_RESYNC_PERIOD {
            warn!(handler = %name, ?period, minimum = ?MINIMUM_RESYNC_PERIOD,
                "resync period is too small, changing it to the minimum allowed");
            period = MINIMUM_RESYNC_PERIOD;
        }
        if period < self.resync_check_period {
            if self.started {
                warn!(handler = %name, ?period, check_period = ?self.resync_check_period,
                    "resync period is smaller than the resync check period and the informer has already started, changing it to the check period");
                period = self.resync_check_period;
            } else {
                self.resync_check_period = period;
                for listener in &mut self.listeners {
                    let p = determine_resync_period(
                        listener.requested_resync,
                        period,
                        &listener.shared.name,
                    );
                    listener.resync_period = p;
                    listener.shared.set_resync_period(p);
                }
            }
        }
        period
    }
}

/// client-go's `determineResyncPeriod`: zero stays zero; an informer that does not resync
/// (check period zero) gives zero; a period below the check period is raised to it.
fn determine_resync_period(desired: Duration, check: Duration, name: &str) -> Duration {
    if desired.is_zero() {
        return desired;
    }
    if check.is_zero() {
        warn!(handler = %name, ?desired,
            "the informer does not resync (its resync period is zero): the handler will not be resynced");
        return Duration::ZERO;
    }
    if desired < check {
        warn!(handler = %name, ?desired, ?check,
            "resync period is smaller than the resync check period, changing it to the check period");
        return check;
    }
    desired
}

/// What a listener shares with its registration: identity, sync tracking, status, stop signal.
pub(super) struct Shared {
    id: u64,
    informer: u64,
    name: String,
    /// Initial-list adds queued to the listener and not yet handled (client-go's
    /// `SingleFileTracker`).
    pending: AtomicUsize,
    /// Whether the informer has synced.
    upstream: AtomicBool,
    resync_nanos: AtomicU64,
    cancel: CancellationToken,
    status: watch::Sender<ListenerStatus>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ListenerStatus {
    synced: bool,
    removed: bool,
    finished: bool,
}

impl Shared {
    fn start_initial(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn finish_initial(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.check_synced();
    }

    fn upstream_synced(&self) {
        self.upstream.store(true, Ordering::SeqCst);
        self.check_synced();
    }

    fn check_synced(&self) {
        if self.upstream.load(Ordering::SeqCst) && self.pending.load(Ordering::SeqCst) == 0 {
            self.status
                .send_if_modified(|s| !std::mem::replace(&mut s.synced, true));
        }
    }

    fn mark_removed(&self) {
        self.status
            .send_if_modified(|s| !std::mem::replace(&mut s.removed, true));
    }

    fn mark_finished(&self) {
        self.status.send_if_modified(|s| {
            s.removed = true;
            !std::mem::replace(&mut s.finished, true)
        });
    }

    fn set_resync_period(&self, period: Duration) {
        let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        self.resync_nanos.store(nanos, Ordering::Relaxed);
    }
}

/// A handler's registration with an informer (client-go's `ResourceEventHandlerRegistration`):
/// its own sync state, and a way to wait for its task to end after removal. Cheap to clone.
#[derive(Clone)]
pub struct HandlerRegistration {
    shared: Arc<Shared>,
}

impl fmt::Debug for HandlerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = *self.shared.status.borrow();
        f.debug_struct("HandlerRegistration")
            .field("name", &self.shared.name)
            .field("synced", &status.synced)
            .field("removed", &status.removed)
            .field("finished", &status.finished)
            .finish()
    }
}

impl HandlerRegistration {
    /// The handler's name in logs.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the informer has synced **and** this handler has handled every add of the
    /// initial list queued to it: for a handler added to a running informer, the adds of what
    /// was cached then. A handler that panics on one of them still gets there: that add counts
    /// as handled.
    pub fn has_synced(&self) -> bool {
        self.shared.status.borrow().synced
    }

    /// Waits until [`has_synced`](Self::has_synced).
    ///
    /// # Errors
    ///
    /// A [`SyncError`] naming the handler when it is removed (or its informer stops) before it
    /// synced.
    pub async fn wait_for_sync(&self) -> Result<(), SyncError> {
        let mut rx = self.shared.status.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        match rx.wait_for(|s| s.synced || s.removed).await {
            Ok(status) if status.synced => Ok(()),
            _ => Err(SyncError::stopped(self.name())),
        }
    }

    /// Whether the handler was removed, or its informer stopped.
    pub fn is_removed(&self) -> bool {
        self.shared.status.borrow().removed
    }

    /// Waits until the handler's task has ended: after its removal (or the informer's stop),
    /// once the callback in progress, if any, has returned. A handler that never had a task
    /// (removed before the informer started) has ended when removed; a stream has ended when it
    /// is dropped or has yielded its last event.
    ///
    /// Do not wait for this from inside the handler: it would wait for itself.
    pub async fn wait_stopped(&self) {
        let mut rx = self.shared.status.subscribe();
        let _ = rx.wait_for(|s| s.finished).await;
    }

    /// The resync period in effect, after client-go's rules (zero: never).
    pub fn resync_period(&self) -> Duration {
        Duration::from_nanos(self.shared.resync_nanos.load(Ordering::Relaxed))
    }
}

/// Marks a listener finished when its task ends, however it ends.
struct FinishOnDrop(Arc<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.mark_finished();
    }
}

/// A listener's task: hands each notification to the handler, in order, until removed or
/// stopped.
async fn run_listener<T: Object, H: EventHandler<T>>(
    handler: H,
    mut rx: mpsc::UnboundedReceiver<InformerEvent<T>>,
    shared: Arc<Shared>,
) {
    let _finished = FinishOnDrop(shared.clone());
    loop {
        let event = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let initial = event.is_initial_add();
        let key = event.key();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| event.dispatch(&handler))) {
            error!(
                handler = %shared.name,
                key = ?key,
                panic = panic_message(&*panic),
                "Observed a panic in an event handler: the notification is lost, the handler goes on"
            );
        }
        if initial {
            shared.finish_initial();
        }
    }
}

/// The informer's notifications as a [`Stream`] of [`InformerEvent`]s, for async consumers;
/// from [`SharedIndexInformer::events`](super::SharedIndexInformer::events).
///
/// Like a handler, the stream has its own unbounded buffer: the informer never waits for it.
/// It ends when the informer stops (after yielding what it had buffered). Dropping it removes
/// it from the informer.
pub struct EventStream<T: Object> {
    rx: mpsc::UnboundedReceiver<InformerEvent<T>>,
    registration: HandlerRegistration,
    processor: Weak<Processor<T>>,
    ended: bool,
}

impl<T: Object> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("registration", &self.registration)
            .field("buffered", &self.rx.len())
            .finish()
    }
}

impl<T: Object> EventStream<T> {
    /// The stream's registration: [`has_synced`](HandlerRegistration::has_synced) turns true
    /// once the informer has synced and the stream has yielded every add of the initial list.
    pub fn registration(&self) -> &HandlerRegistration {
        &self.registration
    }
}

impl<T: Object> Stream for EventStream<T> {
    type Item = InformerEvent<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if event.is_initial_add() {
                    this.registration.shared.finish_initial();
                }
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.registration.shared.mark_finished();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Object> Drop for EventStream<T> {
    fn drop(&mut self) {
        if !self.ended
            && let Some(processor) = self.processor.upgrade()
        {
            processor.remove(&self.registration);
        }
        self.registration.shared.mark_finished();
    }
}
