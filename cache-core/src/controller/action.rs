//! [`Action`]: what a reconcile asks the controller to do next with its object.

use std::time::Duration;

/// What happens to an object's key after a reconcile: returned by the reconcile function (on
/// success) and by the error policy (on failure).
///
/// - [`requeue(after)`](Self::requeue): reconcile the object again after `after`, even if
///   nothing changes (a periodic check). An earlier change still triggers it at once.
/// - [`await_change()`](Self::await_change): reconcile it again only when it (or something that
///   maps to it) changes.
/// - [`requeue_rate_limited()`](Self::requeue_rate_limited): reconcile it again after the work
///   queue's rate limiter's delay for this key, which grows with each retry (by default 5 ms
///   doubling up to 1000 s per key, and at most 10 retries per second overall after a burst of
///   100). This is what the default error policy returns.
///
/// After a successful reconcile that returns `requeue` or `await_change`, the key's backoff is
/// reset (the work queue forgets it), so its next failure starts again from the shortest delay.
/// `requeue_rate_limited` keeps counting, whether it comes from a success or from the error
/// policy.
///
/// Reconciles are level-triggered: a reconcile is not told why it runs, and two triggers that
/// arrive while the key waits make one reconcile.
///
/// ```
/// use std::time::Duration;
/// use cache_core::controller::Action;
///
/// let periodic = Action::requeue(Duration::from_secs(300));
/// assert_eq!(periodic.requeue_after(), Some(Duration::from_secs(300)));
/// assert_eq!(Action::await_change().requeue_after(), None);
/// assert!(Action::requeue_rate_limited().is_rate_limited());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Action {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Requeue(Duration),
    AwaitChange,
    RateLimited,
}

impl Action {
    /// Reconcile the object again after `after` (at once for a zero duration).
    pub const fn requeue(after: Duration) -> Self {
        Self {
            kind: Kind::Requeue(after),
        }
    }

    /// Reconcile the object again only when it, or an object that maps to it, changes.
    pub const fn await_change() -> Self {
        Self {
            kind: Kind::AwaitChange,
        }
    }

    /// Reconcile the object again after the rate limiter's delay for its key (client-go's
    /// `AddRateLimited`): exponential backoff per key, bounded overall. The key's retry count
    /// keeps growing until a reconcile succeeds with another action.
    pub const fn requeue_rate_limited() -> Self {
        Self {
            kind: Kind::RateLimited,
        }
    }

    /// The delay of a [`requeue`](Self::requeue); `None` for the other actions.
    pub const fn requeue_after(&self) -> Option<Duration> {
        match self.kind {
            Kind::Requeue(after) => Some(after),
            Kind::AwaitChange | Kind::RateLimited => None,
        }
    }

    /// Whether this is [`requeue_rate_limited`](Self::requeue_rate_limited).
    pub const fn is_rate_limited(&self) -> bool {
        matches!(self.kind, Kind::RateLimited)
    }

    pub(crate) const fn kind(&self) -> Kind {
        self.kind
    }
}
