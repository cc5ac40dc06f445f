//! The reflector's retry timing: exponential [`Backoff`] with jitter and a reset after healthy
//! running, and [`RetryWithDeadline`] for internal errors.
//!
//! Both read tokio's clock, so tests drive them with paused time.

use std::time::Duration;

use tokio::time::Instant;

/// The parameters of a [`Backoff`]. The default is client-go's reflector backoff.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BackoffOptions {
    /// The first base delay. Default 800 ms.
    pub initial: Duration,
    /// What the base delay is multiplied by after each delay. Default 2.
    pub factor: f64,
    /// Each delay adds a random `[0, jitter)` × base delay. Default 1 (client-go): a base of
    /// `d` gives a delay in `[d, 2d)`.
    pub jitter: f64,
    /// The base delay never grows past this. Default 30 s (with jitter 1, delays then fall in
    /// `[30 s, 60 s)`, as client-go's).
    pub cap: Duration,
    /// When more than this passes between two delays, the backoff starts over from
    /// [`initial`](Self::initial): the source was healthy in between. Default 2 minutes.
    pub reset_after: Duration,
}

impl Default for BackoffOptions {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(800),
            factor: 2.0,
            jitter: 1.0,
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
        }
    }
}

impl BackoffOptions {
    /// A backoff from `initial`, multiplied by `factor` up to `cap`, with the default jitter and
    /// reset period.
    pub fn new(initial: Duration, factor: f64, cap: Duration) -> Self {
        Self {
            initial,
            factor,
            cap,
            ..Self::default()
        }
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`reset_after`](Self::reset_after).
    #[must_use]
    pub fn reset_after(mut self, period: Duration) -> Self {
        self.reset_after = period;
        self
    }
}

/// Exponential backoff with jitter that starts over after a healthy period (client-go's
/// `wait.Backoff` wrapped in `DelayWithReset`).
///
/// ```
/// use std::time::Duration;
/// use cache_core::reflector::{Backoff, BackoffOptions};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let config = BackoffOptions::new(Duration::from_millis(10), 2.0, Duration::from_millis(100)).jitter(0.0);
/// let mut backoff = Backoff::new(config);
/// let delays: Vec<u64> = (0..6).map(|_| backoff.next_delay().as_millis() as u64).collect();
/// assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
///
/// tokio::time::advance(Duration::from_secs(121)).await; // two healthy minutes
/// assert_eq!(backoff.next_delay(), Duration::from_millis(10));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffOptions,
    base: Duration,
    last: Option<Instant>,
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new(config: BackoffOptions) -> Self {
        Self {
            base: config.initial,
            config,
            last: None,
        }
    }

    /// The parameters.
    pub fn options(&self) -> &BackoffOptions {
        &self.config
    }

    /// The next delay; advances the backoff.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) > self.config.reset_after)
        {
            self.base = self.config.initial;
        }
        self.last = Some(now);
        let base = self.base.min(self.config.cap);
        let grown = secs(base.as_secs_f64() * self.config.factor).unwrap_or(self.config.cap);
        self.base = grown.min(self.config.cap);
        if self.config.jitter > 0.0 {
            let extra = base.as_secs_f64() * self.config.jitter * rand::random::<f64>();
            base + secs(extra).unwrap_or(Duration::ZERO)
        } else {
            base
        }
    }
}

/// A duration from seconds, `None` when not finite, negative or too large.
fn secs(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

/// Retries an error kind for a while after it first occurs (client-go's `RetryWithDeadline`).
///
/// The reflector re-watches at once after an internal error while
/// [`should_retry`](Self::should_retry) holds, and relists after that.
///
/// ```
/// use std::time::Duration;
/// use cache_core::reflector::RetryWithDeadline;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let mut retry = RetryWithDeadline::new(Duration::from_secs(1), Duration::from_secs(60));
/// let mut answers = Vec::new();
/// for _ in 0..3 {
///     tokio::time::advance(Duration::from_secs(1)).await;
///     retry.after(true);
///     answers.push(retry.should_retry());
/// }
/// assert_eq!(answers, [true, true, false]);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct RetryWithDeadline {
    max: Duration,
    min_reset: Duration,
    first_error: Option<Instant>,
    last_error: Option<Instant>,
}

