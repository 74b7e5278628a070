//! `nkvm verify`, `nkvm restore` and `nkvm drill` end to end on the real test cluster: their JSON
//! follows the CLI contract, a tampered archive fails verification with a message that says so
//! (exit status 1), an in-place restore needs `--yes`, and an nkvm killed in the middle of an
//! in-place restore leaves the workload scaled down only until the next start, whose recovery
//! scales it back, removes the helper and marks the restore interrupted.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use nkvm_engine::domain::RunStatus;
use nkvm_engine::store::{RestoreFilter, Store};
use serde_json::{Value, json};
use support::{
    NamespaceGuard, client, create_claim_of, fixture_namespace, from_json, nkvm_command,
};

mod support;

fn nkvm_in(data: &Path, args: &[&str]) -> Output {
    nkvm_command()
        .args(["--helper-image", "nkvm.local/helper:1"])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run nkvm")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not JSON ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_mins(3);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A namespace with a PVC `data` used by a Deployment `app` of `replicas`, ready; returns the
/// guard and the volume's host directory.
async fn fixture(
    client: &Client,
    prefix: &str,
    replicas: i32,
) -> (NamespaceGuard, String, PathBuf) {
    let (ns, guard) = fixture_namespace(client, prefix).await;
    create_claim_of(client, &ns, "data", "ReadWriteOnce", "2Gi").await;
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "app"}, "spec": {
                "replicas": replicas, "selector": {"matchLabels": {"app": "app"}},
                "template": {"metadata": {"labels": {"app": "app"}}, "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": "nkvm.local/workload:1",
                        "imagePullPolicy": "Never", "command": ["sleep", "100000"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}})),
        )
        .await
        .expect("create deployment");
    wait_until("the app ready", || async {
        ready_replicas(client, &ns).await == (replicas, replicas)
    })
    .await;
    let volume = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get("data")
        .await
        .expect("get pvc")
        .spec
        .and_then(|s| s.volume_name)
        .expect("bound");
    let path = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .expect("get pv")
        .spec
        .and_then(|s| s.host_path)
        .expect("hostPath volume")
        .path;
    (guard, ns, PathBuf::from(path))
}

/// (spec replicas, ready replicas) of the fixture's Deployment.
async fn ready_replicas(client: &Client, ns: &str) -> (i32, i32) {
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("app")
        .await
        .expect("get deployment");
    (
        deployment.spec.and_then(|s| s.replicas).unwrap_or(1),
        deployment
            .status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    )
}

async fn restore_helpers(client: &Client, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/component=restore-helper"))
        .await
        .expect("list helpers")
        .items
}

fn write_random(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    std::fs::write(path, out).expect("write fixture");
}

