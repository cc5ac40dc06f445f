//! The Kubernetes wire format: list bodies and watch lines, split into their objects before
//! any object is decoded, so that one object that fails to decode is named and skipped
//! instead of failing the whole list or ending the watch.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use cache_core::source::{ObjectList, SourceError, SourceErrorKind, WatchEvent, WatchStream};
use futures::StreamExt;
use futures::io::{AsyncBufRead, AsyncBufReadExt};
use kube::core::Status;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{error_chain, error_from_status, has_io_kind};

/// The annotation on the bookmark that ends a streaming initial list.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A transform from the decoded Kubernetes type to the cached type; its error is a message.
pub(crate) type Transform<K, T> = dyn Fn(K) -> Result<T, String> + Send + Sync;

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct BookmarkObject {
    metadata: BookmarkMeta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkMeta {
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Just enough of an object to name it when the rest does not decode.
#[derive(Deserialize)]
struct NameOnly {
    #[serde(default)]
    metadata: Option<NameMeta>,
}

#[derive(Debug, Deserialize)]
struct NameMeta {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The name of `T` without its module path, for messages.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Names a raw object for an error: `namespace/name` when its metadata decodes, else the start
/// of its text.
fn name_raw(raw: &str) -> String {
    if let Ok(NameOnly {
        metadata: Some(NameMeta {
            namespace,
            name: Some(name),
        }),
    }) = serde_json::from_str::<NameOnly>(raw)
    {
        return match namespace.filter(|ns| !ns.is_empty()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        };
    }
    let mut end = raw.len().min(80);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    let ellipsis = if end < raw.len() { "..." } else { "" };
    format!("<unnamed object: {}{ellipsis}>", &raw[..end])
}

/// Decodes one object and applies the transform; a failure is a [`SourceErrorKind::Decode`]
/// error naming the object.
pub(crate) fn decode_object<K: DeserializeOwned, T>(
    raw: &str,
    transform: &Transform<K, T>,
) -> Result<T, SourceError> {
    match serde_json::from_str::<K>(raw) {
        Ok(object) => transform(object).map_err(|message| {
            SourceError::decode(
                name_raw(raw),
                format!("transform of {} failed: {message}", short_type_name::<K>()),
            )
        }),
        Err(e) => Err(SourceError::decode(
            name_raw(raw),
            format!("cannot decode {}: {e}", short_type_name::<K>()),
        )),
    }
}

/// Decodes a list response: the page's items that decode, its resource version and continue
/// token, and a [`SourceErrorKind::Decode`] error for each item that does not.
pub(crate) fn decode_list<K: DeserializeOwned, T>(
    body: &str,
    transform: &Transform<K, T>,
) -> Result<ObjectList<T>, SourceError> {
    let list: RawList<'_> = serde_json::from_str(body).map_err(|e| {
        SourceError::new(
            SourceErrorKind::Other,
            format!("the list response is not a Kubernetes list: {e}"),
        )
    })?;
    let raw_items = list.items.unwrap_or_default();
    let mut items = Vec::with_capacity(raw_items.len());
    let mut skipped = Vec::new();
    for raw in raw_items {
        match decode_object(raw.get(), transform) {
            Ok(item) => items.push(Arc::new(item)),
            Err(e) => skipped.push(e),
        }
    }
    let mut page = ObjectList::new(
        items,
        list.metadata
            .resource_version
            .filter(|rv| !rv.is_empty())
            .map(Into::into),
    );
    // An empty continue token means "no more pages" (kube-rs#1250).
    page.continue_token = list.metadata.continue_token.filter(|c| !c.is_empty());
    page.skipped = skipped;
    Ok(page)
}

/// What one watch line became.
#[derive(Debug)]
pub(crate) enum Line<T> {
    /// An event; the watch goes on.
    Event(WatchEvent<T>),
    /// The server's `ERROR` event (or a bare `Status`); the watch is over.
    End(SourceError),
    /// An object or line that did not decode; the watch goes on.
    Skip(SourceError),
    /// A line cut short by the end of the stream: the connection ended mid-event.
    Truncated,
}

/// Decodes one line of a watch response.
pub(crate) fn decode_line<K: DeserializeOwned, T>(
    line: &[u8],
    transform: &Transform<K, T>,
) -> Line<T> {
    let frame: Frame<'_> = match serde_json::from_slice(line) {
        Ok(frame) => frame,
        Err(e) if e.is_eof() => return Line::Truncated,
        Err(e) => {
            // A bare Status instead of an event: the server ended the watch with an error.
            if let Ok(status) = serde_json::from_slice::<Status>(line)
                && status.code != 0
            {
                return Line::End(error_from_status(&status));
            }
            let text = String::from_utf8_lossy(line);
            return Line::Skip(SourceError::decode(
                name_raw(&text),
                format!("not a watch event: {e}"),
            ));
        }
    };
    let raw = frame.object.get();
    let event = match &*frame.kind {
        "ADDED" => decode_object(raw, transform).map(|o| WatchEvent::Added(Arc::new(o))),
        "MODIFIED" => decode_object(raw, transform).map(|o| WatchEvent::Modified(Arc::new(o))),
        "DELETED" => decode_object(raw, transform).map(|o| WatchEvent::Deleted(Arc::new(o))),
        "BOOKMARK" => decode_bookmark(raw),
        "ERROR" => {
            return match serde_json::from_str::<Status>(raw) {
                Ok(status) => Line::End(error_from_status(&status)),
                Err(e) => Line::End(SourceError::new(
                    SourceErrorKind::Other,
                    format!("watch ERROR event without a readable Status: {e}"),
                )),
            };
        }
        other => Err(SourceError::decode(
            name_raw(raw),
            format!("unknown watch event type {other:?}"),
        )),
    };
    match event {
        Ok(event) => Line::Event(event),
        Err(e) => Line::Skip(e),
    }
}

