//! How long a failed key waits before it is retried: the [`RateLimiter`] trait and client-go's
//! limiters.
//!
//! [`default_rate_limiter`] is client-go's `DefaultControllerRateLimiter`: a per-key exponential
//! backoff ([`ItemExponentialRateLimiter`], 5 ms doubling up to 1000 s) combined, by taking the
//! larger delay, with an overall token bucket ([`BucketRateLimiter`], 10 per second with a burst
//! of 100) so that many failing keys together cannot flood the source.
//!
//! Also client-go's other limiters: [`ItemFastSlowRateLimiter`] (a few quick retries, then slow
//! ones), [`WithMaxWaitRateLimiter`] (caps any limiter's delay) and [`MaxOfRateLimiter`]; and
//! the token bucket itself, [`TokenBucket`], usable on its own (client-go's
//! `flowcontrol.NewTokenBucketRateLimiter`) to pace anything, not just requeues.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::Hasher;

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

/// The requeue count of each key, for the per-key limiters.
struct Failures<K>(Mutex<HashMap<K, u32, Hasher>>);

impl<K: Clone + Eq + Hash> Failures<K> {
    /// Counts one more requeue of `key`; returns how many came before it.
    fn bump(&self, key: &K) -> u32 {
        let mut failures = lock(&self.0);
        match failures.get_mut(key) {
            Some(n) => {
                let before = *n;
                *n = n.saturating_add(1);
                before
            }
            None => {
                failures.insert(key.clone(), 1);
                0
            }
        }
    }

    fn forget(&self, key: &K) {
        lock(&self.0).remove(key);
    }

    fn get(&self, key: &K) -> u32 {
        lock(&self.0).get(key).copied().unwrap_or(0)
    }
}

impl<K> Failures<K> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::with_hasher(Hasher::default())))
    }

    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

/// Per-key exponential backoff (client-go's `ItemExponentialFailureRateLimiter`): the n-th
/// requeue of a key waits `base * 2^(n-1)`, capped at `max`.
///
/// The default is client-go's: 5 ms, 10 ms, 20 ms, ... up to 1000 s.
///
/// ```
/// use std::time::Duration;
/// use cache_core::workqueue::{ItemExponentialRateLimiter, RateLimiter};
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
    failures: Failures<K>,
}

