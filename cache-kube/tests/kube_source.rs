//! `KubeListWatch` against the Kubernetes list and watch protocol, served over HTTP from
//! recorded responses (`tests/fixtures`).

mod support;

use std::time::Duration;

use cache_core::source::{
    ListOptions, ListerWatcher, SourceErrorKind, VersionMatch, WatchEvent, WatchStream,
};
use cache_core::{Object, ObjectKey, ResourceVersion};
use cache_kube::{KubeListWatch, KubeObject, object_key, resource_version};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use support::{ApiServer, Reply, within};

fn pods(server: &ApiServer) -> KubeListWatch<Pod> {
    KubeListWatch::new(Api::<Pod>::all(server.client()))
}

fn names<T: Object<Key = ObjectKey>>(items: &[std::sync::Arc<T>]) -> Vec<String> {
    items.iter().map(|o| o.key().to_string()).collect()
}

/// One line per event: "ADDED default/web-1 @1003", "BOOKMARK @1012 end", "ERROR Expired".
fn describe<T: Object<Key = ObjectKey>>(
    item: &Result<WatchEvent<T>, cache_core::source::SourceError>,
) -> String {
    let obj = |verb: &str, o: &T| {
        let rv = o
            .resource_version()
            .map(|rv| rv.to_string())
            .unwrap_or_default();
        format!("{verb} {} @{rv}", o.key())
    };
    match item {
        Ok(WatchEvent::Added(o)) => obj("ADDED", o),
        Ok(WatchEvent::Modified(o)) => obj("MODIFIED", o),
        Ok(WatchEvent::Deleted(o)) => obj("DELETED", o),
        Ok(WatchEvent::Bookmark {
            resource_version,
            initial_events_end,
        }) => format!(
            "BOOKMARK @{resource_version}{}",
            if *initial_events_end { " end" } else { "" }
        ),
        Ok(WatchEvent::Error(e)) => format!("ERROR {:?}", e.kind),
        Err(e) => format!("Err {:?} {}", e.kind, e.object.as_deref().unwrap_or("-")),
    }
}

async fn drain<T: Object<Key = ObjectKey>>(stream: WatchStream<T>) -> Vec<String> {
    within(stream.collect::<Vec<_>>())
        .await
        .iter()
        .map(describe)
        .collect()
}

#[tokio::test]
async fn paginated_list_follows_the_continue_token() {
    let server = ApiServer::start().await;
    server
        .on_list(Reply::fixture(200, "list-page-1.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"));
    let lw = pods(&server);

    let first = ListOptions {
        limit: Some(3),
        ..ListOptions::default()
    };
    let page1 = within(lw.list(first.clone())).await.unwrap();
    assert_eq!(
        names(&page1.items),
        [
            "default/web-7d4b9c8f6d-q8zmt",
            "default/web-7d4b9c8f6d-x2k9p",
            "shop/api-5f6c8d9b7-lw4rn"
        ]
    );
    assert_eq!(page1.resource_version, Some("1000".into()));
    let token = page1.continue_token.clone().expect("a continue token");
    assert!(page1.skipped.is_empty());

    let page2 = within(lw.list(ListOptions {
        continue_token: Some(token.clone()),
        ..first
    }))
    .await
    .unwrap();
    assert_eq!(names(&page2.items), ["shop/api-5f6c8d9b7-n7c2d"]);
    assert_eq!(page2.continue_token, None, "the last page has no token");
    // The whole object is kept, managed fields and all.
    assert_eq!(
        page2.items[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some("kind-worker3")
    );
    assert!(page2.items[0].metadata.managed_fields.is_some());

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.path == "/api/v1/pods" && !s.is_watch())
    );
    assert_eq!(seen[0].params(), [("limit", "3")]);
    assert_eq!(
        seen[1].params(),
        [("continue", token.as_str()), ("limit", "3")]
    );
}

