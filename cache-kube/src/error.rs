//! How Kubernetes API errors map onto [`SourceErrorKind`]s, which tell the reflector what to
//! do next.

use std::error::Error as StdError;
use std::io;

use cache_core::source::{SourceError, SourceErrorKind};
use kube::core::Status;

/// The text by which the API server reports a resource version it has not reached yet
/// (client-go's `isTooLargeResourceVersionError` looks for the same).
const TOO_LARGE_RV: &str = "Too large resource version";

/// Maps a `Status` returned by the API server (an error response, or a watch `ERROR` event) to
/// a [`SourceError`]:
///
/// | status | kind |
/// |---|---|
/// | message "Too large resource version", or cause `ResourceVersionTooLarge` | `TooLargeResourceVersion` |
/// | 410, or reason `Expired` / `Gone` | `Expired` |
/// | 429, or reason `TooManyRequests` | `TooManyRequests` |
/// | 500, or reason `InternalError` | `Internal` |
/// | anything else | `Other` |
///
/// ```
/// use cache_core::source::SourceErrorKind;
/// use cache_kube::error_from_status;
/// use kube::core::Status;
///
/// let gone: Status = serde_json::from_str(r#"{"kind":"Status","apiVersion":"v1",
///     "metadata":{},"status":"Failure","message":"too old resource version: 5 (12)",
///     "reason":"Expired","code":410}"#).unwrap();
/// let err = error_from_status(&gone);
/// assert_eq!(err.kind, SourceErrorKind::Expired);
/// assert!(err.message.contains("too old resource version"));
/// ```
pub fn error_from_status(status: &Status) -> SourceError {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let too_large = status.message.contains(TOO_LARGE_RV)
        || causes
            .iter()
            .any(|c| c.reason == "ResourceVersionTooLarge" || c.message.contains(TOO_LARGE_RV));
    let kind = if too_large {
        SourceErrorKind::TooLargeResourceVersion
    } else {
        match (status.code, status.reason.as_str()) {
            (410, _) | (_, "Expired" | "Gone") => SourceErrorKind::Expired,
            (429, _) | (_, "TooManyRequests") => SourceErrorKind::TooManyRequests,
            (500, _) | (_, "InternalError") => SourceErrorKind::Internal,
            _ => SourceErrorKind::Other,
        }
    };
    let reason = if status.reason.is_empty() {
        "Failure"
    } else {
        status.reason.as_str()
    };
    SourceError::new(
        kind,
        format!("API server: {} {reason}: {}", status.code, status.message),
    )
}

/// Maps an error of the kube client: an error response through [`error_from_status`], a
/// refused connection to [`SourceErrorKind::ConnectionRefused`], anything else to
/// [`SourceErrorKind::Other`].
pub fn error_from_kube(err: kube::Error) -> SourceError {
    match err {
        kube::Error::Api(status) => error_from_status(&status),
        other => {
            let kind = if has_io_kind(&other, io::ErrorKind::ConnectionRefused) {
                SourceErrorKind::ConnectionRefused
            } else {
                SourceErrorKind::Other
            };
            SourceError::new(kind, error_chain(&other))
        }
    }
}

/// Whether a watch request with `sendInitialEvents` failed because the server does not support
/// the streaming list: it rejects the parameters as invalid (422) or as a bad request (400).
pub(crate) fn rejects_watch_list(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 422 || s.code == 400
        || s.reason == "Invalid" || s.reason == "BadRequest")
}

/// Whether `err` or any error in its `source()` chain is an `io::Error` of `kind`.
pub(crate) fn has_io_kind(err: &(dyn StdError + 'static), kind: io::ErrorKind) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == kind {
                return true;
            }
            // An io::Error may wrap the real cause as its own inner error.
            if let Some(inner) = io.get_ref()
                && has_io_kind(inner, kind)
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// `err` and its causes, joined with ": ".
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> Status {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn status_codes_map_to_kinds() {
        let cases = [
            (
                r#"{"status":"Failure","message":"too old resource version: 1 (9)","reason":"Expired","code":410}"#,
                SourceErrorKind::Expired,
            ),
            (
                r#"{"status":"Failure","message":"gone","reason":"Gone","code":410}"#,
                SourceErrorKind::Expired,
            ),
            (
                r#"{"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#,
                SourceErrorKind::TooManyRequests,
            ),
            (
                r#"{"status":"Failure","message":"Timeout: Too large resource version: 200, current: 150","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#,
                SourceErrorKind::TooLargeResourceVersion,
            ),
            (
                r#"{"status":"Failure","message":"Internal error occurred: etcdserver: leader changed","reason":"InternalError","code":500}"#,
                SourceErrorKind::Internal,
            ),
            (
                r#"{"status":"Failure","message":"pods is forbidden","reason":"Forbidden","code":403}"#,
                SourceErrorKind::Other,
            ),
        ];
        for (json, kind) in cases {
            let err = error_from_status(&status(json));
            assert_eq!(err.kind, kind, "{json}");
        }
    }

    #[test]
    fn too_large_is_found_by_cause_alone() {
        let s = status(
            r#"{"status":"Failure","message":"Timeout","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"x"}]},"code":504}"#,
        );
        assert_eq!(
            error_from_status(&s).kind,
            SourceErrorKind::TooLargeResourceVersion
        );
    }

    #[test]
    fn message_keeps_code_reason_and_text() {
        let s = status(r#"{"status":"Failure","message":"etcd down","code":500}"#);
        assert_eq!(
            error_from_status(&s).message,
            "API server: 500 Failure: etcd down"
        );
    }

    #[test]
    fn io_kind_is_found_through_wrapping() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let wrapped = io::Error::other(refused);
        assert!(has_io_kind(&wrapped, io::ErrorKind::ConnectionRefused));
        assert!(!has_io_kind(&wrapped, io::ErrorKind::TimedOut));
    }
}
