//! [`KubeListWatch`]: a `kube::Api<K>` as a [`ListerWatcher`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_core::Object;
use cache_core::source::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchStream,
};
use futures::future::BoxFuture;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::error::{error_from_kube, rejects_watch_list};
use crate::object::KubeObject;
use crate::wire::{Transform, decode_list, watch_stream};

/// The server-side watch timeout when the caller sets none: under the API server's 5-minute
/// floor for `--min-request-timeout`, as kube-runtime does.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(290);

/// How much longer than the watch's `timeoutSeconds` a read may wait before the connection is
/// taken for dead and the watch ends (the server closes every watch at its timeout).
pub const IDLE_GRACE: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// A `kube::Api<K>` as a [`ListerWatcher`]: what the reflector lists and watches to fill a
/// cache from a Kubernetes API server.
///
/// It works for every `kube::Resource` that deserializes: k8s-openapi types, custom resources
/// from `#[derive(CustomResource)]`, `DynamicObject` and `PartialObjectMeta<K>` (metadata-only
/// requests). It sends the same requests as client-go's reflector:
///
/// - **list**: `GET <path>?limit=..&continue=..&resourceVersion=..&resourceVersionMatch=..`, one
///   page per call (a continue token replaces the version, as client-go's pager does);
/// - **watch**: `GET <path>?watch=true&resourceVersion=..&allowWatchBookmarks=true&timeoutSeconds=..`,
///   with `sendInitialEvents=true&resourceVersionMatch=NotOlderThan` for the streaming initial
///   list, which ends at the bookmark annotated `k8s.io/initial-events-end: "true"`.
///
/// Each object is decoded on its own: one that does not decode (or whose transform fails) is a
/// [`SourceErrorKind::Decode`] error naming it (`namespace/name`), left out of the list page
/// ([`ObjectList::skipped`]) or yielded as an `Err` item while the watch goes on. API errors
/// map onto the other kinds (see [`error_from_status`](crate::error_from_status)).
///
/// By default it caches whole objects as [`KubeObject<K>`]; [`map`](Self::map) caches your own
/// compact type instead.
///
/// ```
/// use cache_core::source::ListerWatcher;
/// use cache_kube::{KubeListWatch, KubeObject};
/// use k8s_openapi::api::core::v1::Pod;
/// use kube::{Api, Client, Config};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let client = Client::try_from(Config::new("http://127.0.0.1:1".parse()?))?;
/// // let client = Client::try_default().await?;
/// let pods: Api<Pod> = Api::all(client);
/// let source = KubeListWatch::new(pods).streaming_list(true);
/// assert!(source.supports_watch_list());
/// # fn is_source<T: cache_core::Object, L: ListerWatcher<T>>(_: &L) {}
/// is_source::<KubeObject<Pod>, _>(&source);
/// # Ok(()) }
/// ```
pub struct KubeListWatch<K, T = KubeObject<K>> {
    client: Client,
    path: String,
    metadata_api: bool,
    transform: Arc<Transform<K, T>>,
    streaming_list: bool,
    watch_list_rejected: Arc<AtomicBool>,
    _kind: PhantomData<fn() -> K>,
}

