use std::time::Duration;

use futures::{FutureExt, StreamExt};

use super::*;
use crate::test_support::{Item, item};

fn at(rv: u64) -> ListOptions {
    ListOptions {
        resource_version: Some(rv.into()),
        ..ListOptions::default()
    }
}

/// What a watch shows without waiting: a compact rendering of each ready item, and whether the
/// stream has ended.
fn ready(stream: &mut WatchStream<Item>) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    loop {
        match stream.next().now_or_never() {
            None => return (out, false),
            Some(None) => return (out, true),
            Some(Some(item)) => out.push(render(&item)),
        }
    }
}

fn render(item: &Item_) -> String {
    let rv = |o: &Item| o.rv.as_ref().map_or("-".into(), |rv| rv.to_string());
    match item {
        Ok(WatchEvent::Added(o)) => format!("A {}={}@{}", o.name, o.value, rv(o)),
        Ok(WatchEvent::Modified(o)) => format!("M {}={}@{}", o.name, o.value, rv(o)),
        Ok(WatchEvent::Deleted(o)) => format!("D {}@{}", o.name, rv(o)),
        Ok(WatchEvent::Bookmark {
            resource_version,
            initial_events_end,
        }) => format!(
            "B {resource_version}{}",
            if *initial_events_end { " end" } else { "" }
        ),
        Ok(WatchEvent::Error(e)) => format!("E {:?}", e.kind),
        Err(e) => format!("Err {:?} {}", e.kind, e.object.as_deref().unwrap_or("")),
    }
}

type Item_ = Result<WatchEvent<Item>, SourceError>;

fn names(list: &ObjectList<Item>) -> Vec<&str> {
    list.items.iter().map(|o| o.name.as_str()).collect()
}

#[tokio::test]
async fn versions_history_and_replay() {
    // client-go's TestRCNumber: an add and two modifies get versions 1..3.
    let source = MemorySource::new();
    assert_eq!(source.put(item("a", 1)), 2.into());
    assert_eq!(source.put(item("a", 2)), 3.into());
    assert_eq!(source.put(item("a", 3)), 4.into());

    let mut w1 = source.watch(at(2)).await.unwrap();
    let mut w2 = source.watch(at(3)).await.unwrap();
    let mut w3 = source.watch(at(4)).await.unwrap();
    assert_eq!(ready(&mut w1).0, ["M a=2@3", "M a=3@4"]);
    assert_eq!(ready(&mut w2).0, ["M a=3@4"]);
    assert_eq!(ready(&mut w3), (vec![], false));

    let list = source.list(ListOptions::default()).await.unwrap();
    assert_eq!(list.resource_version, Some(4.into()));
    assert_eq!(list.items[0].value, 3);

    // Live events reach every open watch; closing ends them.
    assert_eq!(source.open_watches(), 3);
    source.delete(&"a".to_string());
    assert_eq!(ready(&mut w3).0, ["D a@5"]);
    source.close_watches();
    assert_eq!(ready(&mut w1), (vec!["D a@5".into()], true));
    assert!(ready(&mut w2).1);
    assert!(ready(&mut w3).1);
    assert_eq!(source.open_watches(), 0);
}

#[tokio::test]
async fn deletes_carry_the_version_of_the_delete() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    assert_eq!(source.delete(&"a".to_string()), Some(3.into()));
    assert_eq!(source.delete(&"a".to_string()), None, "absent: no write");
    assert_eq!(source.resource_version(), 3.into());
    let mut w = source.watch(at(2)).await.unwrap();
    assert_eq!(ready(&mut w).0, ["D a@3"]);
}