#[tokio::test]
async fn list_at_a_version_sends_it_with_its_match() {
    let server = ApiServer::start().await;
    server.on_list(Reply::fixture(200, "list-page-2.json"));
    let lw = KubeListWatch::new(Api::<Pod>::namespaced(server.client(), "shop"));
    within(lw.list(ListOptions {
        resource_version: Some("0".into()),
        version_match: VersionMatch::NotOlderThan,
        limit: Some(500),
        label_selector: Some("app=api".into()),
        field_selector: Some("spec.nodeName=kind-worker3".into()),
        ..ListOptions::default()
    }))
    .await
    .unwrap();
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/api/v1/namespaces/shop/pods");
    assert_eq!(
        seen.params(),
        [
            ("fieldSelector", "spec.nodeName=kind-worker3"),
            ("labelSelector", "app=api"),
            ("limit", "500"),
            ("resourceVersion", "0"),
            ("resourceVersionMatch", "NotOlderThan"),
        ]
    );
}

fn watch_from(rv: &str) -> ListOptions {
    ListOptions {
        resource_version: Some(rv.into()),
        allow_bookmarks: true,
        timeout: Some(Duration::from_secs(337)),
        ..ListOptions::default()
    }
}

#[tokio::test]
async fn watch_yields_added_modified_deleted_and_bookmarks() {
    let server = ApiServer::start().await;
    server.on_watch(Reply::watch("watch-events.jsonl"));
    let lw = pods(&server);
    let stream = within(lw.watch(watch_from("1000"))).await.unwrap();
    assert_eq!(
        drain(stream).await,
        [
            "ADDED default/web-7d4b9c8f6d-5hvfc @1003",
            "MODIFIED default/web-7d4b9c8f6d-5hvfc @1005",
            "MODIFIED default/web-7d4b9c8f6d-q8zmt @1006",
            "DELETED default/web-7d4b9c8f6d-q8zmt @1008",
            "BOOKMARK @1012",
        ]
    );
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/api/v1/pods");
    assert_eq!(
        seen.params(),
        [
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", "1000"),
            ("timeoutSeconds", "337"),
            ("watch", "true"),
        ]
    );
    assert_eq!(seen.headers["accept-encoding"], "identity");
    assert_eq!(seen.headers["accept"], "application/json");
}

#[tokio::test]
async fn watch_events_arrive_while_the_response_is_still_open() {
    let server = ApiServer::start().await;
    let (tx, reply) = Reply::open();
    server.on_watch(reply);
    let lw = pods(&server);
    let mut stream = within(lw.watch(watch_from("1000"))).await.unwrap();
    let lines = support::fixture_lines("watch-events.jsonl");

    // An event split across two chunks is still one event.
    let (head, tail) = lines[0].split_at(100);
    tx.send(head.to_owned()).unwrap();
    tx.send(tail.to_owned()).unwrap();
    let first = within(stream.next()).await.unwrap();
    assert_eq!(describe(&first), "ADDED default/web-7d4b9c8f6d-5hvfc @1003");

    tx.send(lines[4].clone()).unwrap();
    let second = within(stream.next()).await.unwrap();
    assert_eq!(describe(&second), "BOOKMARK @1012");

    drop(tx); // the server ends the watch (its timeout)
    assert!(within(stream.next()).await.is_none(), "a clean end");
}

#[tokio::test]
async fn gone_in_the_middle_of_a_watch_is_expired_and_ends_it() {
    let server = ApiServer::start().await;
    server.on_watch(Reply::watch("watch-gone.jsonl"));
    let lw = pods(&server);
    let stream = within(lw.watch(watch_from("1000"))).await.unwrap();
    assert_eq!(
        drain(stream).await,
        ["MODIFIED shop/api-5f6c8d9b7-lw4rn @1004", "ERROR Expired"]
    );
}

