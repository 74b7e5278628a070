//! Integration test of the inventory on a real cluster: creates every owner shape for real in a fresh
//! namespace, waits for the pods and claims, scans, checks owners and consumers per PVC, then deletes
//! the namespace (also when an assertion fails).
//!
//! Needs `NKVM_TEST_KUBECONFIG` (set by the repository's test command once the test cluster is up),
//! the image `nkvm.local/workload:1` on the node (busybox-like: `sh`, `sleep`, `tar`) and a default
//! storage class that can bind RWO and RWX claims.

mod support;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::{Namespace, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use nkvm_engine::connection::{self, ConnectOptions};
use nkvm_engine::domain::{Flag, Owner};
use nkvm_engine::inventory::{self, InventoryOptions, PvcRecord};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::wait_for;

const IMAGE: &str = "nkvm.local/workload:1";

async fn client() -> Client {
    let source = support::test_cluster_source();
    connection::connect(&source, &ConnectOptions::default())
        .await
        .expect("connect to the test cluster")
        .client
}

fn unique_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "nkvm-it-{:x}{:x}",
        nanos % 0xff_ffff,
        std::process::id() % 0xfff
    )
}

fn from_json<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("fixture object")
}

async fn create<K>(client: &Client, namespace: &str, object: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = from_json(object);
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create {} in {namespace}: {e}",
                K::kind(&K::DynamicType::default())
            )
        })
}

fn claim(name: &str, mode: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "16Mi"}}},
    })
}

/// A pod spec running `sleep 3600` with the given claims mounted under `/data/<claim>`.
fn pod_spec(claims: &[&str], restart: &str) -> Value {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mounts: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "mountPath": format!("/data/{c}")}))
        .collect();
    json!({
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "main",
            "image": IMAGE,
            "imagePullPolicy": "Never",
            "command": ["sleep", "3600"],
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    })
}

fn deployment(name: &str, claims: &[&str]) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod_spec(claims, "Always"),
            },
        },
    })
}

async fn wait_pods_running(client: &Client, namespace: &str, expected: usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("{expected} running pods in {namespace}"),
        Duration::from_secs(1),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default()).await.ok()?;
                let running = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                            && p.metadata.deletion_timestamp.is_none()
                    })
                    .count();
                (running >= expected).then_some(())
            }
        },
    )
    .await;
}

async fn wait_claims_bound(client: &Client, namespace: &str, names: &[&str]) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("claims {names:?} bound in {namespace}"),
        Duration::from_secs(1),
        || {
            let claims = claims.clone();
            async move {
                let list = claims.list(&ListParams::default()).await.ok()?;
                let bound = names.iter().all(|name| {
                    list.items.iter().any(|c| {
                        c.metadata.name.as_deref() == Some(name)
                            && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                    })
                });
                bound.then_some(())
            }
        },
    )
    .await;
}

/// Creates every owner shape; returns the name of the ReplicaSet left behind by the orphan delete.
#[allow(
    clippy::too_many_lines,
    reason = "one object per owner shape, in order"
)]
async fn create_fixture(client: &Client, ns: &str) -> String {
    for (name, mode) in [
        ("web-data", "ReadWriteOnce"),
        ("agent-cache", "ReadWriteOnce"),
        ("report-out", "ReadWriteOnce"),
        ("scratch", "ReadWriteOnce"),
        ("shared", "ReadWriteMany"),
        ("orphan", "ReadWriteOnce"),
        ("legacy-data", "ReadWriteOnce"),
    ] {
        create::<PersistentVolumeClaim>(client, ns, claim(name, mode)).await;
    }

    create::<Deployment>(client, ns, deployment("web", &["web-data"])).await;
    create::<Deployment>(client, ns, deployment("writer", &["shared"])).await;
    create::<Deployment>(client, ns, deployment("reader", &["shared"])).await;
    create::<Deployment>(client, ns, deployment("legacy", &["legacy-data"])).await;

    let mut db_pod = pod_spec(&[], "Always");
    db_pod["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    create::<StatefulSet>(
        client,
        ns,
        json!({
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": db_pod},
                "volumeClaimTemplates": [claim("data", "ReadWriteOnce")],
            },
        }),
    )
    .await;

    create::<DaemonSet>(
        client,
        ns,
        json!({
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": pod_spec(&["agent-cache"], "Always"),
                },
            },
        }),
    )
    .await;

    // A suspended CronJob, and a Job made from its template with an owner reference to it, as
    // `kubectl create job --from=cronjob/report` does.
    let job_spec = json!({
        "backoffLimit": 0,
        "template": {"spec": pod_spec(&["report-out"], "Never")},
    });
    let cron_job: CronJob = create(
        client,
        ns,
        json!({
            "metadata": {"name": "report"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": true,
                "jobTemplate": {"spec": job_spec},
            },
        }),
    )
    .await;
    create::<Job>(
        client,
        ns,
        json!({
            "metadata": {
                "name": "report-manual",
                "ownerReferences": [{
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "report",
                    "uid": cron_job.metadata.uid.expect("created CronJob has a uid"),
                    "controller": true,
                }],
            },
            "spec": job_spec,
        }),
    )
    .await;

    create::<Pod>(
        client,
        ns,
        json!({"metadata": {"name": "debug"}, "spec": pod_spec(&["scratch"], "Always")}),
    )
    .await;

    // web, writer, reader, legacy, db-0, agent, report-manual, debug.
    wait_pods_running(client, ns, 8).await;
    wait_claims_bound(
        client,
        ns,
        &[
            "web-data",
            "agent-cache",
            "report-out",
            "scratch",
            "shared",
            "legacy-data",
            "data-db-0",
        ],
    )
    .await;

    // Delete the legacy Deployment but orphan its ReplicaSet and pods.
    Api::<Deployment>::namespaced(client.clone(), ns)
        .delete("legacy", &DeleteParams::orphan())
        .await
        .expect("delete the legacy deployment with orphan propagation");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the legacy ReplicaSet to lose its owner",
        Duration::from_secs(1),
        || {
            let replica_sets = replica_sets.clone();
            async move {
                let list = replica_sets
                    .list(&ListParams::default().labels("app=legacy"))
                    .await
                    .ok()?;
                let rs = list.items.first()?;
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
                    .then(|| rs.metadata.name.clone().expect("named"))
            }
        },
    )
    .await
}