#[tokio::test]
async fn reset_watches_makes_every_client_relist() {
    // client-go's TestResetWatch, with the version moved past every client's.
    let source = MemorySource::new();
    source.put(item("a", 1));
    source.put(item("b", 1));
    let mut open = source.watch(at(3)).await.unwrap();
    source.put_dropping_watch(item("c", 1));
    assert_eq!(
        ready(&mut open),
        (vec![], false),
        "a dropped write is not sent"
    );

    let rv = source.reset_watches();
    assert_eq!(rv, 5.into());
    assert!(ready(&mut open).1, "reset ends open watches");
    for from in [1, 3] {
        let err = source.watch(at(from)).await.err().unwrap();
        assert_eq!(err.kind, SourceErrorKind::Expired, "from {from}");
    }
    // A relist sees the dropped write; a watch from the list's version works.
    let list = source.list(at(4)).await.unwrap();
    assert_eq!(names(&list), ["a", "b", "c"]);
    let mut w = source.watch(at(5)).await.unwrap();
    source.put(item("d", 1));
    assert_eq!(ready(&mut w).0, ["A d=1@6"]);
}

#[tokio::test]
async fn dropped_writes_are_replayed_to_later_watches() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    let mut open = source.watch(at(2)).await.unwrap();
    source.put_dropping_watch(item("a", 2));
    source.delete_dropping_watch(&"a".to_string());
    assert_eq!(ready(&mut open), (vec![], false));
    let mut later = source.watch(at(2)).await.unwrap();
    assert_eq!(ready(&mut later).0, ["M a=2@3", "D a@4"]);
}

#[tokio::test]
async fn history_is_bounded_and_old_versions_expire() {
    let source = MemorySource::with_options(MemorySourceOptions::default().history_limit(3));
    for v in 1..=5 {
        source.put(item("a", v));
    }
    assert_eq!(source.compacted_resource_version(), 3.into());
    let err = source.watch(at(2)).await.err().unwrap();
    assert_eq!(err.kind, SourceErrorKind::Expired);
    assert!(err.message.contains("too old"), "{err}");
    let mut w = source.watch(at(3)).await.unwrap();
    assert_eq!(ready(&mut w).0, ["M a=3@4", "M a=4@5", "M a=5@6"]);

    // Compacting now: only the current version can still be watched.
    source.compact();
    assert!(source.watch(at(5)).await.err().unwrap().is_expired());
    assert!(source.watch(at(6)).await.is_ok());
}

#[tokio::test]
async fn versions_newer_than_the_source_are_too_large() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    let err = source.watch(at(10)).await.err().unwrap();
    assert_eq!(err.kind, SourceErrorKind::TooLargeResourceVersion);
    let err = source.list(at(10)).await.err().unwrap();
    assert_eq!(err.kind, SourceErrorKind::TooLargeResourceVersion);
    assert!(err.message.contains("Too large resource version"));
    let err = source
        .watch(ListOptions {
            resource_version: Some(10.into()),
            send_initial_events: true,
            allow_bookmarks: true,
            ..ListOptions::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::TooLargeResourceVersion);
    // Not a number: a typed error, no panic.
    let err = source
        .list(ListOptions {
            resource_version: Some("abc".into()),
            ..ListOptions::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::Other);
}

#[tokio::test]
async fn pages_stay_consistent_at_the_lists_version() {
    let source = MemorySource::new();
    for i in 0..10 {
        source.put(item(&format!("o{i}"), i));
    }
    let page = |token: Option<String>| ListOptions {
        limit: Some(4),
        continue_token: token,
        ..ListOptions::default()
    };
    let first = source.list(page(None)).await.unwrap();
    assert_eq!(names(&first), ["o0", "o1", "o2", "o3"]);
    assert_eq!(first.resource_version, Some(11.into()));

    // Writes between pages do not show in the list.
    source.put(item("o5", 500));
    source.delete(&"o8".to_string());
    source.put(item("o99", 1));

    let second = source
        .list(page(first.continue_token.clone()))
        .await
        .unwrap();
    assert_eq!(names(&second), ["o4", "o5", "o6", "o7"]);
    assert_eq!(
        second.items[1].value, 5,
        "the page is at the list's version"
    );
    assert_eq!(second.resource_version, Some(11.into()));
    let third = source
        .list(page(second.continue_token.clone()))
        .await
        .unwrap();
    assert_eq!(names(&third), ["o8", "o9"]);
    assert_eq!(third.continue_token, None);

    // A token is good for one page only.
    let err = source.list(page(first.continue_token)).await.err().unwrap();
    assert!(err.is_expired(), "{err}");
    let err = source
        .list(page(Some("garbage".into())))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::Other);
    // Unpaginated lists are current.
    let all = source.list(ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 10);
    assert_eq!(all.resource_version, Some(14.into()));
}

