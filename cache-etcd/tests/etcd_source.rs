//! The etcd source against a real etcd that each test starts on loopback: lists, watches,
//! bookmarks, compaction, bad values, key mapping and codecs, failures.
//!
//! Without an `etcd` binary these tests print a notice and pass locally; under `CI=true` they
//! fail. Time here is real (a real server runs beside the test); every wait is bounded.

mod harness;

use std::time::Duration;

use cache_core::source::{
    ListOptions, ListerWatcher, ObjectList, SourceError, SourceErrorKind, VersionMatch, WatchEvent,
    WatchStream,
};
use cache_core::{Object, ResourceVersion};
use cache_etcd::etcd_client::Client;
use cache_etcd::{Codec, CodecError, EtcdListWatch, EtcdObject, KeyMapping, Meta};
use futures::StreamExt;
use harness::{Etcd, PROGRESS_NOTIFY_INTERVAL, compact, put_all};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "/t/items/";
/// A hang guard for every test: none should come near it.
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for one watch event that must come.
const EVENT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    name: String,
    node: String,
    #[serde(skip)]
    rev: u64,
}

impl Object for Item {
    type Key = String;
    fn key(&self) -> String {
        self.name.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        Some(self.rev.into())
    }
}

impl EtcdObject for Item {
    fn set_meta(&mut self, meta: &Meta<'_>) {
        self.rev = meta.mod_revision;
    }
}

fn json(name: &str, node: &str) -> Vec<u8> {
    serde_json::to_vec(&Item {
        name: name.into(),
        node: node.into(),
        rev: 0,
    })
    .unwrap()
}

async fn put(client: &mut Client, key: &str, value: impl Into<Vec<u8>>) -> u64 {
    let resp = client.put(key, value, None).await.expect("put");
    resp.header().unwrap().revision() as u64
}

async fn del(client: &mut Client, key: &str) -> u64 {
    let resp = client.delete(key, None).await.expect("delete");
    resp.header().unwrap().revision() as u64
}

fn rv(list: &ObjectList<Item>) -> u64 {
    list.resource_version
        .as_ref()
        .and_then(ResourceVersion::as_u64)
        .unwrap()
}

fn names(list: &ObjectList<Item>) -> Vec<String> {
    list.items
        .iter()
        .map(|i| format!("{}={}", i.name, i.node))
        .collect()
}

fn at(revision: u64, version_match: VersionMatch) -> ListOptions {
    ListOptions {
        resource_version: Some(revision.into()),
        version_match,
        ..ListOptions::default()
    }
}

fn watch_from(revision: u64) -> ListOptions {
    ListOptions {
        resource_version: Some(revision.into()),
        ..ListOptions::default()
    }
}

/// One line per watch item, so that sequences compare as a whole.
fn show(item: &Result<WatchEvent<Item>, SourceError>) -> String {
    match item {
        Ok(WatchEvent::Added(i)) => format!("added {}={} @{}", i.name, i.node, i.rev),
        Ok(WatchEvent::Modified(i)) => format!("modified {}={} @{}", i.name, i.node, i.rev),
        Ok(WatchEvent::Deleted(i)) => format!("deleted {}={} @{}", i.name, i.node, i.rev),
        Ok(WatchEvent::Bookmark {
            resource_version, ..
        }) => format!("bookmark @{resource_version}"),
        Ok(WatchEvent::Error(e)) | Err(e) => {
            format!("error {:?} {}", e.kind, e.object.as_deref().unwrap_or("-"))
        }
    }
}

async fn next<T: Object>(
    stream: &mut WatchStream<T>,
) -> Option<Result<WatchEvent<T>, SourceError>> {
    tokio::time::timeout(EVENT_LIMIT, stream.next())
        .await
        .expect("no watch item within the limit")
}

async fn next_shown(stream: &mut WatchStream<Item>) -> String {
    show(&next(stream).await.expect("the watch ended"))
}

/// Runs a test body against a fresh single etcd, or skips when there is none.
async fn with_etcd(test: &str, body: impl AsyncFnOnce(&mut Etcd, Client)) {
    let Some(mut etcd) = Etcd::start(test) else {
        return;
    };
    let client = etcd.client().await;
    tokio::time::timeout(TEST_LIMIT, body(&mut etcd, client))
        .await
        .expect("test hung");
}

