//! The `kube_controller` example, run against a real kube-apiserver: its reconciles write a
//! label through the API, and the server holds it.

mod apiserver;

// The example's own file: the test calls its `run` with a client of the test server.
#[path = "../../examples/examples/kube_controller.rs"]
mod kube_controller;

use std::time::Duration;

use apiserver::KubeApiServer;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube_controller::{POOL_LABEL, pool_of};
use tokio_util::sync::CancellationToken;

fn pod(name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(Into::into),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// The server's pods as `(name, node, pool label)`, sorted.
async fn labels_on_server(api: &Api<Pod>) -> Vec<(String, Option<String>, Option<String>)> {
    let mut pods: Vec<_> = api
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name),
                p.metadata.labels.and_then(|mut l| l.remove(POOL_LABEL)),
            )
        })
        .collect();
    pods.sort();
    pods
}

async fn until_labelled(
    api: &Api<Pod>,
    expected: usize,
) -> Vec<(String, Option<String>, Option<String>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = labels_on_server(api).await;
        if pods.iter().filter(|(_, _, l)| l.is_some()).count() >= expected {
            return pods;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not labelled within 60 s: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kube_controller_example_labels_pods_on_the_server() {
    let Some(server) = KubeApiServer::for_test("kube_controller example").await else {
        return;
    };
    let client = server.client().await;
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("apps".into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), "apps");
    let nodes = ["pool-a-1", "pool-a-2", "pool-b-1", "gpu-7"];
    for i in 0..20 {
        let node = (i % 5 != 4).then(|| nodes[i % 4]);
        api.create(&PostParams::default(), &pod(&format!("p-{i:02}"), node))
            .await
            .unwrap();
    }

    let stop = CancellationToken::new();
    let controller = tokio::spawn(kube_controller::run(client.clone(), stop.clone()));

    // 16 of the 20 are scheduled: each gets its node's pool; the 4 pending ones get nothing.
    let pods = until_labelled(&api, 16).await;
    for (name, node, label) in &pods {
        match node {
            Some(node) => assert_eq!(label.as_deref(), Some(pool_of(node)), "{name}"),
            None => assert_eq!(label, &None, "{name} is not scheduled"),
        }
    }
    assert_eq!(
        pods.iter()
            .filter(|(_, _, l)| l.as_deref() == Some("pool-a"))
            .count(),
        8
    );

    // A pod created while it runs is labelled too, and a wrong label is corrected.
    api.create(&PostParams::default(), &pod("late", Some("gpu-9")))
        .await
        .unwrap();
    let patch = serde_json::json!({ "metadata": { "labels": { POOL_LABEL: "wrong" } } });
    api.patch(
        "p-00",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = labels_on_server(&api).await;
        let label = |name: &str| pods.iter().find(|p| p.0 == name).and_then(|p| p.2.clone());
        if label("late").as_deref() == Some("gpu") && label("p-00").as_deref() == Some("pool-a") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{pods:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(30), controller)
        .await
        .expect("the controller stops")
        .unwrap()
        .expect("the controller ran");
    assert_eq!(stats.errors, 0, "{stats:?}");
    // 21 pods, the 18 labelled reconciled again when their label came back through the watch.
    assert!(stats.reconciles >= 21 + 18, "{stats:?}");
}