impl<K, T> Clone for KubeListWatch<K, T> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            path: self.path.clone(),
            metadata_api: self.metadata_api,
            transform: self.transform.clone(),
            streaming_list: self.streaming_list,
            watch_list_rejected: self.watch_list_rejected.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K, T> fmt::Debug for KubeListWatch<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeListWatch")
            .field("path", &self.path)
            .field("metadata_api", &self.metadata_api)
            .field("streaming_list", &self.streaming_list)
            .field(
                "watch_list_rejected",
                &self.watch_list_rejected.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl<K> KubeListWatch<K>
where
    K: Resource + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A source over `api`: its client, and its path (all namespaces, or one).
    ///
    /// Each object is cached as a clone of the decoded one: serde grows the vectors it decodes
    /// by doubling and leaves their spare capacity in place, while a clone allocates exactly,
    /// so the copy that lives in the cache is compact (for Pods, about a sixth less memory, for
    /// one clone per object while decoding).
    pub fn new(api: Api<K>) -> Self {
        let path = api.resource_url().to_owned();
        Self {
            client: api.into_client(),
            path,
            metadata_api: K::metadata_api(),
            transform: Arc::new(|decoded: K| {
                let compact = decoded.clone();
                drop(decoded);
                KubeObject::new(compact).map_err(|e| e.to_string())
            }),
            streaming_list: false,
            watch_list_rejected: Arc::new(AtomicBool::new(false)),
            _kind: PhantomData,
        }
    }

    /// Caches `U`, made from each object by `transform`, instead of the whole object.
    ///
    /// This is where a foreign type such as `Pod` becomes a compact struct of your own, which
    /// derives `Indexed` and keeps only the fields you read: managed fields, the full spec and
    /// status go, and with them most of the memory. The transform runs once per object, before
    /// the object reaches the cache; it takes the object by value, so it can move strings out
    /// instead of copying them. An `Err` is reported as a [`SourceErrorKind::Decode`] error
    /// naming the object, which is skipped; the watch goes on.
    ///
    /// The source then sets the object's `metadata.resourceVersion` on each `U` through
    /// [`Object::set_resource_version`]: with `#[derive(Indexed)]`, the `#[resource_version]`
    /// field gets it, and the transform need not fill it. Use [`object_key`](crate::object_key)
    /// to give `U` the object's key.
    ///
    /// ```
    /// use cache_core::{Indexed, ObjectKey, ResourceVersion};
    /// use cache_kube::{KubeListWatch, object_key};
    /// use k8s_openapi::api::core::v1::Pod;
    /// use kube::{Api, Client, Config};
    ///
    /// #[derive(Debug, Indexed)]
    /// struct MyPod {
    ///     #[key] key: ObjectKey,
    ///     #[resource_version] rv: Option<ResourceVersion>, // set by the source
    ///     #[index] node: Option<String>,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = Client::try_from(Config::new("http://127.0.0.1:1".parse()?))?;
    /// let source = KubeListWatch::new(Api::<Pod>::all(client)).map(|pod: Pod| {
    ///     Ok::<_, &str>(MyPod {
    ///         key: object_key(&pod).ok_or("no name")?,
    ///         rv: None,
    ///         node: pod.spec.and_then(|s| s.node_name),
    ///     })
    /// });
    /// # let _ = source; Ok(()) }
    /// ```
    pub fn map<U, E, F>(self, transform: F) -> KubeListWatch<K, U>
    where
        U: Object,
        F: Fn(K) -> Result<U, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        KubeListWatch {
            client: self.client,
            path: self.path,
            metadata_api: self.metadata_api,
            transform: Arc::new(move |object: K| {
                let rv = crate::resource_version(&object);
                let mut out = transform(object).map_err(|e| e.to_string())?;
                if let Some(rv) = rv {
                    out.set_resource_version(rv);
                }
                Ok(out)
            }),
            streaming_list: self.streaming_list,
            watch_list_rejected: self.watch_list_rejected,
            _kind: PhantomData,
        }
    }
}

impl<K, T> KubeListWatch<K, T> {
    /// Whether to offer the streaming initial list (Kubernetes 1.27+ "watch-list"): the
    /// reflector then fills the cache from one watch with `sendInitialEvents=true` instead of
    /// paginated lists. Off by default, as in kube-runtime.
    ///
    /// A server that rejects it (400 or 422, as servers without the `WatchList` feature do)
    /// fails that watch; the reflector then lists and watches, and this source stops offering
    /// the streaming list from then on.
    pub fn streaming_list(mut self, enabled: bool) -> Self {
        self.streaming_list = enabled;
        self
    }

    /// The API path this source lists and watches, e.g. `/api/v1/namespaces/default/pods`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn request(
        &self,
        query: String,
        accept: &'static str,
        span: &'static str,
    ) -> Result<http::Request<Vec<u8>>, SourceError> {
        let mut req = http::Request::get(query)
            .header(http::header::ACCEPT, accept)
            .body(Vec::new())
            .map_err(|e| SourceError::new(SourceErrorKind::Other, format!("bad request: {e}")))?;
        req.extensions_mut().insert(span);
        Ok(req)
    }
}

fn push_selectors(q: &mut form_urlencoded::Serializer<'_, String>, o: &ListOptions) {
    if let Some(labels) = o.label_selector.as_deref().filter(|s| !s.is_empty()) {
        q.append_pair("labelSelector", labels);
    }
    if let Some(fields) = o.field_selector.as_deref().filter(|s| !s.is_empty()) {
        q.append_pair("fieldSelector", fields);
    }
}

fn version_match(m: VersionMatch) -> Option<&'static str> {
    match m {
        VersionMatch::Unset => None,
        VersionMatch::NotOlderThan => Some("NotOlderThan"),
        VersionMatch::Exact => Some("Exact"),
    }
}

/// The query of a list request.
pub(crate) fn list_query(path: &str, o: &ListOptions) -> String {
    let mut q = form_urlencoded::Serializer::new(format!("{path}?"));
    push_selectors(&mut q, o);
    if let Some(limit) = o.limit.filter(|l| *l > 0) {
        q.append_pair("limit", &limit.to_string());
    }
    match o.continue_token.as_deref().filter(|c| !c.is_empty()) {
        // The continue token carries the version of the first page; the server rejects both.
        Some(token) => {
            q.append_pair("continue", token);
        }
        None => {
            if let Some(rv) = &o.resource_version {
                q.append_pair("resourceVersion", rv.as_str());
                if let Some(m) = version_match(o.version_match) {
                    q.append_pair("resourceVersionMatch", m);
                }
            }
        }
    }
    q.finish()
}

