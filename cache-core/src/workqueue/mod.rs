//! [`WorkQueue`]: the rate-limited, deduplicating queue of keys a controller works from
//! (client-go's `util/workqueue`), its [rate limiters](RateLimiter) and its metrics.
//!
//! Not to be confused with the queues of the [`fifo`](crate::fifo) module, which sit between a
//! reflector and a cache and carry objects: this one carries keys to work on.
//!
//! The queue carries client-go's rules (`util/workqueue`): a key waits at most once however often
//! it changes, one key is never worked on by two workers at once, a key that changes while it is
//! worked on is handed out again afterwards, and failures are retried with backoff
//! ([`RateLimiter`], [`default_rate_limiter`]). [`MetricsSink`] receives the queue's metrics
//! ([`FacadeMetrics`] records them through the `metrics` facade). It can be used on its own:
//!
//! ```
//! use cache_core::workqueue::WorkQueue;
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

mod facade;
mod queue;
mod rate_limit;

pub use facade::FacadeMetrics;
pub use queue::{MetricsSink, NoMetrics, WorkQueue, WorkQueueBuilder};
pub use rate_limit::{
    BucketRateLimiter, ItemExponentialRateLimiter, ItemFastSlowRateLimiter, MaxOfRateLimiter,
    RateLimiter, TokenBucket, WithMaxWaitRateLimiter, default_rate_limiter,
};

#[cfg(test)]
mod tests;
