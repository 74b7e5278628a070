//! The `nkvm` binary end to end on the real test cluster: `inventory`, `backup` and `history` print
//! the JSON of the CLI contract, agree with what the cluster holds and with each other, and exit
//! non-zero on failure (kubeconfig from `NKVM_TEST_KUBECONFIG`; the helper image `nkvm.local/helper:1`
//! and the workload image `nkvm.local/workload:1` of the test cluster).

use std::{path::Path, process::Command, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};
use sha2::Digest as _;
use support::{
    NamespaceGuard, client, create_claim, fixture_namespace, from_json, kubeconfig_path, nkvm,
    nkvm_command,
};

mod support;

const HELPER_IMAGE: &str = "nkvm.local/helper:1";
const WORKLOAD_IMAGE: &str = "nkvm.local/workload:1";

/// Fields every `nkvm inventory --output json` object has (product contract).
const INVENTORY_FIELDS: &[&str] = &[
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
];

/// Fields every `nkvm backup --output json` object has (product contract).
const BACKUP_FIELDS: &[&str] = &[
    "namespace",
    "pvc",
    "status",
    "stage",
    "message",
    "artifact",
    "sha256",
    "bytes",
    "files",
    "started_at",
    "finished_at",
    "run_id",
];

/// Fields every `nkvm history --output json` row has.
const HISTORY_FIELDS: &[&str] = &[
    "run_id",
    "namespace",
    "pvc",
    "status",
    "stage",
    "message",
    "started_at",
    "finished_at",
    "bytes",
    "files",
    "sha256",
    "artifact",
];

/// `nkvm` with a data directory of the test's own and the test cluster's helper image.
fn nkvm_with_data(data_dir: &Path, args: &[&str]) -> std::process::Output {
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let mut all = vec!["--data-dir", data_dir, "--helper-image", HELPER_IMAGE];
    all.extend_from_slice(args);
    nkvm(&all)
}

/// Runs `nkvm` with the test's data directory, checks its exit code (`0`, or `1` when a backup in the
/// batch failed) and returns the JSON array it printed.
fn json_rows(data_dir: &Path, args: &[&str], exit_code: i32) -> Vec<Value> {
    let out = nkvm_with_data(data_dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(exit_code),
        "nkvm {args:?}: {stderr}"
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(rows)) => rows,
        Ok(other) => panic!("nkvm {args:?} printed no JSON array: {other}"),
        Err(err) => panic!("nkvm {args:?} printed no JSON ({err}); stderr: {stderr}"),
    }
}

/// Deployment `name` (one replica) mounting each claim at `/<claim>`; `init` runs first in an init
/// container with the same mounts, so its files exist once the pod runs.
async fn create_deployment(client: &Client, ns: &str, name: &str, claims: &[&str], init: &str) {
    let mounts: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "mountPath": format!("/{c}")}))
        .collect();
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let container = |name: &str, command: Value| {
        json!({"name": name, "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
               "command": command, "volumeMounts": mounts})
    };
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": name}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "initContainers": [container("init", json!(["sh", "-c", init]))],
                    "containers": [container("main", json!(["sleep", "3600"]))],
                    "volumes": volumes}}}})),
        )
        .await
        .expect("create deployment");
}