#[tokio::test]
async fn a_list_reads_every_page_at_one_revision_and_only_its_prefix() {
    with_etcd("a_list_reads_every_page", async |_etcd, mut client| {
        let items = (0..50).map(|i| (format!("{PREFIX}{i:03}"), json(&format!("{i:03}"), "n1")));
        let last = put_all(&mut client, items).await as u64;
        // Neighbours of the prefix: the key equal to its range end, and another prefix.
        put(&mut client, "/t/items0", json("outside", "n1")).await;
        let newest = put(&mut client, "/t/other/x", json("other", "n1")).await;

        let source = EtcdListWatch::<Item>::new(client, PREFIX).with_page_size(7);
        let list = source.list(ListOptions::default()).await.unwrap();
        assert_eq!(list.items.len(), 50);
        let expected: Vec<String> = (0..50).map(|i| format!("{i:03}=n1")).collect();
        assert_eq!(
            names(&list),
            expected,
            "sorted by key, nothing outside the prefix"
        );
        assert_eq!(
            rv(&list),
            newest,
            "the list's version is the revision it was read at"
        );
        assert!(list.continue_token.is_none() && list.skipped.is_empty());
        // Each object's version is its key's mod_revision.
        assert_eq!(list.items.last().unwrap().rev, last);
        assert!(list.items.iter().all(|i| i.rev > 0 && i.rev <= last));
    })
    .await;
}

