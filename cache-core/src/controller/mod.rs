//! Controllers: the [`Controller`] runtime, built on the rate-limited
//! [`WorkQueue`](crate::workqueue::WorkQueue) of keys.
//!
//! A controller reacts to changes by queueing the keys of the objects that changed, and workers
//! take keys from the queue, read the current state from a cache and act on it. [`Controller`]
//! does all of that around a reconcile function of yours
//! (`async fn(Arc<T>, Context<T, D>) -> Result<Action, E>`): it waits for its caches to sync,
//! runs reconciles concurrently but never two of one object at once, requeues by [`Action`],
//! backs off failures, stops gracefully, and reports [metrics](names) through the `metrics`
//! facade. See [`Controller`] and [`Controller::new`] for examples.
//!
//! The [work queue](crate::workqueue) it takes keys from is a module of its own, usable without
//! a controller.

mod action;
mod context;
mod informed;
mod runtime;
mod telemetry;

pub use action::Action;
pub use context::Context;
pub use runtime::{
    Controller, ControllerHandle, ControllerStats, DEFAULT_CONCURRENCY, DEFAULT_METRICS_INTERVAL,
    StoreStatus,
};
pub use telemetry::names;

#[cfg(test)]
mod runtime_tests;

#[cfg(test)]
mod leader_tests;