#[tokio::test]
async fn a_bad_object_is_named_and_the_watch_goes_on() {
    let server = ApiServer::start().await;
    server.on_watch(Reply::watch("watch-bad-object.jsonl"));
    let lw = pods(&server);
    let items = within(
        within(lw.watch(watch_from("1000")))
            .await
            .unwrap()
            .collect::<Vec<_>>(),
    )
    .await;
    let described: Vec<_> = items.iter().map(describe).collect();
    assert_eq!(
        described,
        [
            "ADDED default/web-7d4b9c8f6d-5hvfc @1001",
            "Err Decode shop/api-5f6c8d9b7-n7c2d",
            "DELETED default/web-7d4b9c8f6d-x2k9p @1004",
        ]
    );
    let err = items[1].as_ref().unwrap_err();
    assert!(err.message.contains("Pod"), "{}", err.message);
    assert!(err.message.contains("invalid type"), "{}", err.message);
}

#[tokio::test]
async fn error_responses_map_to_source_error_kinds() {
    let server = ApiServer::start().await;
    let cases = [
        ("status-410.json", 410, SourceErrorKind::Expired),
        ("status-429.json", 429, SourceErrorKind::TooManyRequests),
        (
            "status-504-too-large-rv.json",
            504,
            SourceErrorKind::TooLargeResourceVersion,
        ),
        ("status-500.json", 500, SourceErrorKind::Internal),
        ("status-422-watch-list.json", 422, SourceErrorKind::Other),
    ];
    let lw = pods(&server);
    for (file, code, kind) in cases {
        server.on_list(Reply::fixture(code, file));
        let err = within(lw.list(ListOptions::default())).await.unwrap_err();
        assert_eq!(err.kind, kind, "list answered by {file}");

        server.on_watch(Reply::fixture(code, file));
        let err = match within(lw.watch(watch_from("1000"))).await {
            Ok(_) => panic!("watch answered by {file} must fail"),
            Err(e) => e,
        };
        assert_eq!(err.kind, kind, "watch answered by {file}");
        assert!(err.message.contains(&code.to_string()), "{}", err.message);
    }
    // A plain-text error (a proxy in the way) is still a typed error.
    server.on_list(Reply::Json(429, "slow down".into()));
    let err = within(lw.list(ListOptions::default())).await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::TooManyRequests);
}

