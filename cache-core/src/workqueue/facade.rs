//! [`FacadeMetrics`]: a work queue's metrics through the [`metrics`] facade.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, SharedString};

use super::MetricsSink;
use crate::controller::names;

/// A [`MetricsSink`] that records a [`WorkQueue`](super::WorkQueue)'s metrics through the
/// [`metrics`] facade, under client-go's names (`workqueue_depth`, `workqueue_adds_total`,
/// `workqueue_retries_total`, `workqueue_queue_duration_seconds`,
/// `workqueue_work_duration_seconds`), labelled `controller`.
///
/// A [`Controller`](crate::Controller) installs one on its queue; this is for a `WorkQueue` used
/// on its own. The metric handles are registered with the recorder installed when `new` is
/// called.
///
/// ```
/// use cache_core::workqueue::{FacadeMetrics, WorkQueue};
///
/// let queue: WorkQueue<String> = WorkQueue::builder().metrics(FacadeMetrics::new("pods")).build();
/// queue.add("default/web".to_owned());
/// ```
#[derive(Debug, Clone)]
pub struct FacadeMetrics {
    depth: Gauge,
    adds: Counter,
    retries: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
}

impl FacadeMetrics {
    /// Registers the queue's metrics, labelled `controller = name`.
    pub fn new(name: impl Into<SharedString>) -> Self {
        let name = name.into();
        Self {
            depth: metrics::gauge!(names::WORKQUEUE_DEPTH, "controller" => name.clone()),
            adds: metrics::counter!(names::WORKQUEUE_ADDS_TOTAL, "controller" => name.clone()),
            retries: metrics::counter!(names::WORKQUEUE_RETRIES_TOTAL, "controller" => name.clone()),
            queue_duration: metrics::histogram!(
                names::WORKQUEUE_QUEUE_DURATION_SECONDS,
                "controller" => name.clone()
            ),
            work_duration: metrics::histogram!(
                names::WORKQUEUE_WORK_DURATION_SECONDS,
                "controller" => name
            ),
        }
    }
}

impl MetricsSink for FacadeMetrics {
    fn depth(&self, depth: usize) {
        self.depth.set(depth as f64);
    }
    fn add(&self) {
        self.adds.increment(1);
    }
    fn queue_latency(&self, latency: Duration) {
        self.queue_duration.record(latency.as_secs_f64());
    }
    fn work_duration(&self, duration: Duration) {
        self.work_duration.record(duration.as_secs_f64());
    }
    fn retry(&self) {
        self.retries.increment(1);
    }
}
