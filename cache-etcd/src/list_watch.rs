//! [`EtcdListWatch`]: lists and watches one etcd key prefix as a
//! [`ListerWatcher`](cache_core::source::ListerWatcher).

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use cache_core::Object;
use cache_core::source::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchEvent,
    WatchStream,
};
use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue, WatchOptions, WatchResponse};
use futures::future::BoxFuture;

use crate::codec::{Codec, JsonCodec, Meta};
use crate::error::{from_etcd, is_too_large};
use crate::key::{Continue, KeyMapping, key_after, prefix_range_end};

/// The page size of a list that asks for no limit: the list is read page by page at one
/// revision.
///
/// It is large because etcd walks every remaining key of the range to count them on each page,
/// so a list in pages of `p` keys costs O(n²/p): 100,000 keys took 3.9 s in pages of 500 and
/// about 1 s in pages of 5,000 (`cargo bench -p cache-etcd --bench etcd`). A page that exceeds the
/// message limit is read again in halves.
pub const DEFAULT_PAGE_SIZE: u32 = 10_000;

/// The largest gRPC message (a list page, a batch of watch events) the source accepts.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// etcd's event types (mvccpb.Event.EventType).
const PUT: i32 = 0;
const DELETE: i32 = 1;

/// Connects a client with the options a long-running watch wants:
///
/// - HTTP/2 keep-alive pings (every 10 s, 5 s to answer), so a member that dies without closing
///   its connections is noticed while a watch is quiet;
/// - a 5 s connect timeout;
/// - require-leader, so a member cut off from its cluster ends its watches (and the reflector
///   moves to another member) instead of going silent.
///
/// Give every member of the cluster: requests are balanced across them and a failed member is
/// left out. An endpoint without a scheme is taken as `http://`.
///
/// # Errors
///
/// [`SourceErrorKind::ConnectionRefused`] when no endpoint can be reached, and
/// [`SourceErrorKind::Other`] for an invalid endpoint.
pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Client, SourceError> {
    let options = ConnectOptions::new()
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5))
        .with_require_leader(true);
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| from_etcd(e, "connect"))
}