/// Waits until every claim is bound and a pod of the namespace runs (the provisioner binds on first
/// consumer).
async fn wait_ready(client: &Client, ns: &str, claims: &[&str]) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    loop {
        let mut bound = true;
        for claim in claims {
            let phase = pvcs
                .get(claim)
                .await
                .expect("get pvc")
                .status
                .and_then(|s| s.phase);
            bound &= phase.as_deref() == Some("Bound");
        }
        let running = pods
            .list(&ListParams::default())
            .await
            .expect("list pods")
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if bound && running {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fixture not ready after 120s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn assert_fields(row: &Value, fields: &[&str]) {
    for field in fields {
        assert!(row.get(field).is_some(), "field {field} missing in {row}");
    }
}

fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
        .parse()
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn inventory_json_follows_the_contract_on_a_real_cluster() {
    let client = client().await;
    let (ns, _guard) = fixture_namespace(&client, "cli-inv").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for name in ["app-data", "spare"] {
        create_claim(&client, &ns, name, "ReadWriteOnce").await;
    }
    create_deployment(&client, &ns, "app", &["app-data"], "true").await;
    wait_ready(&client, &ns, &["app-data"]).await;

    let out = nkvm(&["inventory", "-n", &ns, "--output", "json"]);
    assert!(
        out.status.success(),
        "nkvm inventory failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("stdout is a JSON array");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in &rows {
        assert_fields(row, INVENTORY_FIELDS);
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

#[tokio::test]
#[ignore = "needs the test cluster"]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn backup_and_history_json_follow_the_contract_on_a_real_cluster() {
    let client = client().await;
    let (ns, _guard) = fixture_namespace(&client, "cli-bak").await;
    create_claim(&client, &ns, "data", "ReadWriteOnce").await;
    create_claim(&client, &ns, "locked", "ReadWriteOncePod").await;
    create_deployment(
        &client,
        &ns,
        "app",
        &["data", "locked"],
        "mkdir -p /data/docs && printf 'hello\\n' > /data/docs/a.txt && \
         printf 'second file\\n' > /data/b.txt",
    )
    .await;
    wait_ready(&client, &ns, &["data", "locked"]).await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let data = format!("{ns}/data");

    // One PVC: succeeded, with an archive whose size and sha256 the JSON states.
    let results = json_rows(data_dir.path(), &["backup", &data, "--output", "json"], 0);
    assert_eq!(results.len(), 1, "{results:#?}");
    let first = &results[0];
    assert_fields(first, BACKUP_FIELDS);
    assert_eq!(first["namespace"], ns.as_str());
    assert_eq!(first["pvc"], "data");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["stage"], Value::Null);
    assert_eq!(first["files"], 2, "docs/a.txt and b.txt: {first}");
    assert!(timestamp(&first["started_at"]) <= timestamp(&first["finished_at"]));
    let artifact = Path::new(first["artifact"].as_str().expect("artifact path"));
    let expected_dir = data_dir.path().join("artifacts").join(&ns).join("data");
    assert_eq!(artifact.parent(), Some(expected_dir.as_path()), "{first}");
    assert!(
        artifact.to_string_lossy().ends_with(".tar.gz"),
        "{}",
        artifact.display()
    );
    let archive = std::fs::read(artifact).expect("read the archive");
    assert_eq!(first["bytes"], archive.len() as u64);
    let sha = hex(&sha2::Sha256::digest(&archive));
    assert_eq!(first["sha256"], sha.as_str());
    let sidecar = std::fs::read_to_string(format!("{}.sha256", artifact.display()))
        .expect("read the .sha256 sidecar");
    assert!(sidecar.starts_with(&sha), "{sidecar}");
    // Plain tar restores the volume's files.
    let restored = tempfile::tempdir().expect("temp dir");
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(artifact)
        .arg("-C")
        .arg(restored.path())
        .output()
        .expect("run tar");
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(restored.path().join("docs/a.txt")).expect("docs/a.txt"),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(restored.path().join("b.txt")).expect("b.txt"),
        "second file\n"
    );

    // A batch with failures: every PVC gets its object, the failed ones name their stage, and the
    // exit status is non-zero.
    let locked = format!("{ns}/locked");
    let missing = format!("{ns}/no-such-claim");
    let results = json_rows(
        data_dir.path(),
        &["backup", &data, &locked, &missing, "--output", "json"],
        1,
    );
    assert_eq!(results.len(), 3, "{results:#?}");
    let by_pvc = |name: &str| {
        results
            .iter()
            .find(|r| r["pvc"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {results:#?}"))
    };
    for result in &results {
        assert_fields(result, BACKUP_FIELDS);
    }
    let second = by_pvc("data");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_ne!(second["run_id"], first["run_id"]);
    let refused = by_pvc("locked");
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["stage"], "preflight");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("ReadWriteOncePod")),
        "{refused}"
    );
    assert_eq!(refused["artifact"], Value::Null);
    let absent = by_pvc("no-such-claim");
    assert_eq!(absent["status"], "failed");
    assert_eq!(absent["stage"], "preflight");
    assert!(
        absent["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found")),
        "{absent}"
    );
    // No helper pod survives, failed or not.
    let helpers = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nkvm"))
        .await
        .expect("list helper pods");
    assert!(helpers.items.is_empty(), "helper pods left behind");

    // History: newest first, the same runs the backups reported.
    let rows = json_rows(
        data_dir.path(),
        &["history", "--pvc", &data, "--output", "json"],
        0,
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in &rows {
        assert_fields(row, HISTORY_FIELDS);
        assert_eq!(row["namespace"], ns.as_str());
        assert_eq!(row["pvc"], "data");
        assert_eq!(row["status"], "succeeded");
    }
    assert_eq!(rows[0]["run_id"], second["run_id"]);
    assert_eq!(rows[1]["run_id"], first["run_id"]);
    assert_eq!(rows[1]["sha256"], first["sha256"]);
    assert_eq!(rows[1]["bytes"], first["bytes"]);
    assert_eq!(rows[1]["artifact"], first["artifact"]);

    let newest = json_rows(
        data_dir.path(),
        &["history", "--limit", "1", "--output", "json"],
        0,
    );
    assert_eq!(newest.len(), 1, "{newest:#?}");
    assert_eq!(newest[0]["run_id"], second["run_id"]);
    // Filters by namespace and status: only the two runs of `data` succeeded. (Whether a refused
    // preflight leaves a failed row is the engine's business: today a refusal by the plan — RWOP in
    // use, not Bound — writes none, like a PVC that cannot be read.)
    let succeeded = json_rows(
        data_dir.path(),
        &[
            "history",
            "-n",
            &ns,
            "--status",
            "succeeded",
            "--output",
            "json",
        ],
        0,
    );
    assert_eq!(succeeded.len(), 2, "{succeeded:#?}");
    assert!(
        succeeded.iter().all(|r| r["pvc"] == "data"),
        "{succeeded:#?}"
    );

    // The inventory shows the last successful backup of the PVC.
    let rows = json_rows(
        data_dir.path(),
        &["inventory", "-n", &ns, "--output", "json"],
        0,
    );
    let row = rows
        .iter()
        .find(|r| r["name"] == "data")
        .expect("data listed");
    assert!(!row["last_success_at"].is_null(), "{row}");
    timestamp(&row["last_success_at"]);

    // Usage errors exit non-zero too, naming what is wrong.
    let bad = nkvm_with_data(data_dir.path(), &["backup", "no-slash", "--output", "json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-slash"));
    let bad = nkvm_with_data(data_dir.path(), &["history", "--pvc", "no-slash"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-slash"));
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// `nkvm backup` of `ns/big` started in the background with the test's data directory: slow on
/// purpose (gzip level 9 on one thread), so that it is still streaming when the test acts on it.
fn spawn_slow_backup(data_dir: &Path, ns: &str) -> std::process::Child {
    nkvm_command()
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["--helper-image", HELPER_IMAGE])
        .args(["backup", &format!("{ns}/big"), "--output", "json"])
        .args(["--gzip-level", "9", "--gzip-threads", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start nkvm backup")
}

/// Helper pods nkvm left in the namespace.
async fn helpers_in(client: &Client, ns: &str) -> Vec<String> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nkvm"))
        .await
        .expect("list helpers")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Waits until the backup streams: a `.partial` archive exists under the data directory.
async fn wait_streaming(data_dir: &Path, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    loop {
        if let Some(status) = child.try_wait().expect("poll nkvm") {
            panic!("nkvm backup ended before it streamed: {status}");
        }
        let partial = walk(data_dir)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".partial"));
        if partial {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .partial after 120s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A volume of incompressible data that takes several seconds to back up.
async fn big_volume(client: &Client, prefix: &str) -> (String, NamespaceGuard) {
    let (ns, guard) = fixture_namespace(client, prefix).await;
    create_claim(client, &ns, "big", "ReadWriteOnce").await;
    create_deployment(
        client,
        &ns,
        "app",
        &["big"],
        "head -c 314572800 /dev/urandom > /big/random.bin",
    )
    .await;
    wait_ready(client, &ns, &["big"]).await;
    (ns, guard)
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn sigterm_mid_backup_cancels_cleans_up_and_records_cancelled() {
    let client = client().await;
    let (ns, _guard) = big_volume(&client, "cli-term").await;
    let data = tempfile::tempdir().expect("data dir");
    let mut child = spawn_slow_backup(data.path(), &ns);
    wait_streaming(data.path(), &mut child).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .expect("send SIGTERM");
    let out = child.wait_with_output().expect("wait for nkvm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(rows[0]["status"], "cancelled", "{rows:?}");
    assert_eq!(rows[0]["cancelled"], true, "{rows:?}");
    assert!(
        helpers_in(&client, &ns).await.is_empty(),
        "a helper pod was left"
    );
    let partials: Vec<_> = walk(data.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partials.is_empty(), "partial archives left: {partials:?}");
    let history = json_rows(data.path(), &["history", "--output", "json"], 0);
    assert_eq!(history[0]["status"], "cancelled", "{history:?}");
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_second_writer_on_the_data_dir_is_refused_and_the_first_succeeds() {
    let client = client().await;
    let (ns, _guard) = big_volume(&client, "cli-lock").await;
    let data = tempfile::tempdir().expect("data dir");
    let mut first = spawn_slow_backup(data.path(), &ns);
    wait_streaming(data.path(), &mut first).await;
    let pid = first.id();

    let second = nkvm_with_data(data.path(), &["backup", &format!("{ns}/big")]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another nkvm process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`nkvm backup` (pid {pid}")),
        "{stderr}"
    );

    let out = first.wait_with_output().expect("wait for the first backup");
    let first_err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{first_err}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(rows[0]["status"], "succeeded", "{rows:?}");
    assert!(!first_err.contains("deleted orphan"), "{first_err}");
}

/// The test cluster's kubeconfig with `edit` applied, in a file of its own.
fn kubeconfig_variant(dir: &Path, name: &str, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let path = dir.join(name);
    std::fs::write(&path, edit(&text)).expect("write kubeconfig");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
#[ignore = "needs the test cluster"]
fn connection_errors_name_the_server_and_the_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_token = kubeconfig_variant(dir.path(), "token", |text| {
        text.lines()
            .map(|l| match l.split_once("token:") {
                Some((indent, _)) => format!("{indent}token: not-a-valid-token"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    // A CA that did not sign the apiserver's certificate.
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=not-the-cluster-ca", "-keyout"])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(dir.path().join("ca.crt"))
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {made:?}");
    let pem = std::fs::read(dir.path().join("ca.crt")).expect("read the CA");
    let other_ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
    let bad_ca = kubeconfig_variant(dir.path(), "ca", |text| {
        text.lines()
            .map(|l| match l.split_once("certificate-authority-data:") {
                Some((indent, _)) => format!("{indent}certificate-authority-data: {other_ca}"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let server = std::fs::read_to_string(kubeconfig_path())
        .expect("read kubeconfig")
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_owned))
        .expect("a server line");
    for (kubeconfig, expected) in [
        (&bad_token, "HTTP 401 Unauthorized"),
        (&bad_ca, "certificate is not trusted"),
    ] {
        for command in [&["inventory"][..], &["backup", "default/none"][..]] {
            let out = Command::new(env!("CARGO_BIN_EXE_nkvm"))
                .args(["--kubeconfig", kubeconfig, "--data-dir"])
                .arg(dir.path().join("data"))
                .args(command)
                .env_remove("NKVM_IN_CLUSTER")
                .output()
                .expect("run nkvm");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command:?}: {stderr}");
            assert!(stderr.contains(expected), "{command:?}: {stderr}");
            assert!(
                stderr.contains(server.trim_end_matches('/')),
                "{command:?}: {stderr}"
            );
            assert!(!stderr.contains("Status {"), "debug dump: {stderr}");
        }
    }
}
