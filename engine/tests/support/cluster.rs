//! Fixtures on the real test cluster shared by the engine's cluster tests: a connection, unique
//! names, a namespace per test (deleted afterwards, also on failure), claims bound to hostPath
//! volumes whose directories the tests fill directly, consumer pods, and file-tree snapshots to
//! compare a volume with an extracted archive.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared fixtures"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use nkvm_engine::backup::stream_client;
use nkvm_engine::backup::{
    BackupEngine, BackupOptions, BackupResult, PvcRef, Requester, ResultStatus,
};
use nkvm_engine::connection::{self, ConnectOptions};
use nkvm_engine::domain::Stage;
use nkvm_engine::store::Store;
use serde_json::{Value, json};
use sha2::Digest;

use super::wait_for;

pub const HELPER_IMAGE: &str = "nkvm.local/helper:1";
pub const WORKLOAD_IMAGE: &str = "nkvm.local/workload:1";

pub struct Cluster {
    pub client: Client,
    pub stream: Client,
}

pub async fn cluster() -> Cluster {
    let source = super::test_cluster_source();
    let connected = connection::connect(&source, &ConnectOptions::default())
        .await
        .expect("connect to the test cluster");
    let stream = stream_client(connected.config()).expect("stream client");
    Cluster {
        client: connected.client,
        stream,
    }
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{:x}{:x}",
        nanos % 0xff_ffff,
        std::process::id() % 0xfff
    )
}

/// Runs `body` in a fresh namespace and deletes the namespace afterwards, also on failure.
pub async fn in_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Cluster, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let cluster = cluster().await;
    let ns = unique(prefix);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("create namespace");
    let client = cluster.client.clone();
    let outcome = AssertUnwindSafe(body(cluster, ns.clone()))
        .catch_unwind()
        .await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    drop(client);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub async fn create_claim(client: &Client, ns: &str, name: &str, mode: &str, size: &str) {
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}},
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
}

/// A pod mounting the claims under `/data/<claim>` running `sleep`, optionally as a user.
pub async fn create_consumer(
    client: &Client,
    ns: &str,
    name: &str,
    claims: &[&str],
    security: Option<Value>,
) {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mounts: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "mountPath": format!("/data/{c}")}))
        .collect();
    let mut spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "main", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
            "command": ["sleep", "3600"], "volumeMounts": mounts,
        }],
        "volumes": volumes,
    });
    if let Some(security) = security {
        spec["securityContext"] = security;
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create consumer pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("pod {ns}/{name} running"),
        Duration::from_millis(500),
        || {
            let pods = pods.clone();
            async move {
                let pod = pods.get(name).await.ok()?;
                (pod.status?.phase.as_deref() == Some("Running")).then_some(())
            }
        },
    )
    .await;
}

pub async fn delete_pod_now(client: &Client, ns: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    let _ = pods.delete(name, &params).await;
    wait_for(
        &format!("pod {ns}/{name} gone"),
        Duration::from_millis(500),
        || {
            let pods = pods.clone();
            async move { pods.get_opt(name).await.ok()?.is_none().then_some(()) }
        },
    )
    .await;
}

/// The host directory of a bound claim's hostPath volume.
pub async fn volume_dir(client: &Client, ns: &str, claim: &str) -> PathBuf {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let volume = wait_for(
        &format!("claim {ns}/{claim} bound"),
        Duration::from_millis(500),
        || {
            let claims = claims.clone();
            async move {
                let pvc = claims.get(claim).await.ok()?;
                let bound = pvc.status?.phase.as_deref() == Some("Bound");
                bound.then(|| pvc.spec?.volume_name).flatten()
            }
        },
    )
    .await;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .expect("get the bound volume");
    let path = pv
        .spec
        .and_then(|s| s.host_path)
        .map(|h| h.path)
        .expect("a hostPath volume (storage class nkvm-local)");
    PathBuf::from(path)
}

/// A claim bound by a short-lived pod (then deleted), with its host directory.
pub async fn bound_claim(client: &Client, ns: &str, name: &str, mode: &str, size: &str) -> PathBuf {
    create_claim(client, ns, name, mode, size).await;
    let binder = format!("bind-{name}");
    create_consumer(client, ns, &binder, &[name], None).await;
    let dir = volume_dir(client, ns, name).await;
    delete_pod_now(client, ns, &binder).await;
    dir
}