fn decode_bookmark<T>(raw: &str) -> Result<WatchEvent<T>, SourceError> {
    let bookmark: BookmarkObject = serde_json::from_str(raw)
        .map_err(|e| SourceError::decode("<bookmark>", format!("cannot decode bookmark: {e}")))?;
    let rv = bookmark
        .metadata
        .resource_version
        .filter(|rv| !rv.is_empty())
        .ok_or_else(|| SourceError::decode("<bookmark>", "bookmark without a resourceVersion"))?;
    let initial_events_end = bookmark
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INITIAL_EVENTS_END))
        .is_some_and(|v| v == "true");
    Ok(WatchEvent::Bookmark {
        resource_version: rv.into(),
        initial_events_end,
    })
}

/// Whether a read error of a watch body is just the connection ending: the watch is over and
/// the reflector re-watches from the last version it saw, as client-go does.
fn is_end_of_connection(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    let ends = [
        UnexpectedEof,
        TimedOut,
        ConnectionReset,
        ConnectionAborted,
        BrokenPipe,
    ];
    ends.iter().any(|k| has_io_kind(e, *k)) || {
        let text = error_chain(e);
        text.contains("unexpected EOF") || text.contains("IncompleteMessage")
    }
}

struct LineReader<R, K, T> {
    reader: R,
    buf: Vec<u8>,
    transform: Arc<Transform<K, T>>,
    idle: Option<Duration>,
    done: bool,
}

