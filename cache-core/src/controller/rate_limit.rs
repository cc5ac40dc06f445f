//! How long a failed key waits before it is retried: the [`RateLimiter`] trait and client-go's
//! limiters.
//!
//! [`default_rate_limiter`] is client-go's `DefaultControllerRateLimiter`: a per-key exponential
//! backoff ([`ItemExponentialRateLimiter`], 5 ms doubling up to 1000 s) combined, by taking the
//! larger delay, with an overall token bucket ([`BucketRateLimiter`], 10 per second with a burst
//! of 100) so that many failing keys together cannot flood the source.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

type Hasher = foldhash::fast::RandomState;

/// Decides how long a key waits before it is queued again after a failure (client-go's
/// `TypedRateLimiter`).
///
/// Used by [`WorkQueue::add_rate_limited`](super::WorkQueue::add_rate_limited). Implementations
/// must be cheap: they are called on every requeue. Time is read from [`tokio::time::Instant`],
/// so that paused time in tests drives the limiters too.
pub trait RateLimiter<K>: Send + Sync {
    /// The delay before `key` is queued again. Each call counts as one more requeue of `key`.
    fn when(&self, key: &K) -> Duration;

    /// Stops tracking `key` (it succeeded): its next delay starts from scratch.
    fn forget(&self, key: &K);

    /// How many times `key` has been requeued since it was last forgotten.
    fn num_requeues(&self, key: &K) -> u32;
}

impl<K, R: RateLimiter<K> + ?Sized> RateLimiter<K> for Box<R> {
    fn when(&self, key: &K) -> Duration {
        (**self).when(key)
    }
    fn forget(&self, key: &K) {
        (**self).forget(key);
    }
    fn num_requeues(&self, key: &K) -> u32 {
        (**self).num_requeues(key)
    }
}

impl<K, R: RateLimiter<K> + ?Sized> RateLimiter<K> for Arc<R> {
    fn when(&self, key: &K) -> Duration {
        (**self).when(key)
    }
    fn forget(&self, key: &K) {
        (**self).forget(key);
    }
    fn num_requeues(&self, key: &K) -> u32 {
        (**self).num_requeues(key)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is a plain counter map or a timestamp, valid after any panic.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per-key exponential backoff (client-go's `ItemExponentialFailureRateLimiter`): the n-th
/// requeue of a key waits `base * 2^(n-1)`, capped at `max`.
///
/// The default is client-go's: 5 ms, 10 ms, 20 ms, ... up to 1000 s.
///
/// ```
/// use std::time::Duration;
/// use cache_core::controller::{ItemExponentialRateLimiter, RateLimiter};
///
/// let limiter = ItemExponentialRateLimiter::new(Duration::from_millis(1), Duration::from_millis(5));
/// let delays: Vec<_> = (0..5).map(|_| limiter.when(&"key").as_millis()).collect();
/// assert_eq!(delays, [1, 2, 4, 5, 5]);
/// assert_eq!(limiter.num_requeues(&"key"), 5);
/// limiter.forget(&"key");
/// assert_eq!(limiter.when(&"key"), Duration::from_millis(1));
/// ```
pub struct ItemExponentialRateLimiter<K> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32, Hasher>>,
}

impl<K> ItemExponentialRateLimiter<K> {
    /// Backoff from `base`, doubling on each requeue, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::with_hasher(Hasher::default())),
        }
    }

    /// The delay of the requeue that follows `failures` earlier ones.
    fn delay(&self, failures: u32) -> Duration {
        2u32.checked_pow(failures)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max))
    }
}

impl<K> Default for ItemExponentialRateLimiter<K> {
    /// client-go's: 5 ms doubling up to 1000 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(5), Duration::from_secs(1000))
    }
}

