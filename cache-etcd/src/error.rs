//! How etcd's failures map onto the typed source errors that tell the reflector what to do.

use cache_core::source::{SourceError, SourceErrorKind};

/// gRPC status codes, by number (the numbering is part of the gRPC protocol).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// The message of etcd's `ErrCompacted` (gRPC OutOfRange).
const COMPACTED: &str = "required revision has been compacted";
/// The message of etcd's `ErrFutureRev` (gRPC OutOfRange).
const FUTURE: &str = "required revision is a future revision";

/// Classifies a gRPC status from etcd.
///
/// - OutOfRange "compacted": the revision is gone, relist ([`SourceErrorKind::Expired`]).
/// - OutOfRange "future revision": [`SourceErrorKind::TooLargeResourceVersion`]. Other
///   OutOfRange statuses (tonic uses the code for an oversized message) are
///   [`SourceErrorKind::Other`], so they are never mistaken for a compaction.
/// - Unavailable (no leader, leader changed, connect error), DeadlineExceeded, Cancelled and a
///   broken HTTP/2 stream (Unknown "h2 protocol error", what a killed member leaves behind):
///   the member or the connection failed, so the reflector retries through the client's other
///   endpoints after a backoff, without a relist ([`SourceErrorKind::ConnectionRefused`]).
/// - ResourceExhausted ("too many requests"): [`SourceErrorKind::TooManyRequests`].
/// - Internal: [`SourceErrorKind::Internal`].
pub(crate) fn classify(code: i32, message: &str) -> SourceErrorKind {
    match code {
        code::OUT_OF_RANGE if message.contains(COMPACTED) => SourceErrorKind::Expired,
        code::OUT_OF_RANGE if message.contains(FUTURE) => SourceErrorKind::TooLargeResourceVersion,
        code::UNAVAILABLE | code::DEADLINE_EXCEEDED | code::CANCELLED => {
            SourceErrorKind::ConnectionRefused
        }
        code::UNKNOWN if is_broken_connection(message) => SourceErrorKind::ConnectionRefused,
        code::RESOURCE_EXHAUSTED => SourceErrorKind::TooManyRequests,
        code::INTERNAL => SourceErrorKind::Internal,
        _ => SourceErrorKind::Other,
    }
}

fn is_broken_connection(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "h2 protocol error",
        "connection",
        "broken pipe",
        "transport",
        "stream no longer needed",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Whether a response was refused for exceeding the client's message limit (tonic reports it
/// as OutOfRange "decoded message length too large").
pub(crate) fn is_too_large(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(s)
        if s.code() as i32 == code::OUT_OF_RANGE && s.message().contains("message length too large"))
}

/// An etcd client error as a source error; `what` says which request failed.
pub(crate) fn from_etcd(error: etcd_client::Error, what: &str) -> SourceError {
    use etcd_client::Error as E;
    let kind = match &error {
        E::GRpcStatus(status) => classify(status.code() as i32, status.message()),
        E::TransportError(_) | E::IoError(_) => SourceErrorKind::ConnectionRefused,
        // The watch's request channel closed: its connection is gone.
        E::WatchError(_) => SourceErrorKind::ConnectionRefused,
        _ => SourceErrorKind::Other,
    };
    SourceError::new(kind, format!("etcd {what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_of_out_of_range_are_told_apart() {
        let m = "etcdserver: mvcc: required revision has been compacted";
        assert_eq!(classify(code::OUT_OF_RANGE, m), SourceErrorKind::Expired);
        let m = "etcdserver: mvcc: required revision is a future revision";
        assert_eq!(
            classify(code::OUT_OF_RANGE, m),
            SourceErrorKind::TooLargeResourceVersion
        );
        // tonic's "message too large" is OutOfRange too: it must not trigger a relist loop.
        let m = "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes";
        assert_eq!(classify(code::OUT_OF_RANGE, m), SourceErrorKind::Other);
    }

    #[test]
    fn member_and_connection_failures_are_retried_without_a_relist() {
        for (code, m) in [
            (code::UNAVAILABLE, "etcdserver: leader changed"),
            (code::UNAVAILABLE, "tcp connect error"),
            (
                code::UNKNOWN,
                "h2 protocol error: error reading a body from connection",
            ),
            (code::DEADLINE_EXCEEDED, "timeout expired"),
        ] {
            assert_eq!(classify(code, m), SourceErrorKind::ConnectionRefused, "{m}");
        }
        assert_eq!(
            classify(code::UNKNOWN, "something odd"),
            SourceErrorKind::Other
        );
        assert_eq!(
            classify(code::RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
            SourceErrorKind::TooManyRequests
        );
        assert_eq!(classify(code::INTERNAL, "boom"), SourceErrorKind::Internal);
        assert_eq!(classify(3, "invalid argument"), SourceErrorKind::Other);
    }
}