#[tokio::test]
async fn continue_tokens_older_than_the_history_expire() {
    let source = MemorySource::new();
    for i in 0..4 {
        source.put(item(&format!("o{i}"), i));
    }
    let first = source
        .list(ListOptions {
            limit: Some(2),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    source.put(item("o9", 9));
    source.compact();
    let err = source
        .list(ListOptions {
            limit: Some(2),
            continue_token: first.continue_token,
            ..ListOptions::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::Expired);
}

#[tokio::test]
async fn exact_lists_rebuild_an_older_state() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    source.put(item("b", 1));
    source.put(item("a", 2));
    source.delete(&"b".to_string());
    source.put(item("c", 1));
    let exact = |rv: u64| ListOptions {
        resource_version: Some(rv.into()),
        version_match: VersionMatch::Exact,
        ..ListOptions::default()
    };
    let at2 = source.list(exact(3)).await.unwrap();
    assert_eq!(names(&at2), ["a", "b"]);
    assert_eq!(at2.items[0].value, 1);
    assert_eq!(at2.resource_version, Some(3.into()));
    let at4 = source.list(exact(5)).await.unwrap();
    assert_eq!(names(&at4), ["a"]);
    assert_eq!(at4.items[0].value, 2);
    // Not-older-than gives the current state.
    assert_eq!(names(&source.list(at(3)).await.unwrap()), ["a", "c"]);
    source.compact();
    assert!(source.list(exact(3)).await.err().unwrap().is_expired());
}

#[tokio::test]
async fn watch_from_zero_starts_with_the_state() {
    let source = MemorySource::new();
    source.put(item("b", 1));
    source.put(item("a", 1));
    for from in [None, Some(ResourceVersion::from("0")), Some("".into())] {
        let mut w = source
            .watch(ListOptions {
                resource_version: from,
                ..ListOptions::default()
            })
            .await
            .unwrap();
        assert_eq!(
            ready(&mut w).0,
            ["A a=1@3", "A b=1@2"],
            "key order, not version order"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn streaming_initial_list_ends_with_a_bookmark() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    source.put(item("b", 1));
    let options = ListOptions {
        send_initial_events: true,
        allow_bookmarks: true,
        version_match: VersionMatch::NotOlderThan,
        ..ListOptions::default()
    };
    let mut w = source.watch(options.clone()).await.unwrap();
    source.put(item("c", 1));
    assert_eq!(
        ready(&mut w).0,
        ["A a=1@2", "A b=1@3", "B 3 end", "A c=1@4"]
    );
    assert!(source.supports_watch_list());
    let err = source
        .watch(ListOptions {
            allow_bookmarks: false,
            ..options
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, SourceErrorKind::Other);
    let no_stream =
        MemorySource::<Item>::with_options(MemorySourceOptions::default().watch_list(false));
    assert!(!no_stream.supports_watch_list());
}

#[tokio::test(start_paused = true)]
async fn bookmarks_come_at_the_interval_and_never_claim_unsent_events() {
    let config = MemorySourceOptions::default().bookmark_interval(Some(Duration::from_secs(5)));
    let source = MemorySource::with_options(config);
    source.put(item("a", 1));
    let bookmarks = ListOptions {
        resource_version: Some(2.into()),
        allow_bookmarks: true,
        ..ListOptions::default()
    };
    let mut w = source.watch(bookmarks).await.unwrap();
    let mut plain = source.watch(at(2)).await.unwrap();
    source.put(item("b", 1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ready(&mut w).0, ["A b=1@3"]);
    // The bookmark follows every event already sent, at the last sent version.
    source.put(item("c", 1));
    source.put_dropping_watch(item("d", 1));
    assert_eq!(w.next().await.map(|i| render(&i)).unwrap(), "A c=1@4");
    assert_eq!(w.next().await.map(|i| render(&i)).unwrap(), "B 4");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ready(&mut w).0, ["B 4"]);
    // A watch without bookmarks gets none.
    assert_eq!(ready(&mut plain).0, ["A b=1@3", "A c=1@4"]);

    // On demand, twice: duplicates.
    source.send_bookmarks();
    source.send_bookmarks();
    assert_eq!(ready(&mut w).0, ["B 4", "B 4"]);
}

#[tokio::test(start_paused = true)]
async fn watches_end_cleanly_at_their_timeout() {
    let source = MemorySource::<Item>::new();
    let mut w = source
        .watch(ListOptions {
            timeout: Some(Duration::from_secs(30)),
            resource_version: Some(0.into()),
            ..ListOptions::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    assert!(w.next().await.is_none());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn injected_faults() {
    let source = MemorySource::new();
    source.put(item("a", 1));

    source.fail_next_lists(2, SourceError::new(SourceErrorKind::Internal, "boom"));
    for _ in 0..2 {
        let err = source.list(ListOptions::default()).await.err().unwrap();
        assert_eq!(err.kind, SourceErrorKind::Internal);
    }
    assert!(source.list(ListOptions::default()).await.is_ok());

    source.fail_next_watches(
        1,
        SourceError::new(SourceErrorKind::TooManyRequests, "slow down"),
    );
    let err = source.watch(at(2)).await.err().unwrap();
    assert_eq!(err.kind, SourceErrorKind::TooManyRequests);
    assert_eq!(
        source.stats(),
        MemorySourceStats {
            lists: 3,
            watches: 1
        }
    );

    source.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let mut w = source.watch(at(2)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    source.set_delay(Duration::ZERO);

    // An error event ends the watch.
    source.send_error(SourceError::new(SourceErrorKind::Internal, "etcd is gone"));
    assert_eq!(ready(&mut w), (vec!["E Internal".into()], true));
    assert_eq!(source.open_watches(), 0);

    // Dropping a stream closes its watch.
    let w = source.watch(at(2)).await.unwrap();
    assert_eq!(source.open_watches(), 1);
    drop(w);
    assert_eq!(source.open_watches(), 0);
}

#[tokio::test]
async fn corrupt_entries_are_typed_decode_errors() {
    let source = MemorySource::new();
    source.put(item("a", 1));
    let mut w = source.watch(at(2)).await.unwrap();
    source.put_corrupt("raw/bad", "invalid character '}'");
    source.put(item("b", 1));
    assert_eq!(
        ready(&mut w).0,
        ["Err Decode raw/bad", "A b=1@4"],
        "the watch goes on"
    );

    let list = source.list(ListOptions::default()).await.unwrap();
    assert_eq!(names(&list), ["a", "b"]);
    assert_eq!(list.skipped.len(), 1);
    assert_eq!(list.skipped[0].object.as_deref(), Some("raw/bad"));

    let mut fresh = source.watch(ListOptions::default()).await.unwrap();
    assert_eq!(
        ready(&mut fresh).0,
        ["A a=1@2", "A b=1@4", "Err Decode raw/bad"]
    );
    assert!(source.remove_corrupt("raw/bad"));
    assert!(
        source
            .list(ListOptions::default())
            .await
            .unwrap()
            .skipped
            .is_empty()
    );
}

#[tokio::test]
async fn selectors_are_refused() {
    let source = MemorySource::<Item>::new();
    let options = ListOptions {
        label_selector: Some("app=web".into()),
        ..ListOptions::default()
    };
    assert_eq!(
        source.list(options.clone()).await.err().unwrap().kind,
        SourceErrorKind::Other
    );
    assert_eq!(
        source.watch(options).await.err().unwrap().kind,
        SourceErrorKind::Other
    );
}