impl<K> fmt::Debug for ItemExponentialRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemExponentialRateLimiter")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("tracked", &lock(&self.failures).len())
            .finish()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync> RateLimiter<K> for ItemExponentialRateLimiter<K> {
    fn when(&self, key: &K) -> Duration {
        let mut failures = lock(&self.failures);
        let count = match failures.get_mut(key) {
            Some(n) => {
                let before = *n;
                *n = n.saturating_add(1);
                before
            }
            None => {
                failures.insert(key.clone(), 1);
                0
            }
        };
        self.delay(count)
    }

    fn forget(&self, key: &K) {
        lock(&self.failures).remove(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        lock(&self.failures).get(key).copied().unwrap_or(0)
    }
}

/// An overall token bucket shared by all keys (client-go's `BucketRateLimiter`, built on
/// `golang.org/x/time/rate`): `burst` requeues pass at once, after which they are spaced
/// `1 / qps` apart. It tracks no key, so [`num_requeues`](RateLimiter::num_requeues) is 0 and
/// [`forget`](RateLimiter::forget) does nothing.
///
/// The default is client-go's: 10 per second with a burst of 100.
///
/// ```
/// use std::time::Duration;
/// use cache_core::controller::{BucketRateLimiter, RateLimiter};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bucket = BucketRateLimiter::new(2.0, 1); // 2 per second, burst 1
/// assert_eq!(bucket.when(&"a"), Duration::ZERO);
/// assert_eq!(bucket.when(&"b"), Duration::from_millis(500));
/// assert_eq!(bucket.when(&"c"), Duration::from_millis(1000));
/// # });
/// ```
pub struct BucketRateLimiter {
    /// Time to earn one token; `None` when the bucket never refills.
    interval: Option<Duration>,
    burst: u32,
    state: Mutex<BucketState>,
}

#[derive(Default)]
struct BucketState {
    /// When the bucket will be full again, if it is not now (the "theoretical arrival time").
    full_at: Option<Instant>,
    /// Tokens taken from a bucket that never refills.
    taken: u64,
}

impl BucketRateLimiter {
    /// A bucket that earns `qps` tokens per second and holds at most `burst`. A `qps` that is
    /// not a positive number gives a bucket that never refills: after `burst` requeues, every
    /// requeue waits [`Duration::MAX`].
    pub fn new(qps: f64, burst: u32) -> Self {
        let nanos = 1e9 / qps;
        let interval = (qps > 0.0 && nanos.is_finite())
            // A float-to-integer `as` cast saturates; the rounding keeps 10/s at exactly 100 ms.
            .then(|| Duration::from_nanos(nanos.round() as u64));
        Self {
            interval,
            burst,
            state: Mutex::new(BucketState::default()),
        }
    }
}

impl Default for BucketRateLimiter {
    /// client-go's: 10 per second, burst 100.
    fn default() -> Self {
        Self::new(10.0, 100)
    }
}

impl fmt::Debug for BucketRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketRateLimiter")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl<K> RateLimiter<K> for BucketRateLimiter {
    fn when(&self, _key: &K) -> Duration {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let Some(interval) = self.interval else {
            state.taken = state.taken.saturating_add(1);
            return if state.taken <= u64::from(self.burst) {
                Duration::ZERO
            } else {
                Duration::MAX
            };
        };
        // Taking a token pushes the moment the bucket is full again one interval later; the
        // bucket holds `burst` intervals, and whatever lies beyond them must be waited out.
        let start = state.full_at.map_or(now, |t| t.max(now));
        let Some(full_at) = start.checked_add(interval) else {
            return Duration::MAX;
        };
        state.full_at = Some(full_at);
        let capacity = interval.checked_mul(self.burst).unwrap_or(Duration::MAX);
        (full_at - now).saturating_sub(capacity)
    }

    fn forget(&self, _key: &K) {}

    fn num_requeues(&self, _key: &K) -> u32 {
        0
    }
}

/// Combines limiters: the delay is the largest of theirs, the requeue count the largest of
/// theirs, and [`forget`](RateLimiter::forget) reaches them all (client-go's
/// `MaxOfRateLimiter`).
pub struct MaxOfRateLimiter<K> {
    limiters: Vec<Box<dyn RateLimiter<K>>>,
}

impl<K> MaxOfRateLimiter<K> {
    /// No limiter yet: every delay is zero until one is added with [`with`](Self::with).
    pub fn new() -> Self {
        Self {
            limiters: Vec::new(),
        }
    }

    /// Adds a limiter.
    #[must_use]
    pub fn with(mut self, limiter: impl RateLimiter<K> + 'static) -> Self {
        self.limiters.push(Box::new(limiter));
        self
    }
}

impl<K> Default for MaxOfRateLimiter<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for MaxOfRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxOfRateLimiter")
            .field("limiters", &self.limiters.len())
            .finish()
    }
}

impl<K> RateLimiter<K> for MaxOfRateLimiter<K> {
    fn when(&self, key: &K) -> Duration {
        // Every limiter is asked, so that each one counts the requeue.
        self.limiters
            .iter()
            .map(|l| l.when(key))
            .fold(Duration::ZERO, Duration::max)
    }