impl RetryWithDeadline {
    /// Retries for up to `max` after the first error of a window; a window starts over when
    /// more than `min_reset` passes between two errors. A `max` of zero never retries.
    pub fn new(max: Duration, min_reset: Duration) -> Self {
        Self {
            max,
            min_reset,
            first_error: None,
            last_error: None,
        }
    }

    /// Records an error; only `retryable` ones count.
    pub fn after(&mut self, retryable: bool) {
        if !retryable {
            return;
        }
        let now = Instant::now();
        let new_window = match self.last_error {
            Some(last) => now.duration_since(last) > self.min_reset,
            None => true,
        };
        if new_window || self.first_error.is_none() {
            self.first_error = Some(now);
        }
        self.last_error = Some(now);
    }

    /// Whether the window still allows a retry. When it does not, the window starts over.
    pub fn should_retry(&mut self) -> bool {
        if self.max.is_zero() {
            return false;
        }
        match self.first_error {
            Some(first) if Instant::now().duration_since(first) <= self.max => true,
            _ => {
                self.first_error = None;
                self.last_error = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(secs: u64) -> impl Future<Output = ()> {
        tokio::time::advance(Duration::from_secs(secs))
    }

    #[tokio::test(start_paused = true)]
    async fn default_backoff_is_client_gos() {
        let mut b = Backoff::new(BackoffOptions::default());
        let bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0];
        for base in bases {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= base && d < 2.0 * base,
                "{d} outside [{base}, {})",
                2.0 * base
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_resets_after_healthy_period_only() {
        let cfg =
            BackoffOptions::new(Duration::from_secs(1), 2.0, Duration::from_secs(30)).jitter(0.0);
        let mut b = Backoff::new(cfg);
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        tick(100).await; // under two minutes: no reset
        assert_eq!(b.next_delay(), Duration::from_secs(2));
        tick(121).await;
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_survives_absurd_parameters() {
        let cfg = BackoffOptions::new(
            Duration::from_secs(1),
            f64::INFINITY,
            Duration::from_secs(5),
        );
        let mut b = Backoff::new(cfg.clone().jitter(f64::NAN));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        let mut b = Backoff::new(BackoffOptions {
            factor: -3.0,
            ..cfg
        });
        b.next_delay();
        b.next_delay();
    }

    #[tokio::test(start_paused = true)]
    async fn retry_with_deadline() {
        // Zero never retries.
        let mut r = RetryWithDeadline::new(Duration::ZERO, Duration::from_secs(60));
        r.after(true);
        assert!(!r.should_retry());

        // 1 s window, errors one second apart: true, true, false.
        let mut r = RetryWithDeadline::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut got = Vec::new();
        for _ in 0..3 {
            tick(1).await;
            r.after(true);
            got.push(r.should_retry());
        }
        assert_eq!(got, [true, true, false]);

        // A non-retryable error alone does not open a window.
        let mut r = RetryWithDeadline::new(Duration::from_secs(1), Duration::from_secs(60));
        r.after(false);
        assert!(!r.should_retry());

        // A non-retryable error in between neither resets nor extends the window.
        let mut r = RetryWithDeadline::new(Duration::from_secs(1), Duration::from_secs(60));
        r.after(true);
        assert!(r.should_retry());
        r.after(false);
        assert!(r.should_retry());
        tick(1).await;
        r.after(true);
        assert!(r.should_retry());
        tick(1).await;
        r.after(true);
        assert!(!r.should_retry());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_window_restarts_after_quiet_period() {
        let mut r = RetryWithDeadline::new(Duration::from_secs(2), Duration::from_secs(60));
        r.after(true);
        tick(2).await;
        r.after(true);
        assert!(r.should_retry());
        tick(61).await; // quiet for over a minute: a new window
        r.after(true);
        assert!(r.should_retry());
    }
}