#[tokio::test]
#[ignore = "needs the test cluster"]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn verify_restore_and_drill_follow_the_json_contract() {
    let client = client().await;
    let (_guard, ns, dir) = fixture(&client, "cli-rs", 1).await;
    std::fs::write(dir.join("hello.txt"), b"hello\n").expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let backup = nkvm_in(
        data.path(),
        &["backup", &format!("{ns}/data"), "-o", "json"],
    );
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let backup = json_of(&backup);
    let run_id = backup[0]["run_id"].as_str().expect("run_id").to_owned();

    let verify = nkvm_in(data.path(), &["verify", &run_id, "-o", "json"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let verify = json_of(&verify);
    let one = &verify[0];
    for field in [
        "run_id",
        "namespace",
        "pvc",
        "status",
        "message",
        "sha256",
        "bytes",
        "files",
        "verified_at",
    ] {
        assert!(one.get(field).is_some(), "{field} missing in {one}");
    }
    assert_eq!(one["status"], "verified");
    assert_eq!(one["sha256"], backup[0]["sha256"]);
    assert_eq!(one["files"], 1);
    let by_pvc = json_of(&nkvm_in(
        data.path(),
        &["verify", "--pvc", &format!("{ns}/data"), "-o", "json"],
    ));
    assert_eq!(by_pvc[0]["run_id"], run_id.as_str());

    let restore = nkvm_in(
        data.path(),
        &["restore", &run_id, "--to-pvc", "copy", "-o", "json"],
    );
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let restore = json_of(&restore);
    for field in [
        "restore_id",
        "run_id",
        "namespace",
        "pvc",
        "status",
        "stage",
        "message",
        "bytes",
        "files",
        "started_at",
        "finished_at",
    ] {
        assert!(restore.get(field).is_some(), "{field} missing in {restore}");
    }
    assert_eq!(restore["status"], "succeeded");
    assert_eq!(restore["stage"], Value::Null);
    assert_eq!(
        (restore["namespace"].as_str(), restore["pvc"].as_str()),
        (Some(ns.as_str()), Some("copy"))
    );
    assert_eq!(restore["files"], 1);

    // In place without --yes: the plan, nothing changed, exit status 1.
    let plan = nkvm_in(
        data.path(),
        &["restore", &run_id, "--in-place", "-o", "json"],
    );
    assert_eq!(plan.status.code(), Some(1));
    let plan = json_of(&plan);
    let message = plan["message"].as_str().expect("message");
    assert!(
        message.contains("scale Deployment/app from 1 to 0"),
        "{message}"
    );
    assert!(message.contains("add --yes"), "{message}");
    assert_eq!(ready_replicas(&client, &ns).await, (1, 1));

    let drill = nkvm_in(data.path(), &["drill", &format!("{ns}/data"), "-o", "json"]);
    assert!(
        drill.status.success(),
        "{}",
        String::from_utf8_lossy(&drill.stderr)
    );
    let drill = json_of(&drill);
    assert_eq!(drill["status"], "passed", "{drill}");
    assert_eq!(drill["run_id"], run_id.as_str());
    assert!(
        drill["message"]
            .as_str()
            .is_some_and(|m| m.contains("drill passed"))
    );

    // Tampered: verification fails and says so.
    let archive = PathBuf::from(backup[0]["artifact"].as_str().expect("artifact"));
    let mut bytes = std::fs::read(&archive).expect("read archive");
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&archive, bytes).expect("tamper");
    let tampered = nkvm_in(data.path(), &["verify", &run_id, "-o", "json"]);
    assert_eq!(tampered.status.code(), Some(1));
    let tampered = json_of(&tampered);
    assert_eq!(tampered[0]["status"], "failed");
    let message = tampered[0]["message"].as_str().expect("message");
    assert!(message.contains("TAMPERED"), "{message}");
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_killed_nkvm_leaves_workloads_scaled_down_only_until_the_next_start() {
    let client = client().await;
    let (_guard, ns, dir) = fixture(&client, "cli-rs-kill", 2).await;
    for i in 0..6u64 {
        write_random(&dir.join(format!("big-{i}")), 150 << 20, i + 1);
    }
    let data = tempfile::tempdir().expect("tempdir");
    let backup = nkvm_in(
        data.path(),
        &["backup", &format!("{ns}/data"), "-o", "json"],
    );
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let run_id = json_of(&backup)[0]["run_id"]
        .as_str()
        .expect("run_id")
        .to_owned();

    let mut child = nkvm_command()
        .args(["--helper-image", "nkvm.local/helper:1", "--data-dir"])
        .arg(data.path())
        .args(["restore", &run_id, "--in-place", "--yes", "-o", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nkvm restore");
    // Kill it once it streams: the workload is down and the helper is running.
    wait_until("the restore streaming into its helper", || async {
        let running = restore_helpers(&client, &ns)
            .await
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        running && ready_replicas(&client, &ns).await.0 == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    child.kill().expect("kill nkvm");
    child.wait().expect("reap nkvm");
    assert_eq!(
        ready_replicas(&client, &ns).await.0,
        0,
        "a crash leaves it down"
    );

    // The next start recovers: any command that connects runs start-up recovery.
    let next = nkvm_in(
        data.path(),
        &["restore", &run_id, "--in-place", "-o", "json"],
    );
    assert_eq!(
        next.status.code(),
        Some(1),
        "without --yes nothing else happens"
    );
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert!(stderr.contains("scaled back"), "{stderr}");
    wait_until("the app back at 2 replicas", || async {
        ready_replicas(&client, &ns).await == (2, 2)
    })
    .await;
    wait_until("the helper gone", || async {
        restore_helpers(&client, &ns).await.is_empty()
    })
    .await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("app")
        .await
        .expect("get deployment");
    let annotations = deployment.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("nkvm.io/restore-scaled-down"),
        "{annotations:?}"
    );
    let store = Store::open(&data.path().join("nkvm.db"))
        .await
        .expect("open store");
    let restores = store
        .recent_restores(&RestoreFilter::default())
        .await
        .expect("restores");
    assert_eq!(restores[0].status, RunStatus::Interrupted, "{restores:#?}");
    assert!(
        restores[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("interrupted")),
        "{restores:#?}"
    );
}
