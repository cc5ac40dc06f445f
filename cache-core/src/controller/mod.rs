//! Controllers: the [`Controller`] runtime, and the rate-limited [`WorkQueue`] of keys it is
//! built on.
//!
//! A controller reacts to changes by queueing the keys of the objects that changed, and workers
//! take keys from the queue, read the current state from a cache and act on it. [`Controller`]
//! does all of that around a reconcile function of yours
//! (`async fn(Arc<T>, Context<T, D>) -> Result<Action, E>`): it waits for its caches to sync,
//! runs reconciles concurrently but never two of one object at once, requeues by [`Action`],
//! backs off failures, stops gracefully, and reports [metrics](names) through the `metrics`
//! facade. See [`Controller`] and [`Controller::new`] for examples.
//!
//! The queue carries client-go's rules (`util/workqueue`): a key waits at most once however often
//! it changes, one key is never worked on by two workers at once, a key that changes while it is
//! worked on is handed out again afterwards, and failures are retried with backoff
//! ([`RateLimiter`], [`default_rate_limiter`]). [`QueueMetrics`] receives the queue's metrics
//! ([`WorkQueueMetrics`] records them through the `metrics` facade). It can be used on its own:
//!
//! ```
//! use cache_core::controller::WorkQueue;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let queue = WorkQueue::<String>::new();
//! let worker = {
//!     let queue = queue.clone();
//!     tokio::spawn(async move {
//!         let mut seen = Vec::new();
//!         while let Some(key) = queue.get().await {
//!             seen.push(key.clone());
//!             queue.forget(&key); // succeeded: reset its backoff
//!             queue.done(&key);
//!         }
//!         seen
//!     })
//! };
//! for key in ["default/a", "default/b", "default/a"] {
//!     queue.add(key.to_owned());
//! }
//! queue.shut_down_with_drain().await;
//! let seen = worker.await.unwrap();
//! assert_eq!(seen, ["default/a", "default/b"]);
//! # }
//! ```

mod action;
mod context;
mod informed;
mod rate_limit;
mod runtime;
mod telemetry;
mod workqueue;

pub use action::Action;
pub use context::Context;
pub use runtime::{
    Controller, ControllerHandle, ControllerStats, DEFAULT_CONCURRENCY, DEFAULT_METRICS_INTERVAL,
    StoreStatus,
};
pub use telemetry::{WorkQueueMetrics, names};

pub use rate_limit::{
    BucketRateLimiter, ItemExponentialRateLimiter, ItemFastSlowRateLimiter, MaxOfRateLimiter,
    RateLimiter, TokenBucket, WithMaxWaitRateLimiter, default_rate_limiter,
};
pub use workqueue::{NoMetrics, QueueMetrics, WorkQueue, WorkQueueBuilder};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod runtime_tests;

#[cfg(test)]
mod leader_tests;