impl<K> ItemExponentialRateLimiter<K> {
    /// Backoff from `base`, doubling on each requeue, never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Failures::new(),
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
            .field("tracked", &self.failures.len())
            .finish()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync> RateLimiter<K> for ItemExponentialRateLimiter<K> {
    fn when(&self, key: &K) -> Duration {
        self.delay(self.failures.bump(key))
    }

    fn forget(&self, key: &K) {
        self.failures.forget(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.failures.get(key)
    }
}

/// client-go's `BucketRateLimiter`: the [`TokenBucket`] as a work-queue [`RateLimiter`], one
/// bucket shared by all keys. It is the same type: a `TokenBucket` is a `RateLimiter` itself.
pub type BucketRateLimiter = TokenBucket;

/// A token bucket (client-go's `flowcontrol` token-bucket limiter, built like
/// `golang.org/x/time/rate`): it holds at most `burst` tokens and earns `qps` per second.
///
/// On its own it paces anything: [`try_accept`](Self::try_accept) takes a token if one is there,
/// [`accept`](Self::accept) waits for one, [`reserve`](Self::reserve) takes one and says how
/// long to wait for it. As a work-queue [`RateLimiter`] (client-go's `BucketRateLimiter`) each
/// requeue reserves a token: `burst` requeues pass at once, after which they are spaced
/// `1 / qps` apart. It tracks no key, so [`num_requeues`](RateLimiter::num_requeues) is 0 and
/// [`forget`](RateLimiter::forget) does nothing. Share one bucket between a work queue and other
/// callers through an `Arc<TokenBucket>` (a `RateLimiter` too).
///
/// Time is [`tokio::time::Instant`], so paused time in tests drives it. The default is
/// client-go's work-queue bucket: 10 per second with a burst of 100.
///
/// ```
/// use std::time::Duration;
/// use cache_core::workqueue::{RateLimiter, TokenBucket};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let bucket = TokenBucket::new(2.0, 1); // 2 per second, burst 1
/// assert_eq!(bucket.when(&"a"), Duration::ZERO);
/// assert_eq!(bucket.when(&"b"), Duration::from_millis(500));
/// assert_eq!(bucket.when(&"c"), Duration::from_millis(1000));
///
/// let api = TokenBucket::new(5.0, 2);
/// assert!(api.try_accept() && api.try_accept());
/// assert!(!api.try_accept()); // empty: refused, nothing reserved
/// let start = tokio::time::Instant::now();
/// api.accept().await; // waits 200 ms for the next token
/// assert_eq!(start.elapsed(), Duration::from_millis(200));
/// # });
/// ```
pub struct TokenBucket {
    /// Time to earn one token; `None` when the bucket never refills.
    interval: Option<Duration>,
    qps: f64,
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

impl TokenBucket {
    /// A bucket that earns `qps` tokens per second and holds at most `burst`; it starts full. A
    /// `qps` that is not a positive number gives a bucket that never refills: after `burst`
    /// tokens, [`reserve`](Self::reserve) says [`Duration::MAX`], `try_accept` refuses and
    /// `accept` never returns.
    pub fn new(qps: f64, burst: u32) -> Self {
        let nanos = 1e9 / qps;
        let interval = (qps > 0.0 && nanos.is_finite())
            // A float-to-integer `as` cast saturates; the rounding keeps 10/s at exactly 100 ms.
            .then(|| Duration::from_nanos(nanos.round() as u64));
        Self {
            interval,
            qps: if interval.is_some() { qps } else { 0.0 },
            burst,
            state: Mutex::new(BucketState::default()),
        }
    }

    /// Tokens earned per second (0 for a bucket that never refills).
    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The whole tokens in the bucket now.
    pub fn tokens(&self) -> u32 {
        let state = lock(&self.state);
        let Some(interval) = self.interval else {
            return u32::try_from(u64::from(self.burst).saturating_sub(state.taken))
                .unwrap_or(u32::MAX);
        };
        let now = Instant::now();
        let owed = state
            .full_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        let missing = owed.as_nanos().div_ceil(interval.as_nanos());
        u32::try_from(u128::from(self.burst).saturating_sub(missing)).unwrap_or(0)
    }

    /// Takes a token if one is in the bucket now; otherwise takes nothing and returns `false`
    /// (client-go's `TryAccept`).
    pub fn try_accept(&self) -> bool {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let Some(interval) = self.interval else {
            if state.taken < u64::from(self.burst) {
                state.taken += 1;
                return true;
            }
            return false;
        };
        let start = state.full_at.map_or(now, |t| t.max(now));
        match start.checked_add(interval) {
            Some(full_at) if full_at - now <= self.capacity(interval) => {
                state.full_at = Some(full_at);
                true
            }
            _ => false,
        }
    }

    /// Takes a token, now or in the future, and returns how long to wait until it is there
    /// (zero when the bucket had one). Later callers queue behind it.
    pub fn reserve(&self) -> Duration {
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
        (full_at - now).saturating_sub(self.capacity(interval))
    }

    /// Waits until a token is there and takes it (client-go's `Accept`). Cancel-safe: dropping
    /// the future before it completes gives the reserved token back. Bound the wait with
    /// [`tokio::time::timeout`] or a `select!` (client-go's `Wait(ctx)`).
    pub async fn accept(&self) {
        let delay = self.reserve();
        if delay.is_zero() {
            return;
        }
        let mut reservation = Reservation {
            bucket: self,
            kept: false,
        };
        tokio::time::sleep(delay).await;
        reservation.kept = true;
    }

    fn capacity(&self, interval: Duration) -> Duration {
        interval.checked_mul(self.burst).unwrap_or(Duration::MAX)
    }

    /// Gives back one reserved token.
    fn give_back(&self) {
        let mut state = lock(&self.state);
        match self.interval {
            Some(interval) => {
                state.full_at = state.full_at.and_then(|t| t.checked_sub(interval));
            }
            None => state.taken = state.taken.saturating_sub(1),
        }
    }
}

/// A token [`TokenBucket::accept`] waits for; given back unless the wait completed.
struct Reservation<'a> {
    bucket: &'a TokenBucket,
    kept: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.bucket.give_back();
        }
    }
}

