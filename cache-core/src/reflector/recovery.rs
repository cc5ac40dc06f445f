//! The recovery rules: what the reflector does after a failure, by where it happened and what
//! kind of failure it was. One pure function, [`recovery`], shared by the watch and the
//! streaming list; the module documentation's table describes the same rules.

use crate::source::SourceErrorKind;

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening a watch, or reading the initial events of a streaming list.
    StreamingList,
    /// Opening a watch after the store was filled.
    WatchStart,
    /// Reading the events of an open watch.
    Watching,
}

/// What the reflector does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Report the error, skip the object, and go on with the same stream.
    Skip,
    /// Open the watch (or the streaming list) again after one backoff delay, without a relist.
    RetryAfterBackoff,
    /// Open the watch again at once while the internal-error window allows; relist after it.
    RetryWhileAllowed,
    /// Forget the last version and open the streaming list again at once, from the latest.
    RetryFromLatest,
    /// Fall back to a paginated list in the same cycle.
    FallBackToList,
    /// End the cycle: back off, then relist at the last version.
    Relist,
    /// Forget the last version, end the cycle: back off, then relist at the latest (`""`).
    RelistFromLatest,
}

/// What to do after a failure of kind `kind` (`None`: a failure that is not a source error,
/// such as a streaming list that closed before its end, a very short watch or a failed resync)
/// during `phase`. A watch that ends cleanly is not a failure: it is opened again from the last
/// version, and never reaches this function.
pub(crate) fn recovery(phase: Phase, kind: Option<SourceErrorKind>) -> Recovery {
    use Recovery::*;
    use SourceErrorKind as K;
    match (phase, kind) {
        (Phase::StreamingList | Phase::Watching, Some(K::Decode)) => Skip,
        (_, Some(K::TooManyRequests | K::ConnectionRefused)) => RetryAfterBackoff,
        (Phase::StreamingList, None) => RetryAfterBackoff,
        (Phase::StreamingList, Some(K::Expired | K::TooLargeResourceVersion)) => RetryFromLatest,
        (Phase::StreamingList, Some(_)) => FallBackToList,
        (Phase::WatchStart | Phase::Watching, Some(K::TooLargeResourceVersion)) => RelistFromLatest,
        (Phase::Watching, Some(K::Internal)) => RetryWhileAllowed,
        (Phase::WatchStart | Phase::Watching, _) => Relist,
    }
}

#[cfg(test)]
mod tests {
    use super::Phase::*;
    use super::Recovery::*;
    use super::*;
    use SourceErrorKind as K;

    /// The rules as a table: every phase against every kind of failure.
    #[test]
    fn every_failure_has_the_documented_recovery() {
        let kinds = [
            None,
            Some(K::Expired),
            Some(K::TooLargeResourceVersion),
            Some(K::TooManyRequests),
            Some(K::ConnectionRefused),
            Some(K::Internal),
            Some(K::Decode),
            Some(K::Other),
        ];
        #[rustfmt::skip]
        let table: [(Phase, [Recovery; 8]); 3] = [
            //             none               expired          too large         too many           refused            internal           decode  other
            (StreamingList, [RetryAfterBackoff, RetryFromLatest, RetryFromLatest, RetryAfterBackoff, RetryAfterBackoff, FallBackToList,    Skip,   FallBackToList]),
            (WatchStart,    [Relist,            Relist,          RelistFromLatest, RetryAfterBackoff, RetryAfterBackoff, Relist,            Relist, Relist]),
            (Watching,      [Relist,            Relist,          RelistFromLatest, RetryAfterBackoff, RetryAfterBackoff, RetryWhileAllowed, Skip,   Relist]),
        ];
        for (phase, expected) in table {
            for (kind, want) in kinds.iter().zip(expected) {
                assert_eq!(
                    recovery(phase, *kind),
                    want,
                    "after {kind:?} during {phase:?}"
                );
            }
        }
    }
}