/// Turns a watch response body into a [`WatchStream`].
///
/// - Each line is one event. An object that fails to decode (or to transform) is an `Err` of
///   kind [`SourceErrorKind::Decode`] naming it, and the stream goes on.
/// - An `ERROR` event becomes [`WatchEvent::Error`], and the stream ends after it.
/// - The body ending, or being cut (a half line, a reset connection), ends the stream cleanly.
/// - With `idle` set, a read that waits longer than that also ends the stream cleanly: the
///   server ends every watch at its `timeoutSeconds`, so a longer silence is a dead connection.
pub(crate) fn watch_stream<R, K, T>(
    reader: R,
    transform: Arc<Transform<K, T>>,
    idle: Option<Duration>,
) -> WatchStream<T>
where
    R: AsyncBufRead + Unpin + Send + 'static,
    K: DeserializeOwned + 'static,
    T: Send + Sync + 'static,
{
    let state = LineReader {
        reader,
        buf: Vec::with_capacity(8 * 1024),
        transform,
        idle,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            st.buf.clear();
            let read = st.reader.read_until(b'\n', &mut st.buf);
            let read = match st.idle {
                Some(idle) => match tokio::time::timeout(idle, read).await {
                    Ok(r) => r,
                    Err(_) => return None,
                },
                None => read.await,
            };
            match read {
                Ok(0) => return None,
                Ok(_) => {
                    let line = st.buf.trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    match decode_line(line, &*st.transform) {
                        Line::Event(event) => return Some((Ok(event), st)),
                        Line::Skip(err) => return Some((Err(err), st)),
                        Line::End(err) => {
                            st.done = true;
                            return Some((Ok(WatchEvent::Error(err)), st));
                        }
                        Line::Truncated => return None,
                    }
                }
                Err(e) if is_end_of_connection(&e) => return None,
                Err(e) => {
                    st.done = true;
                    let err = SourceError::new(
                        SourceErrorKind::Other,
                        format!("reading the watch stream: {}", error_chain(&e)),
                    );
                    return Some((Err(err), st));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Object;

    /// A minimal typed object for unit tests.
    #[derive(Debug, Deserialize)]
    struct Thing {
        metadata: NameMeta,
        spec: ThingSpec,
    }
    #[derive(Debug, Deserialize)]
    struct ThingSpec {
        size: u32,
    }
    impl Object for Thing {
        type Key = String;
        fn key(&self) -> String {
            self.metadata.name.clone().unwrap_or_default()
        }
    }

    fn id(t: Thing) -> Result<Thing, String> {
        Ok(t)
    }

    #[test]
    fn list_keeps_good_items_and_names_bad_ones() {
        let body = r#"{"kind":"ThingList","apiVersion":"v1","metadata":{"resourceVersion":"17","continue":"abc"},
            "items":[{"metadata":{"namespace":"a","name":"x"},"spec":{"size":1}},
                     {"metadata":{"namespace":"a","name":"bad"},"spec":{"size":"huge"}},
                     {"metadata":{"name":"y"},"spec":{"size":2}}]}"#;
        let page = decode_list::<Thing, Thing>(body, &id).unwrap();
        let keys: Vec<_> = page.items.iter().map(|t| t.key()).collect();
        assert_eq!(keys, ["x", "y"]);
        assert_eq!(page.resource_version.unwrap().as_str(), "17");
        assert_eq!(page.continue_token.as_deref(), Some("abc"));
        assert_eq!(page.skipped.len(), 1);
        assert_eq!(page.skipped[0].kind, SourceErrorKind::Decode);
        assert_eq!(page.skipped[0].object.as_deref(), Some("a/bad"));
        assert!(
            page.skipped[0].message.contains("Thing"),
            "{}",
            page.skipped[0].message
        );
    }

    #[test]
    fn empty_continue_means_last_page_and_null_items_mean_empty() {
        let body = r#"{"metadata":{"resourceVersion":"3","continue":""},"items":null}"#;
        let page = decode_list::<Thing, Thing>(body, &id).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.continue_token, None);
    }

    #[test]
    fn a_body_that_is_not_a_list_is_an_error() {
        let err = decode_list::<Thing, Thing>("<html>proxy error</html>", &id).unwrap_err();
        assert_eq!(err.kind, SourceErrorKind::Other);
    }

    #[test]
    fn transform_failure_is_a_decode_error_naming_the_object() {
        let body = r#"{"metadata":{},"items":[{"metadata":{"namespace":"a","name":"x"},"spec":{"size":1}}]}"#;
        let fail = |_t: Thing| -> Result<Thing, String> { Err("no node".into()) };
        let page = decode_list::<Thing, Thing>(body, &fail).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.skipped[0].object.as_deref(), Some("a/x"));
        assert!(page.skipped[0].message.contains("no node"));
    }

    #[test]
    fn unnamed_garbage_is_named_by_its_text() {
        assert_eq!(name_raw(r#"{"spec":1}"#), r#"<unnamed object: {"spec":1}>"#);
        let long = format!("\"{}\"", "é".repeat(100));
        assert!(name_raw(&long).ends_with("...>"));
    }

    #[test]
    fn watch_lines() {
        let t = |s: &str| decode_line::<Thing, Thing>(s.as_bytes(), &id);
        assert!(matches!(
            t(r#"{"type":"ADDED","object":{"metadata":{"name":"x"},"spec":{"size":1}}}"#),
            Line::Event(WatchEvent::Added(o)) if o.spec.size == 1
        ));
        assert!(matches!(
            t(r#"{"type":"BOOKMARK","object":{"kind":"Thing","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#),
            Line::Event(WatchEvent::Bookmark { resource_version, initial_events_end: true })
                if resource_version.as_str() == "9"
        ));
        assert!(matches!(
            t(r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"10"}}}"#),
            Line::Event(WatchEvent::Bookmark {
                initial_events_end: false,
                ..
            })
        ));
        assert!(matches!(
            t(r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#),
            Line::End(e) if e.kind == SourceErrorKind::Expired
        ));
        assert!(matches!(
            t(r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":500,"message":"boom"}"#),
            Line::End(e) if e.kind == SourceErrorKind::Internal
        ));
        assert!(matches!(
            t(r#"{"type":"MODIFIED","object":{"metadata":{"name":"x"},"spec":{}}}"#),
            Line::Skip(e) if e.object.as_deref() == Some("x")
        ));
        assert!(matches!(
            t(r#"{"type":"EXPLODED","object":{"metadata":{"name":"x"}}}"#),
            Line::Skip(e) if e.message.contains("EXPLODED")
        ));
        assert!(matches!(t("not json"), Line::Skip(e) if e.kind == SourceErrorKind::Decode));
        assert!(matches!(
            t(r#"{"type":"ADDED","object":{"metada"#),
            Line::Truncated
        ));
        assert!(matches!(
            t(r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#),
            Line::Skip(e) if e.message.contains("resourceVersion")
        ));
    }

    /// A body that never sends anything, the way a dead connection looks.
    struct Silent;
    impl futures::io::AsyncRead for Silent {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Pending
        }
    }
    impl AsyncBufRead for Silent {
        fn poll_fill_buf(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<&[u8]>> {
            std::task::Poll::Pending
        }
        fn consume(self: std::pin::Pin<&mut Self>, _: usize) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_ends_after_the_idle_timeout() {
        let start = tokio::time::Instant::now();
        let mut stream = watch_stream(Silent, Arc::new(id), Some(Duration::from_secs(295)));
        let next = tokio::time::timeout(Duration::from_secs(3600), stream.next()).await;
        assert!(matches!(next, Ok(None)), "the stream ends cleanly");
        assert_eq!(start.elapsed(), Duration::from_secs(295));
    }

    #[tokio::test]
    async fn body_events_in_order_then_error_ends_the_stream() {
        let body = concat!(
            r#"{"type":"ADDED","object":{"metadata":{"name":"a"},"spec":{"size":1}}}"#,
            "\n\n",
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"a"},"spec":{"size":"x"}}}"#,
            "\n",
            r#"{"type":"DELETED","object":{"metadata":{"name":"a"},"spec":{"size":1}}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"gone"}}"#,
            "\n",
            r#"{"type":"ADDED","object":{"metadata":{"name":"never"},"spec":{"size":1}}}"#,
            "\n",
        );
        let reader = futures::io::Cursor::new(body.as_bytes().to_vec());
        let items: Vec<_> = watch_stream(reader, Arc::new(id), None).collect().await;
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], Ok(WatchEvent::Added(_))));
        assert!(matches!(&items[1], Err(e) if e.kind == SourceErrorKind::Decode));
        assert!(matches!(&items[2], Ok(WatchEvent::Deleted(_))));
        assert!(
            matches!(&items[3], Ok(WatchEvent::Error(e)) if e.kind == SourceErrorKind::Expired)
        );
    }
}