impl Default for TokenBucket {
    /// client-go's work-queue bucket: 10 per second, burst 100.
    fn default() -> Self {
        Self::new(10.0, 100)
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("qps", &self.qps)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl<K> RateLimiter<K> for TokenBucket {
    fn when(&self, _key: &K) -> Duration {
        self.reserve()
    }

    fn forget(&self, _key: &K) {}

    fn num_requeues(&self, _key: &K) -> u32 {
        0
    }
}

/// A few quick retries, then slow ones (client-go's `ItemFastSlowRateLimiter`): the first
/// `max_fast_attempts` requeues of a key wait `fast`, every later one `slow`, until the key is
/// forgotten.
///
/// ```
/// use std::time::Duration;
/// use cache_core::workqueue::{ItemFastSlowRateLimiter, RateLimiter};
///
/// let limiter = ItemFastSlowRateLimiter::new(Duration::from_millis(5), Duration::from_secs(10), 2);
/// let delays: Vec<_> = (0..4).map(|_| limiter.when(&"key")).collect();
/// assert_eq!(delays, [Duration::from_millis(5), Duration::from_millis(5), Duration::from_secs(10), Duration::from_secs(10)]);
/// ```
pub struct ItemFastSlowRateLimiter<K> {
    fast: Duration,
    slow: Duration,
    max_fast_attempts: u32,
    failures: Failures<K>,
}

impl<K> ItemFastSlowRateLimiter<K> {
    /// `fast` for the first `max_fast_attempts` requeues of a key, `slow` after.
    pub fn new(fast: Duration, slow: Duration, max_fast_attempts: u32) -> Self {
        Self {
            fast,
            slow,
            max_fast_attempts,
            failures: Failures::new(),
        }
    }
}

impl<K> fmt::Debug for ItemFastSlowRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemFastSlowRateLimiter")
            .field("fast", &self.fast)
            .field("slow", &self.slow)
            .field("max_fast_attempts", &self.max_fast_attempts)
            .field("tracked", &self.failures.len())
            .finish()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync> RateLimiter<K> for ItemFastSlowRateLimiter<K> {
    fn when(&self, key: &K) -> Duration {
        let attempt = self.failures.bump(key).saturating_add(1);
        if attempt <= self.max_fast_attempts {
            self.fast
        } else {
            self.slow
        }
    }

    fn forget(&self, key: &K) {
        self.failures.forget(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.failures.get(key)
    }
}

/// Caps another limiter's delay at `max_delay` (client-go's `WithMaxWaitRateLimiter`); requeue
/// counts and `forget` are the inner limiter's.
///
/// ```
/// use std::time::Duration;
/// use cache_core::workqueue::{ItemExponentialRateLimiter, RateLimiter, WithMaxWaitRateLimiter};
///
/// let inner = ItemExponentialRateLimiter::new(Duration::from_secs(1), Duration::from_secs(1000));
/// let limiter = WithMaxWaitRateLimiter::new(inner, Duration::from_secs(3));
/// let delays: Vec<_> = (0..4).map(|_| limiter.when(&"key").as_secs()).collect();
/// assert_eq!(delays, [1, 2, 3, 3]);
/// assert_eq!(limiter.num_requeues(&"key"), 4);
/// ```
#[derive(Debug)]
pub struct WithMaxWaitRateLimiter<R> {
    limiter: R,
    max_delay: Duration,
}

impl<R> WithMaxWaitRateLimiter<R> {
    /// `limiter`'s delays, never above `max_delay`.
    pub fn new(limiter: R, max_delay: Duration) -> Self {
        Self { limiter, max_delay }
    }

    /// The limiter inside.
    pub fn inner(&self) -> &R {
        &self.limiter
    }
}

impl<K, R: RateLimiter<K>> RateLimiter<K> for WithMaxWaitRateLimiter<R> {
    fn when(&self, key: &K) -> Duration {
        self.limiter.when(key).min(self.max_delay)
    }

    fn forget(&self, key: &K) {
        self.limiter.forget(key);
    }

    fn num_requeues(&self, key: &K) -> u32 {
        self.limiter.num_requeues(key)
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

    #[test]
    fn fast_slow_is_fast_for_the_first_attempts_per_key() {
        // client-go's TestItemFastSlowRateLimiter.
        let l = ItemFastSlowRateLimiter::new(ms(5), Duration::from_secs(10), 3);
        let one: Vec<_> = (0..5).map(|_| l.when(&"one")).collect();
        let slow = Duration::from_secs(10);
        assert_eq!(one, [ms(5), ms(5), ms(5), slow, slow]);
        assert_eq!(l.num_requeues(&"one"), 5);
        assert_eq!(l.when(&"two"), ms(5));
        assert_eq!(l.when(&"two"), ms(5));
        assert_eq!(l.num_requeues(&"two"), 2);
        l.forget(&"one");
        assert_eq!(l.num_requeues(&"one"), 0);
        assert_eq!(l.when(&"one"), ms(5));
        assert_eq!(l.num_requeues(&"two"), 2);
        // No fast attempt at all.
        let never_fast = ItemFastSlowRateLimiter::new(ms(5), slow, 0);
        assert_eq!(never_fast.when(&"k"), slow);
    }

    #[test]
    fn max_of_fast_slow_and_exponential() {
        // client-go's TestMaxOfRateLimiter.
        let l = MaxOfRateLimiter::new()
            .with(ItemFastSlowRateLimiter::new(
                ms(5),
                Duration::from_secs(3),
                3,
            ))
            .with(ItemExponentialRateLimiter::new(
                ms(1),
                Duration::from_secs(1),
            ));
        let one: Vec<_> = (0..5).map(|_| l.when(&"one")).collect();
        let three = Duration::from_secs(3);
        assert_eq!(one, [ms(5), ms(5), ms(5), three, three]);
        assert_eq!(l.num_requeues(&"one"), 5);
        assert_eq!(l.when(&"two"), ms(5));
        assert_eq!(l.when(&"two"), ms(5));
        assert_eq!(l.num_requeues(&"two"), 2);
        l.forget(&"one");
        assert_eq!(l.num_requeues(&"one"), 0);
        assert_eq!(l.when(&"one"), ms(5));
    }

    /// client-go's test helper: `base` for the first `threshold` calls (any key), `max` after.
    struct Step {
        count: Mutex<u32>,
        threshold: u32,
        base: Duration,
        max: Duration,
    }

    impl RateLimiter<u32> for Step {
        fn when(&self, _: &u32) -> Duration {
            let mut count = lock(&self.count);
            *count += 1;
            if *count <= self.threshold {
                self.base
            } else {
                self.max
            }
        }
        fn forget(&self, _: &u32) {}
        fn num_requeues(&self, _: &u32) -> u32 {
            *lock(&self.count)
        }
    }

    #[test]
    fn with_max_wait_caps_the_inner_delay() {
        // client-go's TestWithMaxWaitRateLimiter.
        let step = Step {
            count: Mutex::new(0),
            threshold: 100,
            base: ms(5),
            max: Duration::from_secs(1000),
        };
        let l = WithMaxWaitRateLimiter::new(step, Duration::from_secs(500));
        for i in 0..100 {
            assert_eq!(l.when(&i), ms(5), "request {i}");
        }
        for i in 100..200 {
            assert_eq!(l.when(&i), Duration::from_secs(500), "request {i}");
        }
        // Counts and forget are the inner limiter's.
        assert_eq!(l.num_requeues(&0), 200);
        assert_eq!(lock(&l.inner().count).clone(), 200);

        let exp = WithMaxWaitRateLimiter::new(
            ItemExponentialRateLimiter::new(ms(1), Duration::from_secs(1)),
            ms(3),
        );
        let delays: Vec<_> = (0..4).map(|_| exp.when(&"k")).collect();
        assert_eq!(delays, [ms(1), ms(2), ms(3), ms(3)]);
        exp.forget(&"k");
        assert_eq!((exp.num_requeues(&"k"), exp.when(&"k")), (0, ms(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_try_accept_takes_only_what_is_there() {
        let b = TokenBucket::new(10.0, 3);
        assert_eq!((b.qps(), b.burst(), b.tokens()), (10.0, 3, 3));
        assert!(b.try_accept() && b.try_accept() && b.try_accept());
        assert_eq!(b.tokens(), 0);
        // Empty: refused, and a refusal reserves nothing.
        for _ in 0..5 {
            assert!(!b.try_accept());
        }
        tokio::time::advance(ms(100)).await;
        assert_eq!(b.tokens(), 1);
        assert!(b.try_accept());
        assert!(!b.try_accept());
        // It refills to the burst, no further.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(b.tokens(), 3);
        // A reservation owes a token that try_accept cannot take.
        assert_eq!(b.reserve(), Duration::ZERO);
        assert_eq!(b.tokens(), 2);
        let never = TokenBucket::new(0.0, 1);
        assert_eq!((never.qps(), never.tokens()), (0.0, 1));
        assert!(never.try_accept());
        assert!(!never.try_accept());
        assert_eq!(never.tokens(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_accept_waits_in_turn_and_gives_back_when_cancelled() {
        let b = Arc::new(TokenBucket::new(4.0, 1)); // a token every 250 ms
        let start = Instant::now();
        b.accept().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Three callers at once: served 250 ms apart, in turn.
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    b.accept().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut done = Vec::new();
        for w in waits {
            done.push(w.await.unwrap());
        }
        done.sort();
        assert_eq!(done, [ms(250), ms(500), ms(750)]);

        // A wait given up early gives its token back: the next caller does not pay for it.
        let t0 = Instant::now();
        assert!(tokio::time::timeout(ms(100), b.accept()).await.is_err());
        assert_eq!(b.reserve(), ms(150));
        assert_eq!(t0.elapsed(), ms(100));
    }

    #[tokio::test(start_paused = true)]
    async fn one_bucket_shared_by_a_work_queue_limiter_and_direct_callers() {
        let bucket = Arc::new(TokenBucket::new(10.0, 2));
        let limiter: Box<dyn RateLimiter<&str>> = Box::new(bucket.clone());
        assert_eq!(limiter.when(&"a"), Duration::ZERO);
        assert!(bucket.try_accept());
        // Both took from one bucket: the next requeue waits for a token.
        assert!(!bucket.try_accept());
        assert_eq!(limiter.when(&"b"), ms(100));
        assert_eq!(limiter.num_requeues(&"b"), 0);
    }
}
