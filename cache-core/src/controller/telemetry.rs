//! The controller's metrics, through the [`metrics`] facade: whatever recorder the program
//! installs (a Prometheus exporter, a statsd client, ...) receives them.

use metrics::{Counter, Gauge, Histogram, SharedString};

use crate::reflector::ReflectorStats;

/// Metric names, all labelled `controller` (the controller's name); the store metrics also
/// `store` (the store's name).
pub mod names {
    /// Counter: reconciles that finished, labelled `result` = `success` or `error` (a panic
    /// counts as an error).
    pub const RECONCILE_TOTAL: &str = "controller_reconcile_total";
    /// Counter: reconciles that failed (returned an error or panicked).
    pub const RECONCILE_ERRORS_TOTAL: &str = "controller_reconcile_errors_total";
    /// Histogram, in seconds: how long reconciles took.
    pub const RECONCILE_TIME_SECONDS: &str = "controller_reconcile_time_seconds";
    /// Counter: keys whose object was gone from the cache when their turn came (not reconciled).
    pub const RECONCILE_SKIPPED_TOTAL: &str = "controller_reconcile_skipped_total";
    /// Gauge: reconciles running now.
    pub const ACTIVE_WORKERS: &str = "controller_active_workers";
    /// Gauge: 1 while the controller is ready (caches synced, taking work), 0 otherwise.
    pub const READY: &str = "controller_ready";
    /// Gauge: keys waiting in the work queue (client-go's `workqueue_depth`).
    pub const WORKQUEUE_DEPTH: &str = "workqueue_depth";
    /// Counter: keys added to the work queue (`workqueue_adds_total`).
    pub const WORKQUEUE_ADDS_TOTAL: &str = "workqueue_adds_total";
    /// Counter: delayed and rate-limited requeues (`workqueue_retries_total`).
    pub const WORKQUEUE_RETRIES_TOTAL: &str = "workqueue_retries_total";
    /// Histogram, in seconds: how long keys waited in the queue
    /// (`workqueue_queue_duration_seconds`).
    pub const WORKQUEUE_QUEUE_DURATION_SECONDS: &str = "workqueue_queue_duration_seconds";
    /// Histogram, in seconds: how long keys were processed, from handout to done
    /// (`workqueue_work_duration_seconds`).
    pub const WORKQUEUE_WORK_DURATION_SECONDS: &str = "workqueue_work_duration_seconds";
    /// Gauge: objects in a store.
    pub const STORE_OBJECTS: &str = "cache_store_objects";
    /// Counter: relists of a store's reflector (lists after the first).
    pub const RELISTS_TOTAL: &str = "cache_reflector_relists_total";
    /// Counter: watch restarts of a store's reflector (watches after the first).
    pub const WATCH_RESTARTS_TOTAL: &str = "cache_reflector_watch_restarts_total";
    /// Counter: watch events a store's reflector applied.
    pub const EVENTS_TOTAL: &str = "cache_reflector_events_total";
    /// Counter: errors a store's reflector reported.
    pub const ERRORS_TOTAL: &str = "cache_reflector_errors_total";
}

/// The reconcile metrics of one controller.
#[derive(Clone)]
pub(crate) struct ReconcileMetrics {
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) errors: Counter,
    pub(crate) time: Histogram,
    pub(crate) skipped: Counter,
    pub(crate) active: Gauge,
    pub(crate) ready: Gauge,
}

impl ReconcileMetrics {
    pub(crate) fn new(name: &SharedString) -> Self {
        let c = || name.clone();
        Self {
            success: metrics::counter!(names::RECONCILE_TOTAL, "controller" => c(), "result" => "success"),
            failure: metrics::counter!(names::RECONCILE_TOTAL, "controller" => c(), "result" => "error"),
            errors: metrics::counter!(names::RECONCILE_ERRORS_TOTAL, "controller" => c()),
            time: metrics::histogram!(names::RECONCILE_TIME_SECONDS, "controller" => c()),
            skipped: metrics::counter!(names::RECONCILE_SKIPPED_TOTAL, "controller" => c()),
            active: metrics::gauge!(names::ACTIVE_WORKERS, "controller" => c()),
            ready: metrics::gauge!(names::READY, "controller" => c()),
        }
    }
}

/// The metrics of one store a controller reads.
pub(crate) struct StoreMetrics {
    objects: Gauge,
    relists: Counter,
    watch_restarts: Counter,
    events: Counter,
    errors: Counter,
}

impl StoreMetrics {
    pub(crate) fn new(controller: &SharedString, store: &str) -> Self {
        let store = SharedString::from(store.to_owned());
        let (c, s) = (|| controller.clone(), || store.clone());
        Self {
            objects: metrics::gauge!(names::STORE_OBJECTS, "controller" => c(), "store" => s()),
            relists: metrics::counter!(names::RELISTS_TOTAL, "controller" => c(), "store" => s()),
            watch_restarts: metrics::counter!(
                names::WATCH_RESTARTS_TOTAL,
                "controller" => c(),
                "store" => s()
            ),
            events: metrics::counter!(names::EVENTS_TOTAL, "controller" => c(), "store" => s()),
            errors: metrics::counter!(names::ERRORS_TOTAL, "controller" => c(), "store" => s()),
        }
    }

    pub(crate) fn record(&self, objects: usize, reflector: Option<&ReflectorStats>) {
        self.objects.set(objects as f64);
        if let Some(stats) = reflector {
            self.relists.absolute(stats.relists);
            self.watch_restarts.absolute(stats.watch_restarts);
            self.events.absolute(stats.events);
            self.errors.absolute(stats.errors);
        }
    }
}