/// Lists and watches every key under one etcd prefix, decoding each value into a `T` with the
/// codec `C` ([`JsonCodec`] by default). Give it to a reflector to mirror the prefix in a
/// [`Cache`](cache_core::Cache).
///
/// # Semantics
///
/// - **Resource versions are etcd revisions**: a list's version is the revision it was read at
///   (the response header's); an object's is its key's `mod_revision` (for a deleted object,
///   the revision of the delete), which the codec hands the object through [`Meta`].
/// - **Lists** read the key range of the prefix, sorted by key, page by page at one fixed
///   revision. With [`ListOptions::limit`] one page is returned, with a continue token naming
///   that revision and the next key; without, the source fetches every page itself
///   ([`with_page_size`](Self::with_page_size)). Prefer the latter for large prefixes: etcd
///   walks every remaining key of the range on each page, so small pages cost O(n²) (see
///   [`DEFAULT_PAGE_SIZE`]); a reflector told not to paginate lets the source page. A version with [`VersionMatch::Exact`] (or
///   any version with a limit) reads at that revision; `"0"` accepts a member's local state; no
///   version reads the latest, linearizable state.
/// - **Watches** start at the given version + 1 (or now, without one) and ask for the previous
///   value of each key, so a [`WatchEvent::Deleted`] carries the object's last state (at a
///   price: see [`with_prev_kv`](Self::with_prev_kv)). A put of a new key is
///   [`WatchEvent::Added`], of an existing one [`WatchEvent::Modified`].
/// - **Bookmarks**: with [`ListOptions::allow_bookmarks`] the watch asks for etcd's progress
///   notifications (sent every `--experimental-watch-progress-notify-interval`, 10 minutes by
///   default in etcd 3.4), and each becomes a [`WatchEvent::Bookmark`] at the revision it
///   reports. Responses to a client's explicit progress request are not used: before etcd
///   3.4.25/3.5.8 they could report a revision whose events were still on their way.
/// - **Compaction** becomes [`SourceErrorKind::Expired`] in both its shapes: a list at a
///   compacted revision (gRPC OutOfRange) and a watch that etcd cancels with
///   `compact_revision` set. The reflector relists.
/// - **Failures** of a member or a connection are [`SourceErrorKind::ConnectionRefused`]; the
///   client's next request goes to a live endpoint (see [`connect`]).
/// - **Values that do not decode** are [`SourceErrorKind::Decode`] errors naming the etcd key:
///   in a list they are left out of the items and listed in [`ObjectList::skipped`]; in a watch
///   the error is one item of the stream, which goes on. A put whose value does not decode
///   also removes the object the key held, so that a watch ends where a relist would: after the
///   error comes a [`WatchEvent::Deleted`] with the key's last state (or the codec's
///   [`tombstone`](Codec::tombstone) when watches run without previous values), stamped with the
///   put's revision. Without either, nothing names the object and it stays cached until the
///   next relist.
/// - **Keys** map to object keys through a [`KeyMapping`]; a key it maps to `None` is skipped.
///
/// Label and field selectors and the streaming initial list are not supported: a request that
/// asks for them fails with [`SourceErrorKind::Other`].
///
/// # Example
///
/// ```no_run
/// use cache_core::{Indexed, Object, ResourceVersion};
/// use cache_core::source::{ListOptions, ListerWatcher};
/// use cache_etcd::{EtcdListWatch, EtcdObject};
///
/// #[derive(Debug, serde::Deserialize, Indexed)]
/// struct Pod {
///     #[key(namespace)] namespace: String,
///     #[key(name)] name: String,
///     node: String,
///     #[resource_version] revision: Option<ResourceVersion>, // the key's mod revision
/// }
/// impl EtcdObject for Pod {}
///
/// # async fn run() -> Result<(), cache_core::source::SourceError> {
/// let client = cache_etcd::connect(&["127.0.0.1:2379"]).await?;
/// let pods = EtcdListWatch::<Pod>::new(client, "/registry/pods/");
/// let list = pods.list(ListOptions::default()).await?;
/// for pod in &list.items {
///     println!("{} runs on {} (revision {:?})", pod.key(), pod.node, pod.revision);
/// }
/// println!("{} pods at revision {:?}", list.items.len(), list.resource_version);
/// # Ok(()) }
/// # fn main() { drop(run()); }
/// ```
pub struct EtcdListWatch<T, C = JsonCodec> {
    client: Client,
    decoder: Decoder<C>,
    page_size: u32,
    max_message_size: usize,
    prev_kv: bool,
    _objects: PhantomData<fn() -> T>,
}

/// Turns etcd key-values into objects; shared by the source and its watch streams.
struct Decoder<C> {
    prefix: Arc<str>,
    range_end: Arc<[u8]>,
    codec: Arc<C>,
    key_mapping: KeyMapping,
}

impl<C> Clone for Decoder<C> {
    fn clone(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            range_end: self.range_end.clone(),
            codec: self.codec.clone(),
            key_mapping: self.key_mapping.clone(),
        }
    }
}

impl<T> EtcdListWatch<T, JsonCodec> {
    /// A source of the keys under `prefix`, with JSON values.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        let prefix: String = prefix.into();
        Self {
            client,
            decoder: Decoder {
                range_end: prefix_range_end(prefix.as_bytes()).into(),
                prefix: prefix.into(),
                codec: Arc::new(JsonCodec),
                key_mapping: KeyMapping::default(),
            },
            page_size: DEFAULT_PAGE_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            prev_kv: true,
            _objects: PhantomData,
        }
    }
}

impl<T, C> EtcdListWatch<T, C> {
    /// Replaces the codec.
    pub fn with_codec<C2: Codec<T>>(self, codec: C2) -> EtcdListWatch<T, C2> {
        EtcdListWatch {
            client: self.client,
            decoder: Decoder {
                prefix: self.decoder.prefix,
                range_end: self.decoder.range_end,
                codec: Arc::new(codec),
                key_mapping: self.decoder.key_mapping,
            },
            page_size: self.page_size,
            max_message_size: self.max_message_size,
            prev_kv: self.prev_kv,
            _objects: PhantomData,
        }
    }