pub fn engine_options(data_dir: &Path, instance: &str) -> BackupOptions {
    BackupOptions {
        data_dir: data_dir.to_owned(),
        helper_image: HELPER_IMAGE.to_owned(),
        instance: Some(instance.to_owned()),
        schedule_timeout: Duration::from_mins(2),
        stall_timeout: Duration::from_mins(1),
        ..BackupOptions::default()
    }
}

pub async fn engine(cluster: &Cluster, data_dir: &Path, options: BackupOptions) -> BackupEngine {
    let store = Store::open(&data_dir.join("nkvm.db"))
        .await
        .expect("open store");
    BackupEngine::with_clients(
        cluster.client.clone(),
        cluster.stream.clone(),
        store,
        options,
    )
}

pub async fn backup_one(engine: &BackupEngine, ns: &str, pvc: &str) -> BackupResult {
    let mut results = engine
        .run_batch(
            vec![PvcRef::new(ns, pvc)],
            &Requester::cli(Some("backup_cluster")),
        )
        .await;
    results.remove(0)
}

/// Helper pods (by label) left in the namespace.
pub async fn helpers_left(client: &Client, ns: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nkvm"))
        .await
        .expect("list helpers")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

pub fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Random bytes (fast, not cryptographic): incompressible test data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The awkward volume of the round trip.
pub fn write_fixture(root: &Path) {
    let nested = root.join("a/b/c/d");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("a/empty-too"), b"").unwrap();
    std::fs::create_dir(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("big.bin"), random_bytes(105 * 1024 * 1024, 7)).unwrap();
    std::fs::write(root.join("ünïcødé ✓ файл.txt"), "grüße\n").unwrap();
    std::fs::write(root.join("spaces and\ttab"), b"x").unwrap();
    let long = root.join("l".repeat(120)).join("n".repeat(200));
    std::fs::create_dir_all(long.parent().unwrap()).unwrap();
    std::fs::write(&long, b"long name").unwrap();
    std::os::unix::fs::symlink("a/b/c/d/deep.txt", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling-abs")).unwrap();
    std::fs::hard_link(root.join("empty"), root.join("hard-to-empty")).unwrap();
    std::fs::write(root.join("secret"), b"0600").unwrap();
    set_mode(&root.join("secret"), 0o600);
    std::fs::create_dir(root.join("private")).unwrap();
    std::fs::write(root.join("private/inside"), b"in").unwrap();
    set_mode(&root.join("private"), 0o750);
    std::fs::create_dir(root.join("shared-group")).unwrap();
    set_mode(&root.join("shared-group"), 0o2775);
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
    set_mode(&root.join("run.sh"), 0o755);
}

/// Relative path → (kind, mode bits, content hash or link target).
pub fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let value = if meta.file_type().is_symlink() {
                (
                    'l',
                    0,
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                ('d', mode, String::new())
            } else {
                let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
                ('f', mode, hex::encode(digest))
            };
            out.insert(rel, value);
        }
    }
    out
}

/// Extracts `archive` with system `tar` into a new directory.
pub fn extract(archive: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    out
}

/// Extracts `archive` with system `tar` and asserts that it holds what `source` holds (see
/// [`snapshot`]).
pub fn assert_extracts_to(archive: &Path, source: &Path) {
    assert_eq!(snapshot(extract(archive).path()), snapshot(source));
}

/// A run that failed (or was cancelled) at `stage` and left no archive, no helper pod and no
/// `.partial` file.
pub async fn assert_failed_clean(
    client: &Client,
    ns: &str,
    data: &Path,
    result: &BackupResult,
    stage: Stage,
) {
    let expected = if result.cancelled {
        ResultStatus::Cancelled
    } else {
        ResultStatus::Failed
    };
    assert_eq!(result.status, expected, "{result:#?}");
    assert_eq!(result.stage, Some(stage), "{result:#?}");
    assert!(result.artifact.is_none(), "{result:#?}");
    assert!(helpers_left(client, ns).await.is_empty(), "helper pod left");
    assert!(
        files_under(data, ".partial").is_empty(),
        "partial file left"
    );
    assert!(files_under(data, ".tar.gz").is_empty(), "archive left");
}
