//! [`LeaderElectionOptions`]: the timing and identity of a candidate, checked when the elector is
//! built.

use std::time::Duration;

use thiserror::Error;

/// client-go's `JitterFactor`: the renew deadline must exceed the retry period by this factor,
/// so that a leader gets at least one retry before it gives up.
pub const JITTER_FACTOR: f64 = 1.2;

/// client-go's defaults for the lease duration (15 s)...
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// ... the renew deadline (10 s) ...
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// ... and the retry period (2 s).
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Why a [`LeaderElectionOptions`] was refused: client-go's validation rules
/// (`NewLeaderElector`), as a typed error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The identity is empty: a leader must be named in the lock.
    #[error("the candidate's identity must not be empty")]
    EmptyIdentity,
    /// A duration is zero.
    #[error("{which} must be greater than zero")]
    Zero {
        /// `lease duration`, `renew deadline` or `retry period`.
        which: &'static str,
    },
    /// The lease duration is not longer than the renew deadline: a leader could still think it
    /// leads after another candidate has taken over.
    #[error(
        "the lease duration ({lease_duration:?}) must be greater than the renew deadline ({renew_deadline:?})"
    )]
    LeaseNotLongerThanRenewDeadline {
        /// The configured lease duration.
        lease_duration: Duration,
        /// The configured renew deadline.
        renew_deadline: Duration,
    },
    /// The renew deadline is not longer than the retry period times [`JITTER_FACTOR`]: a
    /// leader would give up after one failed renewal.
    #[error(
        "the renew deadline ({renew_deadline:?}) must be greater than the retry period ({retry_period:?}) times {JITTER_FACTOR}"
    )]
    RenewDeadlineTooShort {
        /// The configured renew deadline.
        renew_deadline: Duration,
        /// The configured retry period.
        retry_period: Duration,
    },
}

/// How a candidate takes part in an election: client-go's `LeaderElectionConfig`.
///
/// - `lease_duration`: how long followers wait, by their own clock, after they last saw the
///   lock change, before they take it over;
/// - `renew_deadline`: how long the leader keeps retrying a failed renewal before it steps
///   down. It is counted from the start of the last renewal that succeeded, so the leader
///   always stops leading before any follower can see the lease expire;
/// - `retry_period`: how often candidates try to acquire, and the leader renews.
///
/// ```
/// use std::time::Duration;
/// use cache_core::leader::{OptionsError, LeaderElectionOptions};
///
/// let config = LeaderElectionOptions::new("replica-a")
///     .lease_duration(Duration::from_secs(15))
///     .renew_deadline(Duration::from_secs(10))
///     .retry_period(Duration::from_secs(2));
/// assert!(config.validate().is_ok());
///
/// let bad = LeaderElectionOptions::new("replica-a").renew_deadline(Duration::from_secs(20));
/// assert!(matches!(bad.validate(), Err(OptionsError::LeaseNotLongerThanRenewDeadline { .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionOptions {
    pub(crate) identity: String,
    pub(crate) name: String,
    pub(crate) lease_duration: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) retry_period: Duration,
    pub(crate) release_on_cancel: bool,
}

impl LeaderElectionOptions {
    /// A candidate named `identity` (unique among the candidates: a pod name, a host name and
    /// a random suffix), with client-go's default timings (15 s, 10 s, 2 s), releasing the lock
    /// when cancelled.
    pub fn new(identity: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            name: String::from("leader"),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
            release_on_cancel: true,
        }
    }

    /// The election's name: the `name` label of its metrics and the name in its logs (client-go's
    /// `Name`). Default `leader`.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long followers wait before taking over a lease that was not renewed.
    #[must_use]
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// How long the leader retries a failed renewal before it steps down.
    #[must_use]
    pub fn renew_deadline(mut self, deadline: Duration) -> Self {
        self.renew_deadline = deadline;
        self
    }

    /// How often candidates try to acquire and the leader renews.
    #[must_use]
    pub fn retry_period(mut self, period: Duration) -> Self {
        self.retry_period = period;
        self
    }

    /// Whether the leader releases the lock when it is cancelled, so that another candidate
    /// takes over at once instead of after the lease duration (default true; client-go's
    /// `ReleaseOnCancel`).
    #[must_use]
    pub fn release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// The candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The election's name.
    pub fn election_name(&self) -> &str {
        &self.name
    }

    /// The lease duration.
    pub fn get_lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// The renew deadline.
    pub fn get_renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// The retry period.
    pub fn get_retry_period(&self) -> Duration {
        self.retry_period
    }

    /// Checks client-go's rules: a non-empty identity, no zero duration, a lease duration longer
    /// than the renew deadline, and a renew deadline longer than the retry period times
    /// [`JITTER_FACTOR`].
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`OptionsError`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.identity.is_empty() {
            return Err(OptionsError::EmptyIdentity);
        }
        for (which, duration) in [
            ("lease duration", self.lease_duration),
            ("renew deadline", self.renew_deadline),
            ("retry period", self.retry_period),
        ] {
            if duration.is_zero() {
                return Err(OptionsError::Zero { which });
            }
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(OptionsError::LeaseNotLongerThanRenewDeadline {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
            });
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(OptionsError::RenewDeadlineTooShort {
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn client_go_rules_are_typed_errors() {
        assert_eq!(LeaderElectionOptions::new("a").validate(), Ok(()));
        assert_eq!(
            LeaderElectionOptions::new("").validate(),
            Err(OptionsError::EmptyIdentity)
        );
        assert_eq!(
            LeaderElectionOptions::new("a")
                .retry_period(Duration::ZERO)
                .validate(),
            Err(OptionsError::Zero {
                which: "retry period"
            })
        );
        assert_eq!(
            LeaderElectionOptions::new("a")
                .lease_duration(secs(10))
                .renew_deadline(secs(10))
                .validate(),
            Err(OptionsError::LeaseNotLongerThanRenewDeadline {
                lease_duration: secs(10),
                renew_deadline: secs(10)
            })
        );
        // 2.4 s is exactly 1.2 × 2 s: not greater, refused; 2.5 s passes.
        assert!(matches!(
            LeaderElectionOptions::new("a")
                .renew_deadline(Duration::from_millis(2400))
                .validate(),
            Err(OptionsError::RenewDeadlineTooShort { .. })
        ));
        assert_eq!(
            LeaderElectionOptions::new("a")
                .renew_deadline(Duration::from_millis(2500))
                .validate(),
            Ok(())
        );
    }
}