    /// Sets how etcd keys map to object keys ([`KeyMapping::strip_prefix`] by default).
    pub fn with_key_mapping(mut self, key_mapping: KeyMapping) -> Self {
        self.decoder.key_mapping = key_mapping;
        self
    }

    /// Sets the page size of lists that ask for no limit ([`DEFAULT_PAGE_SIZE`]); 0 is taken
    /// as 1.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Whether watches ask etcd for each change's previous state (on by default), so that a
    /// [`WatchEvent::Deleted`] carries the object's last state.
    ///
    /// It has a price: etcd 3.4 reads the previous state of every change, one by one, before
    /// it sends the event, which measured here cuts a watch's throughput on updates about
    /// 25-fold (10,000 updates: 3 s with it, 0.12 s without). Turn it off only with a codec
    /// whose [`tombstone`](Codec::tombstone) builds an object from its key: a delete then
    /// carries that tombstone (its key and the delete's revision), and without a tombstone a
    /// delete is reported as a decode error and never reaches the cache.
    pub fn with_prev_kv(mut self, prev_kv: bool) -> Self {
        self.prev_kv = prev_kv;
        self
    }

    /// Sets the largest gRPC message accepted ([`DEFAULT_MAX_MESSAGE_SIZE`]). A list page
    /// larger than this fails with [`SourceErrorKind::Other`]. (Watches ask etcd to split
    /// large batches of events into fragments of about its `--max-request-bytes`.)
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The watched prefix.
    pub fn prefix(&self) -> &str {
        &self.decoder.prefix
    }

    /// The etcd client (cheap to clone).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl<T, C> fmt::Debug for EtcdListWatch<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdListWatch")
            .field("prefix", &self.decoder.prefix)
            .field("key_mapping", &self.decoder.key_mapping)
            .field("page_size", &self.page_size)
            .field("max_message_size", &self.max_message_size)
            .field("prev_kv", &self.prev_kv)
            .finish_non_exhaustive()
    }
}

impl<T: Object, C: Codec<T>> ListerWatcher<T> for EtcdListWatch<T, C> {
    fn list(&self, options: ListOptions) -> BoxFuture<'_, Result<ObjectList<T>, SourceError>> {
        Box::pin(self.list_pages(options))
    }

    fn watch(&self, options: ListOptions) -> BoxFuture<'_, Result<WatchStream<T>, SourceError>> {
        Box::pin(self.open_watch(options))
    }
}

fn other(message: impl Into<String>) -> SourceError {
    SourceError::new(SourceErrorKind::Other, message)
}

fn reject_unsupported(options: &ListOptions) -> Result<(), SourceError> {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if set(&options.label_selector) || set(&options.field_selector) {
        return Err(other(
            "the etcd source does not support label or field selectors",
        ));
    }
    Ok(())
}

/// The requested version as a revision: `None` for none (or an empty string).
fn requested_revision(options: &ListOptions) -> Result<Option<i64>, SourceError> {
    match options.resource_version.as_ref().map(|rv| rv.as_str()) {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse::<i64>()
            .ok()
            .filter(|r| *r >= 0)
            .map(Some)
            .ok_or_else(|| other(format!("resource version {rv:?} is not an etcd revision"))),
    }
}