fn find<'a>(records: &'a [PvcRecord], ns: &str, name: &str) -> &'a PvcRecord {
    records
        .iter()
        .find(|r| r.pvc.namespace == ns && r.pvc.name == name)
        .unwrap_or_else(|| panic!("no PVC {ns}/{name} in {records:#?}"))
}

fn assert_owner(record: &PvcRecord, kind: &str, name: &str) {
    assert_eq!(
        (record.owner_kind.as_str(), record.owner_name.as_str()),
        (kind, name),
        "owner of {}",
        record.pvc.name
    );
}

/// Asserts the owners and consumers of every fixture PVC.
fn check_records(records: &[PvcRecord], ns: &str, legacy_rs: &str) {
    let ours: Vec<&PvcRecord> = records.iter().filter(|r| r.pvc.namespace == ns).collect();
    assert_eq!(ours.len(), 8, "PVCs of {ns}: {ours:#?}");

    let web = find(records, ns, "web-data");
    assert_owner(web, "Deployment", "web");
    assert_eq!(web.owners, vec![Owner::new("Deployment", "web")]);
    assert_eq!(web.consumers.len(), 1);
    assert!(web.consumers[0].starts_with("web-"), "{:?}", web.consumers);
    assert_eq!(web.pvc.phase, "Bound");
    assert!(web.pvc.volume_name.is_some());
    assert!(web.flags.is_empty(), "{:?}", web.flags);
    assert_eq!(web.consumer_nodes.len(), 1);

    let db = find(records, ns, "data-db-0");
    assert_owner(db, "StatefulSet", "db");
    assert_eq!(db.consumers, ["db-0"]);

    let agent = find(records, ns, "agent-cache");
    assert_owner(agent, "DaemonSet", "agent");
    assert_eq!(agent.consumers.len(), 1);

    let report = find(records, ns, "report-out");
    assert_owner(report, "CronJob", "report");
    assert!(
        report.consumers[0].starts_with("report-manual-"),
        "{:?}",
        report.consumers
    );

    let scratch = find(records, ns, "scratch");
    assert_owner(scratch, "Pod", "debug");
    assert_eq!(scratch.consumers, ["debug"]);

    let shared = find(records, ns, "shared");
    assert_owner(shared, "Multiple[Deployment]", "reader, writer");
    assert_eq!(
        shared.owners,
        vec![
            Owner::new("Deployment", "reader"),
            Owner::new("Deployment", "writer")
        ]
    );
    assert_eq!(shared.consumers.len(), 2);
    assert_eq!(shared.pvc.access_modes, ["ReadWriteMany"]);

    let orphan = find(records, ns, "orphan");
    assert_owner(orphan, "Unknown", "Unknown");
    assert!(orphan.consumers.is_empty());
    assert!(
        orphan.flags.contains(&Flag::NoConsumer),
        "{:?}",
        orphan.flags
    );

    let legacy = find(records, ns, "legacy-data");
    assert_owner(legacy, "ReplicaSet", legacy_rs);
    assert_eq!(legacy.consumers.len(), 1);
}

async fn delete_namespace(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces.delete(ns, &DeleteParams::background()).await {
        eprintln!("warning: could not delete namespace {ns}: {e}");
    }
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn inventory_resolves_every_owner_shape_on_a_real_cluster() {
    let client = client().await;
    let ns = unique_namespace();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "nkvm-tests"}}})),
        )
        .await
        .expect("create the test namespace");

    let outcome = AssertUnwindSafe(async {
        let legacy_rs = create_fixture(&client, &ns).await;

        let scoped = inventory::scan(
            &client,
            &InventoryOptions {
                namespaces: vec![ns.clone()],
                ..InventoryOptions::default()
            },
        )
        .await
        .expect("scoped scan");
        assert!(scoped.refused.is_empty(), "{:?}", scoped.refused);
        assert_eq!(scoped.api_requests, 6, "one list per kind");
        check_records(&scoped.pvcs, &ns, &legacy_rs);

        let everything = inventory::scan(&client, &InventoryOptions::default())
            .await
            .expect("all-namespaces scan");
        check_records(&everything.pvcs, &ns, &legacy_rs);
        let ours: Vec<&PvcRecord> = everything
            .pvcs
            .iter()
            .filter(|r| r.pvc.namespace == ns)
            .collect();
        let scoped_refs: Vec<&PvcRecord> = scoped.pvcs.iter().collect();
        assert_eq!(ours, scoped_refs, "scoped and all-namespaces scans agree");
    })
    .catch_unwind()
    .await;

    delete_namespace(&client, &ns).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