#[tokio::test]
async fn a_body_that_is_not_a_list_is_a_typed_error() {
    let server = ApiServer::start().await;
    server.on_list(Reply::Json(
        200,
        "<html>upstream connect error</html>".into(),
    ));
    let err = within(pods(&server).list(ListOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::Other);
    assert!(
        err.message.contains("not a Kubernetes list"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn connection_refused_is_its_own_kind() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = support::client_for(&format!("http://127.0.0.1:{port}"));
    let lw = KubeListWatch::new(Api::<Pod>::all(client));
    let err = within(lw.list(ListOptions::default())).await.unwrap_err();
    assert_eq!(err.kind, SourceErrorKind::ConnectionRefused, "{err}");
    let err = match within(lw.watch(watch_from("1"))).await {
        Ok(_) => panic!("nothing listens"),
        Err(e) => e,
    };
    assert_eq!(err.kind, SourceErrorKind::ConnectionRefused, "{err}");
}

#[tokio::test]
async fn streaming_initial_list_ends_at_the_annotated_bookmark() {
    let server = ApiServer::start().await;
    server.on_watch(Reply::watch("watch-list.jsonl"));
    let lw = pods(&server).streaming_list(true);
    assert!(lw.supports_watch_list());
    let stream = within(lw.watch(ListOptions {
        send_initial_events: true,
        allow_bookmarks: true,
        version_match: VersionMatch::NotOlderThan,
        timeout: Some(Duration::from_secs(301)),
        ..ListOptions::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        drain(stream).await,
        [
            "ADDED default/web-7d4b9c8f6d-x2k9p @951",
            "ADDED shop/api-5f6c8d9b7-lw4rn @962",
            "ADDED shop/api-5f6c8d9b7-n7c2d @977",
            "BOOKMARK @1000 end",
            "MODIFIED shop/api-5f6c8d9b7-n7c2d @1002",
        ]
    );
    assert_eq!(
        server.seen()[0].params(),
        [
            ("allowWatchBookmarks", "true"),
            ("resourceVersionMatch", "NotOlderThan"),
            ("sendInitialEvents", "true"),
            ("timeoutSeconds", "301"),
            ("watch", "true"),
        ]
    );
    assert!(lw.supports_watch_list(), "still offered after a success");
}

#[tokio::test]
async fn a_rejected_streaming_list_is_not_offered_again() {
    let server = ApiServer::start().await;
    server
        .on_watch(Reply::fixture(422, "status-422-watch-list.json"))
        .on_list(Reply::fixture(200, "list-page-2.json"));
    let lw = pods(&server).streaming_list(true);
    let err = match within(lw.watch(ListOptions {
        send_initial_events: true,
        allow_bookmarks: true,
        ..ListOptions::default()
    }))
    .await
    {
        Ok(_) => panic!("the server rejects sendInitialEvents"),
        Err(e) => e,
    };
    assert_eq!(err.kind, SourceErrorKind::Other);
    assert!(err.message.contains("sendInitialEvents"), "{}", err.message);
    assert!(!lw.supports_watch_list(), "the reflector lists from now on");
    // ...and the list it falls back to works.
    let page = within(lw.list(ListOptions::default())).await.unwrap();
    assert_eq!(page.items.len(), 1);

    // A plain watch failing does not turn the streaming list off.
    let other = pods(&server).streaming_list(true);
    server.on_watch(Reply::fixture(422, "status-422-watch-list.json"));
    assert!(within(other.watch(watch_from("5"))).await.is_err());
    assert!(other.supports_watch_list());
}

/// A compact pod of our own: what a controller reads, and nothing else.
#[derive(Debug)]
struct SlimPod {
    key: ObjectKey,
    rv: Option<ResourceVersion>,
    node: String,
    owner: Option<String>,
}

impl Object for SlimPod {
    type Key = ObjectKey;
    fn key(&self) -> ObjectKey {
        self.key.clone()
    }
    fn resource_version(&self) -> Option<ResourceVersion> {
        self.rv.clone()
    }
}

fn slim(pod: Pod) -> Result<SlimPod, String> {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or("not scheduled")?;
    Ok(SlimPod {
        key: object_key(&pod).ok_or("no name")?,
        rv: resource_version(&pod),
        node,
        owner: pod
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| o.name),
    })
}

#[tokio::test]
async fn map_caches_a_compact_type_and_names_objects_it_rejects() {
    let server = ApiServer::start().await;
    let mut page = support::fixture("list-page-1.json");
    // Unschedule one pod: the transform rejects it.
    page = page.replacen("\"nodeName\":\"kind-worker2\"", "\"priority\":0", 1);
    server.on_list(Reply::Json(200, page));
    server.on_watch(Reply::watch("watch-events.jsonl"));
    let lw = pods(&server).map(slim);

    let page = within(lw.list(ListOptions::default())).await.unwrap();
    assert_eq!(
        names(&page.items),
        ["default/web-7d4b9c8f6d-x2k9p", "shop/api-5f6c8d9b7-lw4rn"]
    );
    assert_eq!(page.items[0].node, "kind-worker");
    assert_eq!(page.items[0].owner.as_deref(), Some("web-7d4b9c8f6d"));
    assert_eq!(page.items[1].rv, Some("962".into()));
    assert_eq!(page.skipped.len(), 1);
    assert_eq!(
        page.skipped[0].object.as_deref(),
        Some("default/web-7d4b9c8f6d-q8zmt")
    );
    assert!(page.skipped[0].message.contains("not scheduled"));

    let stream = within(lw.watch(watch_from("1000"))).await.unwrap();
    assert_eq!(drain(stream).await.len(), 5, "the watch maps too");
}

/// A derived type whose transform leaves the version to the source.
#[derive(Debug, cache_core::Indexed)]
struct DerivedPod {
    #[key]
    key: ObjectKey,
    #[resource_version]
    rv: Option<ResourceVersion>,
}

#[tokio::test]
async fn map_sets_the_resource_version_field_from_the_metadata() {
    let server = ApiServer::start().await;
    server.on_list(Reply::Json(200, support::fixture("list-page-1.json")));
    server.on_watch(Reply::watch("watch-events.jsonl"));
    let lw = pods(&server).map(|pod: Pod| {
        Ok::<_, &str>(DerivedPod {
            key: object_key(&pod).ok_or("no name")?,
            rv: None,
        })
    });

    let page = within(lw.list(ListOptions::default())).await.unwrap();
    let versions: Vec<_> = page.items.iter().map(|p| p.rv.clone()).collect();
    assert_eq!(
        versions,
        [Some("957".into()), Some("951".into()), Some("962".into())]
    );
    let stream = within(lw.watch(watch_from("1000"))).await.unwrap();
    assert_eq!(
        drain(stream).await,
        [
            "ADDED default/web-7d4b9c8f6d-5hvfc @1003",
            "MODIFIED default/web-7d4b9c8f6d-5hvfc @1005",
            "MODIFIED default/web-7d4b9c8f6d-q8zmt @1006",
            "DELETED default/web-7d4b9c8f6d-q8zmt @1008",
            "BOOKMARK @1012",
        ]
    );
}

#[tokio::test]
async fn custom_resources_through_dynamic_objects() {
    let server = ApiServer::start().await;
    let gvk = GroupVersionKind::gvk("shop.example.com", "v1", "Order");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "orders");
    server.on_list(Reply::Json(
        200,
        r#"{"apiVersion":"shop.example.com/v1","kind":"OrderList","metadata":{"resourceVersion":"88"},
            "items":[{"apiVersion":"shop.example.com/v1","kind":"Order","metadata":{"name":"o-1","namespace":"shop","resourceVersion":"80"},"spec":{"sku":"tea","qty":2}}]}"#
            .into(),
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "shop", &resource);
    let lw = KubeListWatch::new(api);
    let page = within(lw.list(ListOptions::default())).await.unwrap();
    assert_eq!(names(&page.items), ["shop/o-1"]);
    assert_eq!(page.items[0].data["spec"]["qty"], 2);
    assert_eq!(
        server.seen()[0].path,
        "/apis/shop.example.com/v1/namespaces/shop/orders"
    );
}

#[tokio::test]
async fn metadata_only_requests_ask_for_partial_objects() {
    let server = ApiServer::start().await;
    server.on_list(Reply::Json(
        200,
        r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},
            "items":[{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"web","namespace":"default","resourceVersion":"5"}}]}"#
            .into(),
    ));
    server.on_watch(Reply::Lines(vec![]));
    let lw = KubeListWatch::new(Api::<PartialObjectMeta<Pod>>::all(server.client()));
    let page = within(lw.list(ListOptions::default())).await.unwrap();
    assert_eq!(names(&page.items), ["default/web"]);
    drain(within(lw.watch(watch_from("7"))).await.unwrap()).await;
    let seen = server.seen();
    assert_eq!(
        seen[0].headers["accept"],
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    );
    assert_eq!(
        seen[1].headers["accept"],
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );
}

#[test]
fn whole_objects_are_keyed_by_namespace_and_name() {
    let pod: Pod = serde_json::from_str(&support::fixture_lines("watch-events.jsonl")[0])
        .map(|v: serde_json::Value| serde_json::from_value(v["object"].clone()).unwrap())
        .unwrap();
    let obj = KubeObject::new(pod).unwrap();
    assert_eq!(obj.key(), ObjectKey::new("default", "web-7d4b9c8f6d-5hvfc"));
    assert_eq!(obj.resource_version(), Some("1003".into()));
}