fn revision_of(
    header: Option<&etcd_client::ResponseHeader>,
    what: &str,
) -> Result<i64, SourceError> {
    header
        .map(|h| h.revision())
        .filter(|r| *r > 0)
        .ok_or_else(|| other(format!("etcd {what}: the response carries no revision")))
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl<T: Object, C: Codec<T>> EtcdListWatch<T, C> {
    async fn list_pages(&self, options: ListOptions) -> Result<ObjectList<T>, SourceError> {
        reject_unsupported(&options)?;
        let d = &self.decoder;
        let caller_limit = options.limit.filter(|l| *l > 0);
        // Where to start, at which revision (0: the latest), whether the first read may be
        // served from a member's local state, and the oldest revision acceptable.
        let (mut start, mut revision, mut serializable, not_older_than) =
            match &options.continue_token {
                Some(token) if !token.is_empty() => {
                    let c = Continue::decode(token, d.prefix.as_bytes(), &d.range_end)
                        .map_err(other)?;
                    (c.next_key, c.revision, false, None)
                }
                _ => {
                    let start = d.prefix.as_bytes().to_vec();
                    match (requested_revision(&options)?, options.version_match) {
                        (None, _) => (start, 0, false, None),
                        (Some(0), _) => (start, 0, true, None),
                        (Some(r), VersionMatch::Exact) => (start, r, false, None),
                        (Some(r), VersionMatch::Unset) if caller_limit.is_some() => {
                            (start, r, false, None)
                        }
                        (Some(r), _) => (start, 0, false, Some(r)),
                    }
                }
            };
        let mut page_size = caller_limit.unwrap_or(self.page_size);
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(self.max_message_size);
        let mut list = ObjectList::new(Vec::new(), None);
        loop {
            let mut get = GetOptions::new()
                .with_range(d.range_end.to_vec())
                .with_limit(i64::from(page_size));
            if revision > 0 {
                get = get.with_revision(revision);
            }
            if serializable {
                get = get.with_serializable();
            }
            let mut page = match kv.get(start.clone(), Some(get)).await {
                Ok(page) => page,
                // A page larger than the message limit: read it again, half as long.
                Err(e) if page_size > 1 && is_too_large(&e) => {
                    page_size = (page_size / 2).max(1);
                    continue;
                }
                Err(e) => return Err(from_etcd(e, "list")),
            };
            if revision == 0 {
                // Every later page is read at the revision of the first.
                revision = revision_of(page.header(), "list")?;
                if let Some(min) = not_older_than.filter(|min| *min > revision) {
                    return Err(SourceError::new(
                        SourceErrorKind::TooLargeResourceVersion,
                        format!("resource version {min} is newer than etcd's revision {revision}"),
                    ));
                }
            }
            serializable = false;
            let more = page.more();
            let kvs = page.take_kvs();
            let next = kvs.last().map(|kv| key_after(kv.key()));
            list.items.reserve(kvs.len());
            for kv in &kvs {
                match d.decode_put(kv) {
                    Ok(Some(object)) => list.items.push(Arc::new(object)),
                    Ok(None) => {}
                    Err(e) => list.skipped.push(e),
                }
            }
            match next {
                Some(next_key) if more => {
                    if caller_limit.is_some() {
                        list.continue_token = Some(Continue { revision, next_key }.encode());
                        break;
                    }
                    start = next_key;
                }
                _ => break,
            }
        }
        list.resource_version = Some(to_u64(revision).into());
        Ok(list)
    }

    async fn open_watch(&self, options: ListOptions) -> Result<WatchStream<T>, SourceError> {
        reject_unsupported(&options)?;
        if options.send_initial_events {
            return Err(other(
                "the etcd source has no streaming initial list: list, then watch",
            ));
        }
        let d = &self.decoder;
        let from = requested_revision(&options)?.unwrap_or(0);
        // Fragments: a watch that catches up on a long history could otherwise get one
        // response larger than any message limit. Each fragment's events are handled as they
        // come, in order.
        let mut watch = WatchOptions::new()
            .with_range(d.range_end.to_vec())
            .with_fragment();
        if self.prev_kv {
            watch = watch.with_prev_key();
        }
        if from > 0 {
            watch = watch.with_start_revision(from.saturating_add(1));
        }
        if options.allow_bookmarks {
            watch = watch.with_progress_notify();
        }
        let stream = self
            .client
            .watch_client()
            .max_decoding_message_size(self.max_message_size)
            .watch(d.prefix.as_bytes(), Some(watch))
            .await
            .map_err(|e| from_etcd(e, "watch"))?;
        let state = Watching {
            stream,
            decoder: d.clone(),
            pending: VecDeque::new(),
            watch_id: None,
            from,
            reached: from,
            allow_bookmarks: options.allow_bookmarks,
            deadline: options.timeout.map(|t| tokio::time::Instant::now() + t),
            done: false,
            _objects: PhantomData,
        };
        Ok(Box::pin(futures::stream::unfold(state, Watching::next)))
    }
}

impl<C> Decoder<C> {
    /// The object under `kv` (a listed key or a put), `None` for a key the mapping skips.
    fn decode_put<T>(&self, kv: &KeyValue) -> Result<Option<T>, SourceError>
    where
        C: Codec<T>,
    {
        let etcd_key = etcd_key(kv)?;
        let Some(key) = self.key_mapping.map(etcd_key, &self.prefix) else {
            return Ok(None);
        };
        let meta = Meta {
            etcd_key,
            key: &key,
            mod_revision: to_u64(kv.mod_revision()),
            create_revision: to_u64(kv.create_revision()),
            version: to_u64(kv.version()),
        };
        self.codec.decode(kv.value(), &meta).map(Some).map_err(|e| {
            SourceError::decode(
                etcd_key,
                format!(
                    "the value at etcd key {etcd_key} (object {key}, revision {}) does not decode: {e}",
                    meta.mod_revision
                ),
            )
        })
    }

    /// The deleted object: the last state carried by the delete (`prev`), stamped with the
    /// delete's revision, or the codec's tombstone when that state is missing or bad.
    fn decode_delete<T>(
        &self,
        kv: &KeyValue,
        prev: Option<&KeyValue>,
    ) -> Result<Option<T>, SourceError>
    where
        C: Codec<T>,
    {
        let etcd_key = etcd_key(kv)?;
        let Some(key) = self.key_mapping.map(etcd_key, &self.prefix) else {
            return Ok(None);
        };
        self.last_state(etcd_key, &key, kv.mod_revision(), prev)
            .map(Some)
            .map_err(|why| {
                SourceError::decode(
                    etcd_key,
                    format!(
                        "etcd key {etcd_key} (object {key}) was deleted at revision {}, but {why} \
                         and the codec builds no tombstone",
                        kv.mod_revision()
                    ),
                )
            })
    }

    /// What a put whose value does not decode removes: the key's last state (`prev`), stamped
    /// with the put's revision, or the codec's tombstone. `None` when there is neither, or when
    /// the put created the key (nothing of it can be cached).
    fn replaced_by_undecodable<T>(&self, kv: &KeyValue, prev: Option<&KeyValue>) -> Option<T>
    where
        C: Codec<T>,
    {
        if kv.version() <= 1 {
            return None;
        }
        let etcd_key = kv.key_str().ok()?;
        let key = self.key_mapping.map(etcd_key, &self.prefix)?;
        self.last_state(etcd_key, &key, kv.mod_revision(), prev)
            .ok()
    }

    /// The last state of the object under `etcd_key`, ended at `revision` (a delete, or a put
    /// that does not decode): `prev` decoded, else the codec's tombstone; otherwise why not.
    fn last_state<T>(
        &self,
        etcd_key: &str,
        key: &str,
        revision: i64,
        prev: Option<&KeyValue>,
    ) -> Result<T, String>
    where
        C: Codec<T>,
    {
        let meta = Meta {
            etcd_key,
            key,
            mod_revision: to_u64(revision),
            create_revision: prev.map_or(0, |p| to_u64(p.create_revision())),
            version: prev.map_or(0, |p| to_u64(p.version())),
        };
        let why = match prev {
            Some(prev) => match self.codec.decode(prev.value(), &meta) {
                Ok(object) => return Ok(object),
                Err(e) => format!("its last state does not decode: {e}"),
            },
            None => "etcd sent no last state for it".to_owned(),
        };
        self.codec.tombstone(&meta).ok_or(why)
    }
}

fn etcd_key(kv: &KeyValue) -> Result<&str, SourceError> {
    kv.key_str().map_err(|_| {
        let lossy = String::from_utf8_lossy(kv.key());
        SourceError::decode(lossy.clone(), format!("etcd key {lossy:?} is not UTF-8"))
    })
}

/// The state of one watch stream.
struct Watching<T, C> {
    stream: etcd_client::WatchStream,
    decoder: Decoder<C>,
    pending: VecDeque<Result<WatchEvent<T>, SourceError>>,
    /// Our watch's id, from etcd's `created` response.
    watch_id: Option<i64>,
    /// The revision the watch resumes after (0: now).
    from: i64,
    /// The highest revision this watch has reported: its start, its events, its bookmarks. A
    /// progress notification below it (a lagging or restarted member) is no bookmark.
    reached: i64,
    allow_bookmarks: bool,
    deadline: Option<tokio::time::Instant>,
    done: bool,
    _objects: PhantomData<fn() -> T>,
}

type Next<T, C> = Option<(Result<WatchEvent<T>, SourceError>, Watching<T, C>)>;

impl<T: Object, C: Codec<T>> Watching<T, C> {
    async fn next(mut self) -> Next<T, C> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let message = match self.deadline {
                Some(deadline) => tokio::select! {
                    m = self.stream.message() => m,
                    // The caller's timeout: a clean end, the reflector re-watches.
                    () = tokio::time::sleep_until(deadline) => return None,
                },
                None => self.stream.message().await,
            };
            match message {
                Ok(Some(response)) => self.on_response(&response),
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    self.pending.push_back(Err(from_etcd(e, "watch stream")));
                }
            }
        }
    }

    fn on_response(&mut self, response: &WatchResponse) {
        if response.canceled() {
            self.done = true;
            let error = if response.compact_revision() > 0 {
                SourceError::expired(format!(
                    "etcd canceled the watch from revision {}: compacted up to revision {}",
                    self.from,
                    response.compact_revision()
                ))
            } else {
                let reason = response.cancel_reason();
                let kind = if reason.contains("no leader") {
                    SourceErrorKind::ConnectionRefused
                } else {
                    SourceErrorKind::Other
                };
                SourceError::new(kind, format!("etcd canceled the watch: {reason:?}"))
            };
            self.pending.push_back(Err(error));
            return;
        }
        if response.created() {
            self.watch_id = Some(response.watch_id());
        }
        let events = response.events();
        if events.is_empty() {
            // A progress notification of our own watch: every event up to its revision has
            // been sent. (A reply to an explicit progress request has watch id -1; we never
            // send one.) Below what the watch already reported (its start revision, an event),
            // it comes from a member that lags or restarted: passing it on would move the
            // reader's version backwards.
            let ours = self.watch_id == Some(response.watch_id());
            if self.allow_bookmarks
                && ours
                && !response.created()
                && let Some(revision) = response.header().map(|h| h.revision()).filter(|r| *r > 0)
                && revision >= self.reached
            {
                self.reached = revision;
                self.pending.push_back(Ok(WatchEvent::Bookmark {
                    resource_version: to_u64(revision).into(),
                    initial_events_end: false,
                }));
            }
            return;
        }
        for event in events {
            if let Some(kv) = event.kv() {
                self.reached = self.reached.max(kv.mod_revision());
            }
            let item = match (event.0.r#type, event.kv()) {
                (_, None) => Err(other("etcd sent a watch event without a key-value")),
                (PUT, Some(kv)) => match self.decoder.decode_put(kv) {
                    Ok(o) => Ok(o.map(|o| {
                        if kv.version() == 1 {
                            WatchEvent::Added(Arc::new(o))
                        } else {
                            WatchEvent::Modified(Arc::new(o))
                        }
                    })),
                    Err(e) => {
                        // The error is reported, and what the key held is removed: a relist
                        // leaves an undecodable value out, so the watch must not keep the
                        // older state either.
                        self.pending.push_back(Err(e));
                        Ok(self
                            .decoder
                            .replaced_by_undecodable(kv, event.prev_kv())
                            .map(|o| WatchEvent::Deleted(Arc::new(o))))
                    }
                },
                (DELETE, Some(kv)) => self
                    .decoder
                    .decode_delete(kv, event.prev_kv())
                    .map(|o| o.map(|o| WatchEvent::Deleted(Arc::new(o)))),
                (other_type, Some(kv)) => Err(SourceError::decode(
                    String::from_utf8_lossy(kv.key()),
                    format!("unknown etcd event type {other_type}"),
                )),
            };
            match item {
                Ok(Some(event)) => self.pending.push_back(Ok(event)),
                Ok(None) => {}
                Err(e) => self.pending.push_back(Err(e)),
            }
        }
    }
}
