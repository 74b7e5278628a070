//! `nkvm inventory` end to end on the real test cluster: the binary's JSON output follows the CLI
//! contract and agrees with what the cluster holds (kubeconfig from `NKVM_TEST_KUBECONFIG`).

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, PersistentVolumeClaim, Pod},
};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};
use support::{NamespaceGuard, client, from_json, nkvm};

mod support;

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn inventory_json_follows_the_contract_on_a_real_cluster() {
    let client = client().await;
    let ns = format!(
        "cli-inv-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": ns}})),
        )
        .await
        .expect("create namespace");
    let _guard = NamespaceGuard(ns.clone());
    let pp = PostParams::default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for name in ["app-data", "spare"] {
        pvcs.create(
            &pp,
            &from_json(json!({"metadata": {"name": name}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})),
        )
        .await
        .expect("create pvc");
    }
    let container = json!({"name": "main", "image": "nkvm.local/workload:1", "imagePullPolicy": "Never",
        "command": ["sleep", "3600"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            &from_json(json!({"metadata": {"name": "app"}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": "app"}},
                "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                    "terminationGracePeriodSeconds": 0, "containers": [container],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "app-data"}}]}}}})),
        )
        .await
        .expect("create deployment");

    // Wait until the claim is bound and the pod runs (the provisioner binds on first consumer).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    loop {
        let bound = pvcs
            .get("app-data")
            .await
            .expect("get pvc")
            .status
            .and_then(|s| s.phase);
        let running = pods
            .list(&kube::api::ListParams::default())
            .await
            .expect("list pods")
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if bound.as_deref() == Some("Bound") && running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fixture not ready after 120s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let out = nkvm(&["inventory", "-n", &ns, "--output", "json"]);
    assert!(
        out.status.success(),
        "nkvm inventory failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("stdout is a JSON array");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in &rows {
        for field in [
            "namespace",
            "name",
            "uid",
            "phase",
            "capacity",
            "storage_class",
            "access_modes",
            "volume_name",
            "owner_kind",
            "owner_name",
            "owners",
            "consumers",
            "last_success_at",
        ] {
            assert!(row.get(field).is_some(), "field {field} missing in {row}");
        }
        assert_eq!(row["namespace"], ns.as_str());
        assert!(
            row["access_modes"].is_array()
                && row["owners"].is_array()
                && row["consumers"].is_array()
        );
    }
    let app = rows
        .iter()
        .find(|r| r["name"] == "app-data")
        .expect("app-data listed");
    let real = pvcs.get("app-data").await.expect("get pvc");
    assert_eq!(app["uid"], real.metadata.uid.clone().expect("uid").as_str());
    assert_eq!(app["phase"], "Bound");
    assert_eq!(app["storage_class"], "nkvm-local");
    assert_eq!(app["access_modes"], json!(["ReadWriteOnce"]));
    assert_eq!(
        app["volume_name"],
        real.spec
            .and_then(|s| s.volume_name)
            .expect("bound volume")
            .as_str()
    );
    assert_eq!(app["owner_kind"], "Deployment");
    assert_eq!(app["owner_name"], "app");
    assert_eq!(
        app["owners"],
        json!([{"kind": "Deployment", "name": "app"}])
    );
    let consumer = app["consumers"][0].as_str().expect("one consumer");
    assert!(consumer.starts_with("app-"), "{consumer}");
    assert_eq!(app["last_success_at"], Value::Null);

    let spare = rows
        .iter()
        .find(|r| r["name"] == "spare")
        .expect("spare listed");
    assert_eq!(spare["phase"], "Pending");
    assert_eq!(spare["owner_kind"], "Unknown");
    assert_eq!(spare["owner_name"], "Unknown");
    assert_eq!(spare["consumers"], json!([]));
    assert_eq!(spare["volume_name"], Value::Null);

    // The table output lists the same claims.
    let table = nkvm(&["inventory", "-n", &ns]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("app-data") && text.contains("spare") && text.contains("Deployment"),
        "{text}"
    );

    // A namespace filter outside what exists still answers (empty list), and a malformed one is refused.
    let bad = nkvm(&["inventory", "-n", "Not_A_Namespace", "--output", "json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Not_A_Namespace"));
}