#[tokio::test]
async fn a_page_larger_than_a_message_is_read_again_in_halves() {
    with_etcd("a_page_larger_than_a_message", async |_etcd, mut client| {
        let big = "x".repeat(1000);
        let items = (0..300).map(|i| (format!("{PREFIX}{i:03}"), json(&format!("{i:03}"), &big)));
        put_all(&mut client, items).await;
        // 300 KB of values; messages of 64 KB at most.
        let source = EtcdListWatch::<Item>::new(client, PREFIX).with_max_message_size(64 << 10);
        let list = source.list(ListOptions::default()).await.unwrap();
        assert_eq!(list.items.len(), 300);
        let page = source
            .list(ListOptions {
                limit: Some(200),
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() < 200 && page.continue_token.is_some());
        // A page of one that is still too large is an error, not a loop.
        let tiny =
            EtcdListWatch::<Item>::new(source.client().clone(), PREFIX).with_max_message_size(100);
        let err = tiny.list(ListOptions::default()).await.unwrap_err();
        assert_eq!(err.kind, SourceErrorKind::Other, "{err}");
    })
    .await;
}

#[tokio::test]
async fn continue_tokens_keep_the_first_pages_revision() {
    with_etcd("continue_tokens_keep", async |_etcd, mut client| {
        let items = (0..25).map(|i| (format!("{PREFIX}{i:02}"), json(&format!("{i:02}"), "old")));
        put_all(&mut client, items).await;
        let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);
        let page = |token: Option<String>| ListOptions {
            limit: Some(10),
            continue_token: token,
            ..ListOptions::default()
        };

        let first = source.list(page(None)).await.unwrap();
        let revision = rv(&first);
        assert_eq!(first.items.len(), 10);
        // The collection changes between pages.
        put(&mut client, &format!("{PREFIX}15"), json("15", "new")).await;
        del(&mut client, &format!("{PREFIX}20")).await;
        put(&mut client, &format!("{PREFIX}99"), json("99", "new")).await;

        let second = source
            .list(page(first.continue_token.clone()))
            .await
            .unwrap();
        let third = source
            .list(page(second.continue_token.clone()))
            .await
            .unwrap();
        assert!(third.continue_token.is_none(), "the last page has no token");
        assert_eq!((rv(&second), rv(&third)), (revision, revision));
        let all: Vec<String> = [first, second, third].iter().flat_map(names).collect();
        let expected: Vec<String> = (0..25).map(|i| format!("{i:02}=old")).collect();
        assert_eq!(
            all, expected,
            "every page shows the collection as of the first"
        );

        // A token is checked, not trusted.
        let err = source
            .list(page(Some("7:2f6574632f".into())))
            .await
            .unwrap_err();
        assert_eq!(err.kind, SourceErrorKind::Other);
        assert!(err.message.contains("outside the listed prefix"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn lists_at_a_revision_and_both_out_of_range_errors() {
    with_etcd("lists_at_a_revision", async |_etcd, mut client| {
        let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
        put(&mut client, &format!("{PREFIX}a"), json("a", "n2")).await;
        let r3 = put(&mut client, &format!("{PREFIX}b"), json("b", "n1")).await;
        let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);

        let old = source.list(at(r1, VersionMatch::Exact)).await.unwrap();
        assert_eq!((names(&old), rv(&old)), (vec!["a=n1".to_owned()], r1));
        // Any state will do ("0"), or at least r3.
        let any = source.list(at(0, VersionMatch::Unset)).await.unwrap();
        assert_eq!(names(&any), ["a=n2", "b=n1"]);
        let fresh = source
            .list(at(r3, VersionMatch::NotOlderThan))
            .await
            .unwrap();
        assert_eq!(
            (names(&fresh), rv(&fresh)),
            (vec!["a=n2".to_owned(), "b=n1".to_owned()], r3)
        );

        // A token taken before a compaction.
        let paged = ListOptions {
            limit: Some(1),
            ..ListOptions::default()
        };
        let first = source.list(paged.clone()).await.unwrap();
        let r4 = put(&mut client, &format!("{PREFIX}c"), json("c", "n1")).await;
        compact(&mut client, r4 as i64).await;

        let err = source.list(at(r1, VersionMatch::Exact)).await.unwrap_err();
        assert_eq!(err.kind, SourceErrorKind::Expired, "{err}");
        assert!(err.is_expired());
        let next_page = ListOptions {
            continue_token: first.continue_token,
            ..paged
        };
        let err = source.list(next_page).await.unwrap_err();
        assert_eq!(
            err.kind,
            SourceErrorKind::Expired,
            "an expired continue token: {err}"
        );
        // The compacted revision itself is still readable.
        assert_eq!(
            rv(&source.list(at(r4, VersionMatch::Exact)).await.unwrap()),
            r4
        );

        for version_match in [VersionMatch::Exact, VersionMatch::NotOlderThan] {
            let err = source.list(at(r4 + 100, version_match)).await.unwrap_err();
            assert_eq!(
                err.kind,
                SourceErrorKind::TooLargeResourceVersion,
                "{version_match:?}: {err}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn requests_the_source_cannot_serve_are_typed_errors() {
    with_etcd("requests_the_source_cannot_serve", async |_etcd, client| {
        let source = EtcdListWatch::<Item>::new(client, PREFIX);
        let bad_version = ListOptions {
            resource_version: Some("abc".into()),
            ..ListOptions::default()
        };
        let selector = ListOptions {
            label_selector: Some("app=web".into()),
            ..ListOptions::default()
        };
        let streaming = ListOptions {
            send_initial_events: true,
            ..ListOptions::default()
        };
        for options in [bad_version.clone(), selector.clone()] {
            let err = source.list(options).await.unwrap_err();
            assert_eq!(err.kind, SourceErrorKind::Other, "{err}");
        }
        for options in [bad_version, selector, streaming] {
            let err = source.watch(options).await.err().expect("an error");
            assert_eq!(err.kind, SourceErrorKind::Other, "{err}");
        }
        assert!(!source.supports_watch_list());
    })
    .await;
}

#[tokio::test]
async fn a_watch_starts_after_the_list_and_a_delete_carries_the_last_state() {
    with_etcd(
        "a_watch_starts_after_the_list",
        async |_etcd, mut client| {
            put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
            let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);
            let list = source.list(ListOptions::default()).await.unwrap();
            let mut watch = source.watch(watch_from(rv(&list))).await.unwrap();

            let b1 = put(&mut client, &format!("{PREFIX}b"), json("b", "n1")).await;
            put(&mut client, "/t/other/b", json("b", "elsewhere")).await;
            let b2 = put(&mut client, &format!("{PREFIX}b"), json("b", "n2")).await;
            let gone = del(&mut client, &format!("{PREFIX}b")).await;
            let a2 = put(&mut client, &format!("{PREFIX}a"), json("a", "n3")).await;
            let b3 = put(&mut client, &format!("{PREFIX}b"), json("b", "n4")).await;

            let mut seen = Vec::new();
            for _ in 0..5 {
                seen.push(next_shown(&mut watch).await);
            }
            assert_eq!(
                seen,
                [
                    format!("added b=n1 @{b1}"),
                    format!("modified b=n2 @{b2}"),
                    // The last state, at the revision of the delete.
                    format!("deleted b=n2 @{gone}"),
                    format!("modified a=n3 @{a2}"),
                    // A key created again is added again.
                    format!("added b=n4 @{b3}"),
                ]
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_watch_from_an_old_revision_replays_what_followed_it() {
    with_etcd("a_watch_from_an_old_revision", async |_etcd, mut client| {
        let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
        let r2 = put(&mut client, &format!("{PREFIX}b"), json("b", "n1")).await;
        let r3 = put(&mut client, &format!("{PREFIX}a"), json("a", "n2")).await;
        let source = EtcdListWatch::<Item>::new(client, PREFIX);
        let mut watch = source.watch(watch_from(r1)).await.unwrap();
        assert_eq!(next_shown(&mut watch).await, format!("added b=n1 @{r2}"));
        assert_eq!(next_shown(&mut watch).await, format!("modified a=n2 @{r3}"));
    })
    .await;
}

#[tokio::test]
async fn progress_notifications_become_bookmarks_when_allowed() {
    with_etcd(
        "progress_notifications_become_bookmarks",
        async |_etcd, mut client| {
            let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
            let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);
            let mut with = source
                .watch(ListOptions {
                    allow_bookmarks: true,
                    ..watch_from(r1)
                })
                .await
                .unwrap();
            let mut without = source.watch(watch_from(r1)).await.unwrap();

            // Quiet: etcd reports progress at the current revision.
            assert_eq!(next_shown(&mut with).await, format!("bookmark @{r1}"));
            // Writes elsewhere move the revision; the next bookmark says so.
            let r2 = put(&mut client, "/t/other/x", json("x", "n1")).await;
            let bookmark = loop {
                let item = next_shown(&mut with).await;
                if item != format!("bookmark @{r1}") {
                    break item;
                }
            };
            assert_eq!(bookmark, format!("bookmark @{r2}"));
            let r3 = put(&mut client, &format!("{PREFIX}b"), json("b", "n1")).await;
            let after_event = loop {
                let item = next_shown(&mut with).await;
                if item != format!("bookmark @{r2}") {
                    break item;
                }
            };
            assert_eq!(after_event, format!("added b=n1 @{r3}"));

            // Without allow_bookmarks: the event, then nothing through several intervals.
            assert_eq!(next_shown(&mut without).await, format!("added b=n1 @{r3}"));
            let quiet = tokio::time::timeout(PROGRESS_NOTIFY_INTERVAL * 4, without.next()).await;
            assert!(
                quiet.is_err(),
                "unexpected item: {:?}",
                quiet.map(|i| i.as_ref().map(show))
            );
        },
    )
    .await;
}

#[tokio::test]
async fn progress_below_the_watch_start_is_no_bookmark() {
    // A member that lags behind the one the list came from reports progress below the revision
    // the watch starts from. A watch from a revision etcd has not reached yet shows the same: etcd
    // reports its current revision. Neither may become a bookmark, which would move the
    // reflector's version backwards.
    with_etcd(
        "progress_below_the_watch_start",
        async |_etcd, mut client| {
            let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
            let ahead = r1 + 3;
            let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);
            let mut watch = source
                .watch(ListOptions {
                    allow_bookmarks: true,
                    ..watch_from(ahead)
                })
                .await
                .unwrap();
            let quiet = tokio::time::timeout(PROGRESS_NOTIFY_INTERVAL * 4, watch.next()).await;
            assert!(
                quiet.is_err(),
                "progress at {r1} below the watch's start {ahead} came through: {:?}",
                quiet.map(|i| i.as_ref().map(show))
            );
            // Once etcd reaches the start, progress is reported again.
            let mut r = r1;
            while r < ahead {
                r = put(&mut client, "/t/other/x", json("x", "n1")).await;
            }
            assert_eq!(next_shown(&mut watch).await, format!("bookmark @{r}"));
        },
    )
    .await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_is_expired() {
    with_etcd(
        "a_watch_from_a_compacted_revision",
        async |_etcd, mut client| {
            let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
            put(&mut client, &format!("{PREFIX}a"), json("a", "n2")).await;
            let r3 = put(&mut client, &format!("{PREFIX}a"), json("a", "n3")).await;
            compact(&mut client, r3 as i64).await;
            let source = EtcdListWatch::<Item>::new(client, PREFIX);

            let mut watch = source.watch(watch_from(r1)).await.unwrap();
            let err = next(&mut watch).await.expect("an error").unwrap_err();
            assert_eq!(err.kind, SourceErrorKind::Expired, "{err}");
            assert!(
                err.message
                    .contains(&format!("compacted up to revision {r3}")),
                "{err}"
            );
            assert!(
                next(&mut watch).await.is_none(),
                "the watch ends after the error"
            );

            // From the compacted revision itself, the watch works.
            let mut watch = source.watch(watch_from(r3)).await.unwrap();
            let mut client2 = source.client().clone();
            let r4 = put(&mut client2, &format!("{PREFIX}a"), json("a", "n4")).await;
            assert_eq!(next_shown(&mut watch).await, format!("modified a=n4 @{r4}"));
        },
    )
    .await;
}

#[tokio::test]
async fn a_bad_value_is_reported_by_its_key_and_the_rest_goes_on() {
    with_etcd("a_bad_value_is_reported", async |_etcd, mut client| {
        put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
        put(&mut client, &format!("{PREFIX}b"), "{not json").await;
        put(&mut client, &format!("{PREFIX}c"), json("c", "n1")).await;
        let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);

        let list = source.list(ListOptions::default()).await.unwrap();
        assert_eq!(names(&list), ["a=n1", "c=n1"]);
        assert_eq!(list.skipped.len(), 1);
        let skipped = &list.skipped[0];
        assert_eq!(skipped.kind, SourceErrorKind::Decode);
        assert_eq!(skipped.object.as_deref(), Some("/t/items/b"));
        assert!(skipped.message.contains("/t/items/b"), "{skipped}");

        let mut watch = source.watch(watch_from(rv(&list))).await.unwrap();
        put(
            &mut client,
            &format!("{PREFIX}d"),
            br#"{"name":"d"}"#.to_vec(),
        )
        .await;
        let e = put(&mut client, &format!("{PREFIX}e"), json("e", "n1")).await;
        // A key whose last state never decoded: the delete cannot name an object to remove.
        del(&mut client, &format!("{PREFIX}b")).await;
        let gone = del(&mut client, &format!("{PREFIX}a")).await;

        let first = next(&mut watch).await.unwrap().unwrap_err();
        assert_eq!(
            (first.kind, first.object.as_deref()),
            (SourceErrorKind::Decode, Some("/t/items/d"))
        );
        assert!(first.message.contains("missing field `node`"), "{first}");
        assert_eq!(next_shown(&mut watch).await, format!("added e=n1 @{e}"));
        let undecodable_delete = next(&mut watch).await.unwrap().unwrap_err();
        assert_eq!(undecodable_delete.object.as_deref(), Some("/t/items/b"));
        assert!(
            undecodable_delete.message.contains("was deleted"),
            "{undecodable_delete}"
        );
        assert_eq!(
            next_shown(&mut watch).await,
            format!("deleted a=n1 @{gone}")
        );
    })
    .await;
}

#[tokio::test]
async fn an_undecodable_put_is_reported_and_removes_the_object() {
    with_etcd("an_undecodable_put_removes", async |_etcd, mut client| {
        put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
        put(&mut client, "/t/nodes/a", "n1").await;
        let r1 = put(&mut client, "/t/nodes/b", "n1").await;
        let source = EtcdListWatch::<Item>::new(client.clone(), PREFIX);
        let mut watch = source.watch(watch_from(r1)).await.unwrap();
        // Without etcd's previous values: the codec's tombstone names the object, or nothing does.
        let with_tombstones = EtcdListWatch::<Item>::new(client.clone(), "/t/nodes/")
            .with_codec(NodeName)
            .with_prev_kv(false);
        let mut tombstone_watch = with_tombstones.watch(watch_from(r1)).await.unwrap();
        let without = EtcdListWatch::<Item>::new(client.clone(), "/t/nodes/").with_prev_kv(false);
        let mut json_watch = without.watch(watch_from(r1)).await.unwrap();

        // A cached object's value stops decoding: the error, then its removal at that revision.
        let bad = put(&mut client, &format!("{PREFIX}a"), "{not json").await;
        assert_eq!(next_shown(&mut watch).await, "error Decode /t/items/a");
        assert_eq!(next_shown(&mut watch).await, format!("deleted a=n1 @{bad}"));
        // A new key that never decoded: nothing to remove.
        put(&mut client, &format!("{PREFIX}new"), "{not json").await;
        let c = put(&mut client, &format!("{PREFIX}c"), json("c", "n1")).await;
        assert_eq!(next_shown(&mut watch).await, "error Decode /t/items/new");
        assert_eq!(next_shown(&mut watch).await, format!("added c=n1 @{c}"));
        // A relist agrees: no a.
        let list = source.list(ListOptions::default()).await.unwrap();
        assert_eq!(names(&list), ["c=n1"]);

        let bad = put(&mut client, "/t/nodes/a", vec![0xff]).await;
        assert_eq!(
            next_shown(&mut tombstone_watch).await,
            "error Decode /t/nodes/a"
        );
        assert_eq!(
            next_shown(&mut tombstone_watch).await,
            format!("deleted a= @{bad}")
        );
        // JSON has no tombstone and etcd sent no previous value: only the error.
        let d = put(&mut client, "/t/nodes/d", json("d", "n1")).await;
        assert_eq!(next_shown(&mut json_watch).await, "error Decode /t/nodes/a");
        assert_eq!(
            next_shown(&mut json_watch).await,
            format!("added d=n1 @{d}")
        );
    })
    .await;
}

/// A codec for values that are a bare node name; the object's name comes from its key.
struct NodeName;

impl Codec<Item> for NodeName {
    fn decode(&self, value: &[u8], meta: &Meta<'_>) -> Result<Item, CodecError> {
        let node = std::str::from_utf8(value).map_err(CodecError::new)?;
        Ok(Item {
            name: meta.key.to_owned(),
            node: node.to_owned(),
            rev: meta.mod_revision,
        })
    }

    fn tombstone(&self, meta: &Meta<'_>) -> Option<Item> {
        Some(Item {
            name: meta.key.to_owned(),
            node: String::new(),
            rev: meta.mod_revision,
        })
    }
}

#[tokio::test]
async fn the_key_mapping_and_the_codec_are_the_users() {
    with_etcd(
        "the_key_mapping_and_the_codec",
        async |_etcd, mut client| {
            let prefix = "/t/pods/";
            put(&mut client, "/t/pods/ns1/a", "n1").await;
            put(&mut client, "/t/pods/ns1/a/status", "ready").await;
            put(&mut client, "/t/pods/ns1/b", vec![0xff, 0xfe]).await;
            put(&mut client, "/t/pods/ns2/c", "n2").await;
            // Objects are `namespace/name`; keys nested below them are not objects.
            let mapping = KeyMapping::custom(move |key| {
                let rest = key.strip_prefix(prefix)?;
                (rest.split('/').count() == 2).then(|| rest.to_owned())
            });
            let source = EtcdListWatch::<Item>::new(client.clone(), prefix)
                .with_key_mapping(mapping)
                .with_codec(NodeName);

            let list = source.list(ListOptions::default()).await.unwrap();
            assert_eq!(names(&list), ["ns1/a=n1", "ns2/c=n2"]);
            assert_eq!(list.skipped.len(), 1, "b is not UTF-8: {:?}", list.skipped);
            assert_eq!(list.skipped[0].object.as_deref(), Some("/t/pods/ns1/b"));

            let mut watch = source.watch(watch_from(rv(&list))).await.unwrap();
            del(&mut client, "/t/pods/ns1/a/status").await;
            // Its last state does not decode, but the codec builds a tombstone from the key.
            let gone = del(&mut client, "/t/pods/ns1/b").await;
            let c = put(&mut client, "/t/pods/ns2/c", "n3").await;
            assert_eq!(
                next_shown(&mut watch).await,
                format!("deleted ns1/b= @{gone}")
            );
            assert_eq!(
                next_shown(&mut watch).await,
                format!("modified ns2/c=n3 @{c}")
            );

            // The full etcd key as the object key.
            let source = EtcdListWatch::<Item>::new(client, prefix)
                .with_key_mapping(KeyMapping::full_key())
                .with_codec(NodeName);
            let list = source.list(ListOptions::default()).await.unwrap();
            assert_eq!(names(&list), ["/t/pods/ns1/a=n1", "/t/pods/ns2/c=n3"]);
        },
    )
    .await;
}

#[tokio::test]
async fn without_prev_kv_a_delete_carries_the_codecs_tombstone() {
    with_etcd("without_prev_kv", async |_etcd, mut client| {
        let r1 = put(&mut client, "/t/nodes/a", "n1").await;
        let with_tombstones = EtcdListWatch::<Item>::new(client.clone(), "/t/nodes/")
            .with_codec(NodeName)
            .with_prev_kv(false);
        let json = EtcdListWatch::<Item>::new(client.clone(), "/t/nodes/").with_prev_kv(false);
        let mut watch = with_tombstones.watch(watch_from(r1)).await.unwrap();
        let mut json_watch = json.watch(watch_from(r1)).await.unwrap();
        let r2 = put(&mut client, "/t/nodes/a", "n2").await;
        let gone = del(&mut client, "/t/nodes/a").await;
        assert_eq!(next_shown(&mut watch).await, format!("modified a=n2 @{r2}"));
        assert_eq!(next_shown(&mut watch).await, format!("deleted a= @{gone}"));
        // A codec without tombstones cannot name what the delete removes.
        assert_eq!(next_shown(&mut json_watch).await, "error Decode /t/nodes/a");
        let err = next(&mut json_watch).await.unwrap().unwrap_err();
        assert!(err.message.contains("etcd sent no last state"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_watch_catching_up_on_more_than_a_message_holds_arrives_whole() {
    with_etcd("a_watch_catching_up", async |_etcd, mut client| {
        let from = put(&mut client, "/t/start", "x").await;
        let big = "x".repeat(1000);
        let items = (0..4000).map(|i| (format!("{PREFIX}{i:04}"), json(&format!("{i:04}"), &big)));
        put_all(&mut client, items).await;
        // 4 MB of history, 2 MB per message at most: etcd must send it in fragments.
        let source = EtcdListWatch::<Item>::new(client, PREFIX).with_max_message_size(2 << 20);
        let mut watch = source.watch(watch_from(from)).await.unwrap();
        for i in 0..4000 {
            match next(&mut watch).await.expect("an event") {
                Ok(WatchEvent::Added(item)) => assert_eq!(item.name, format!("{i:04}")),
                other => panic!("event {i}: {}", show(&other)),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_watch_ends_cleanly_at_its_timeout() {
    with_etcd(
        "a_watch_ends_cleanly_at_its_timeout",
        async |_etcd, client| {
            let source = EtcdListWatch::<Item>::new(client, PREFIX);
            let mut watch = source
                .watch(ListOptions {
                    timeout: Some(Duration::from_millis(300)),
                    ..ListOptions::default()
                })
                .await
                .unwrap();
            assert!(next(&mut watch).await.is_none(), "a clean end, no error");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_a_connection_failure_not_an_expiry() {
    with_etcd(
        "a_dead_server_is_a_connection_failure",
        async |etcd: &mut Etcd, mut client| {
            let r1 = put(&mut client, &format!("{PREFIX}a"), json("a", "n1")).await;
            let source = EtcdListWatch::<Item>::new(etcd.member_client(0).await, PREFIX);
            let mut watch = source.watch(watch_from(r1)).await.unwrap();
            let r2 = put(&mut client, &format!("{PREFIX}a"), json("a", "n2")).await;
            assert_eq!(next_shown(&mut watch).await, format!("modified a=n2 @{r2}"));

            etcd.kill(0);
            let err = next(&mut watch).await.expect("an error").unwrap_err();
            assert_eq!(err.kind, SourceErrorKind::ConnectionRefused, "{err}");
            assert!(!err.is_expired());
            assert!(next(&mut watch).await.is_none());
            let err = source.list(ListOptions::default()).await.unwrap_err();
            assert_eq!(err.kind, SourceErrorKind::ConnectionRefused, "{err}");
            let err = source.watch(watch_from(r2)).await.err().expect("an error");
            assert_eq!(err.kind, SourceErrorKind::ConnectionRefused, "{err}");
        },
    )
    .await;
}