    fn forget(&self, key: &K) {
        for l in &self.limiters {
            l.forget(key);
        }
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.limiters
            .iter()
            .map(|l| l.num_requeues(key))
            .max()
            .unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: the larger of a per-key exponential backoff
/// (5 ms doubling up to 1000 s) and an overall token bucket (10 per second, burst 100).
pub fn default_rate_limiter<K>() -> MaxOfRateLimiter<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    MaxOfRateLimiter::new()
        .with(ItemExponentialRateLimiter::default())
        .with(BucketRateLimiter::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_doubles_per_key_and_forget_resets() {
        let l = ItemExponentialRateLimiter::new(ms(1), Duration::from_secs(1));
        let one: Vec<_> = (0..5).map(|_| l.when(&"one")).collect();
        assert_eq!(one, [ms(1), ms(2), ms(4), ms(8), ms(16)]);
        assert_eq!(l.num_requeues(&"one"), 5);
        // Keys are independent.
        assert_eq!(l.when(&"two"), ms(1));
        assert_eq!(l.when(&"two"), ms(2));
        assert_eq!(l.num_requeues(&"two"), 2);
        l.forget(&"one");
        assert_eq!(l.num_requeues(&"one"), 0);
        assert_eq!(l.when(&"one"), ms(1));
        assert_eq!(l.num_requeues(&"two"), 2);
    }

    #[test]
    fn exponential_default_is_client_gos_and_caps_without_overflow() {
        let l = ItemExponentialRateLimiter::default();
        let first: Vec<_> = (0..4).map(|_| l.when(&1)).collect();
        assert_eq!(first, [ms(5), ms(10), ms(20), ms(40)]);
        // 5 ms * 2^17 = 655.36 s; 2^18 passes 1000 s and is capped from then on, including
        // past the point where 2^n itself overflows.
        for _ in 4..18 {
            l.when(&1);
        }
        assert_eq!(l.when(&1), Duration::from_secs(1000));
        for _ in 0..100 {
            assert_eq!(l.when(&1), Duration::from_secs(1000));
        }
        assert_eq!(l.num_requeues(&1), 119);

        let huge = ItemExponentialRateLimiter::new(Duration::from_secs(60), Duration::MAX);
        for _ in 0..200 {
            huge.when(&"k"); // never panics on overflow
        }
        assert_eq!(huge.when(&"k"), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_lets_the_burst_through_then_spaces_requeues() {
        let b = BucketRateLimiter::default();
        for i in 0..100 {
            assert_eq!(
                RateLimiter::<u32>::when(&b, &i),
                Duration::ZERO,
                "request {i}"
            );
        }
        // Then one every 100 ms, counted from now: the reservations stack up.
        assert_eq!(RateLimiter::<u32>::when(&b, &100), ms(100));
        assert_eq!(RateLimiter::<u32>::when(&b, &101), ms(200));
        assert_eq!(RateLimiter::<u32>::when(&b, &102), ms(300));
        // Waiting earns tokens back: 1 s later, 10 tokens were earned and 3 were owed.
        tokio::time::advance(Duration::from_secs(1)).await;
        for i in 0..7 {
            assert_eq!(
                RateLimiter::<u32>::when(&b, &i),
                Duration::ZERO,
                "request {i}"
            );
        }
        assert_eq!(RateLimiter::<u32>::when(&b, &7), ms(100));
        // It tracks no key.
        assert_eq!(RateLimiter::<u32>::num_requeues(&b, &7), 0);
        // A long rest fills the bucket back up to the burst, no further.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for i in 0..100 {
            assert_eq!(RateLimiter::<u32>::when(&b, &i), Duration::ZERO);
        }
        assert_eq!(RateLimiter::<u32>::when(&b, &0), ms(100));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_that_never_refills() {
        let b = BucketRateLimiter::new(0.0, 2);
        assert_eq!(RateLimiter::<u8>::when(&b, &0), Duration::ZERO);
        assert_eq!(RateLimiter::<u8>::when(&b, &0), Duration::ZERO);
        assert_eq!(RateLimiter::<u8>::when(&b, &0), Duration::MAX);
        let nan = BucketRateLimiter::new(f64::NAN, 0);
        assert_eq!(RateLimiter::<u8>::when(&nan, &0), Duration::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn max_of_takes_the_larger_delay_and_forgets_everywhere() {
        let l = default_rate_limiter::<&str>();
        // The per-key backoff wins while the bucket has tokens.
        assert_eq!(l.when(&"a"), ms(5));
        assert_eq!(l.when(&"a"), ms(10));
        assert_eq!(l.num_requeues(&"a"), 2);
        // Drain the bucket with other keys (98 tokens left, 98 more requests)...
        for _ in 0..98 {
            l.when(&"b");
            l.forget(&"b");
        }
        // ...now the bucket's 100 ms beats "c"'s 5 ms, and its 200 ms beats "a"'s 20 ms.
        assert_eq!(l.when(&"c"), ms(100));
        assert_eq!(l.when(&"a"), ms(200));
        assert_eq!(l.num_requeues(&"a"), 3);
        l.forget(&"a");
        assert_eq!(l.num_requeues(&"a"), 0);
        // The per-key backoff eventually dominates the bucket.
        tokio::time::advance(Duration::from_secs(100)).await;
        let delays: Vec<_> = (0..8).map(|_| l.when(&"d")).collect();
        assert_eq!(
            delays,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640)
            ]
        );
        assert_eq!(MaxOfRateLimiter::<u8>::new().when(&0), Duration::ZERO);
    }
}