/// The query of a watch request, and its timeout.
pub(crate) fn watch_query(path: &str, o: &ListOptions) -> (String, Duration) {
    let timeout = o
        .timeout
        .unwrap_or(DEFAULT_WATCH_TIMEOUT)
        .max(Duration::from_secs(1));
    let mut q = form_urlencoded::Serializer::new(format!("{path}?"));
    q.append_pair("watch", "true");
    push_selectors(&mut q, o);
    if let Some(rv) = &o.resource_version {
        q.append_pair("resourceVersion", rv.as_str());
    }
    if o.send_initial_events {
        // The API server requires NotOlderThan with sendInitialEvents.
        q.append_pair("sendInitialEvents", "true");
        q.append_pair("resourceVersionMatch", "NotOlderThan");
    } else if let Some(m) = version_match(o.version_match) {
        q.append_pair("resourceVersionMatch", m);
    }
    // The end of a streaming initial list is a bookmark: it needs bookmarks.
    if o.allow_bookmarks || o.send_initial_events {
        q.append_pair("allowWatchBookmarks", "true");
    }
    q.append_pair("timeoutSeconds", &timeout.as_secs().to_string());
    (q.finish(), timeout)
}

impl<K, T> ListerWatcher<T> for KubeListWatch<K, T>
where
    K: DeserializeOwned + 'static,
    T: Object,
{
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        Box::pin(async move {
            let accept = if self.metadata_api {
                METADATA_LIST
            } else {
                JSON
            };
            let req = self.request(list_query(&self.path, &options), accept, "list")?;
            let body = self
                .client
                .request_text(req)
                .await
                .map_err(error_from_kube)?;
            decode_list(&body, &*self.transform)
        })
    }

    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        Box::pin(async move {
            let accept = if self.metadata_api { METADATA } else { JSON };
            let (query, timeout) = watch_query(&self.path, &options);
            let mut req = self.request(query, accept, "watch")?;
            // One JSON event per line, uncompressed: kube's gzip layer decodes only the first
            // gzip member of a watch stream (see kube-client's `request_events`).
            req.headers_mut().insert(
                http::header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
            let body = match self.client.request_stream(req).await {
                Ok(body) => body,
                Err(err) => {
                    if options.send_initial_events && rejects_watch_list(&err) {
                        self.watch_list_rejected.store(true, Ordering::Relaxed);
                    }
                    return Err(error_from_kube(err));
                }
            };
            Ok(watch_stream(
                Box::pin(body),
                self.transform.clone(),
                Some(timeout + IDLE_GRACE),
            ))
        })
    }

    fn supports_watch_list(&self) -> bool {
        self.streaming_list && !self.watch_list_rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Vec<(String, String)> {
        let q = query.split_once('?').map_or("", |(_, q)| q);
        let mut v: Vec<_> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        v.sort();
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn list_first_page_then_continue() {
        let first = ListOptions {
            resource_version: Some("0".into()),
            version_match: VersionMatch::NotOlderThan,
            limit: Some(500),
            label_selector: Some("app=web".into()),
            ..ListOptions::default()
        };
        let q = list_query("/api/v1/pods", &first);
        assert!(q.starts_with("/api/v1/pods?"));
        assert_eq!(
            params(&q),
            pairs(&[
                ("labelSelector", "app=web"),
                ("limit", "500"),
                ("resourceVersion", "0"),
                ("resourceVersionMatch", "NotOlderThan"),
            ])
        );
        let next = ListOptions {
            continue_token: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTJ9".into()),
            ..first
        };
        assert_eq!(
            params(&list_query("/api/v1/pods", &next)),
            pairs(&[
                ("continue", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTJ9"),
                ("labelSelector", "app=web"),
                ("limit", "500"),
            ])
        );
    }

    #[test]
    fn list_without_version_is_a_quorum_read() {
        assert_eq!(
            list_query("/api/v1/pods", &ListOptions::default()),
            "/api/v1/pods?"
        );
    }

    #[test]
    fn watch_queries() {
        let o = ListOptions {
            resource_version: Some("12".into()),
            allow_bookmarks: true,
            timeout: Some(Duration::from_secs(331)),
            ..ListOptions::default()
        };
        let (q, t) = watch_query("/api/v1/pods", &o);
        assert_eq!(t, Duration::from_secs(331));
        assert_eq!(
            params(&q),
            pairs(&[
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", "12"),
                ("timeoutSeconds", "331"),
                ("watch", "true"),
            ])
        );
        let streaming = ListOptions {
            resource_version: None,
            send_initial_events: true,
            allow_bookmarks: false,
            timeout: None,
            ..o
        };
        let (q, t) = watch_query("/api/v1/pods", &streaming);
        assert_eq!(t, DEFAULT_WATCH_TIMEOUT);
        assert_eq!(
            params(&q),
            pairs(&[
                ("allowWatchBookmarks", "true"),
                ("resourceVersionMatch", "NotOlderThan"),
                ("sendInitialEvents", "true"),
                ("timeoutSeconds", "290"),
                ("watch", "true"),
            ])
        );
    }
}
