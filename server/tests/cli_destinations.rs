//! The `nkvm` binary with remote destinations, end to end on the real test cluster and the real test
//! servers (`end2end/servers/up`): `nkvm destinations list|check`, `nkvm backup --destination`
//! to S3, SFTP and FTPS, each archive downloaded through `nkvm serve` and checked with
//! `sha256sum -c` and `tar -x` against the volume; with `RUST_LOG=trace` no credential reaches
//! the logs (suppaftp traces the FTP password unless the log filter silences it), and none reaches
//! the audit trail.
//!
//! Needs `NKVM_TEST_KUBECONFIG` and the servers' env file (`NKVM_TEST_SERVERS_ENV`, default
//! `<repo>/.servers/env`); fails without them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use sha2::Digest as _;
use support::process::{Proc, free_port};
use support::{NamespaceGuard, client, create_claim, fixture_namespace, from_json, nkvm_command};

mod support;

/// `NAME=value` lines of the env file written by `end2end/servers/up`.
fn servers_env() -> HashMap<String, String> {
    let path = std::env::var("NKVM_TEST_SERVERS_ENV").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.servers/env"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): start the test servers with end2end/servers/up",
            path.display()
        )
    });
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

struct Setup {
    data: tempfile::TempDir,
    destinations: PathBuf,
    secrets: Vec<String>,
}

impl Setup {
    fn nkvm(&self, args: &[&str]) -> Output {
        nkvm_command()
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--destinations")
            .arg(&self.destinations)
            .args(["--helper-image", "nkvm.local/helper:1"])
            .args(args)
            .env("RUST_LOG", "trace")
            .output()
            .expect("run nkvm")
    }

    /// Fails when any credential appears in `text`.
    fn assert_no_secret(&self, what: &str, text: &str) {
        for secret in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a credential leaked into {what}"
            );
        }
        assert!(
            !text.contains("X-Amz-Signature="),
            "a presigned URL leaked into {what}"
        );
    }
}

fn setup(servers: &HashMap<String, String>) -> Setup {
    let get = |name: &str| {
        servers
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the servers env file"))
            .clone()
    };
    let read = |name: &str| {
        std::fs::read_to_string(get(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let data = tempfile::tempdir().unwrap();
    let prefix = format!("cli-{}", std::process::id());
    let text = format!(
        "destinations:
  - {{name: s3, type: s3, endpoint: '{}', bucket: {}, prefix: '{prefix}', path_style: true,
     access_key_id_file: '{}', secret_access_key_file: '{}', ca_file: '{}', part_size: 5MiB}}
  - {{name: sftp, type: sftp, host: {}, port: {}, user: {}, path: '/upload/{prefix}',
     private_key_file: '{}', known_hosts_file: '{}'}}
  - {{name: ftps, type: ftps, host: {}, port: {}, user: {}, path: '/upload/{prefix}',
     password_file: '{}', ca_file: '{}'}}
",
        get("NKVM_TEST_S3_ENDPOINT"),
        get("NKVM_TEST_S3_BUCKET"),
        get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        get("NKVM_TEST_CA_FILE"),
        get("NKVM_TEST_SFTP_HOST"),
        get("NKVM_TEST_SFTP_PORT"),
        get("NKVM_TEST_SFTP_USER"),
        get("NKVM_TEST_SFTP_KEY_FILE"),
        get("NKVM_TEST_SFTP_KNOWN_HOSTS"),
        get("NKVM_TEST_FTPS_HOST"),
        get("NKVM_TEST_FTPS_PORT"),
        get("NKVM_TEST_FTPS_USER"),
        get("NKVM_TEST_FTPS_PASSWORD_FILE"),
        get("NKVM_TEST_CA_FILE"),
    );
    let destinations = data.path().join("destinations.yaml");
    std::fs::write(&destinations, text).unwrap();
    let key_line = std::fs::read_to_string(get("NKVM_TEST_SFTP_KEY_FILE"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let secrets = vec![
        read("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        read("NKVM_TEST_FTPS_PASSWORD_FILE"),
        key_line,
    ];
    assert!(
        secrets.iter().all(|s| s.len() >= 16),
        "test secrets too short to search for"
    );
    Setup {
        data,
        destinations,
        secrets,
    }
}

/// A namespace with a claim filled by a pod (files, a symlink, 6 MiB of random data); returns the
/// namespace guard and the volume's host directory (a hostPath volume on this machine).
async fn volume(client: &Client) -> (NamespaceGuard, String, PathBuf) {
    let (ns, guard) = fixture_namespace(client, "cli-dst").await;
    create_claim(client, &ns, "data", "ReadWriteOnce").await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let script = "mkdir -p /data/docs && echo hello > /data/docs/a.txt && \
                  ln -s docs/a.txt /data/link && \
                  dd if=/dev/urandom of=/data/blob bs=1M count=6 2>/dev/null && \
                  touch /data/ready && exec sleep 3600";
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": "app"}, "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "nkvm.local/workload:1",
                "imagePullPolicy": "Never", "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_mins(3);
    loop {
        assert!(
            Instant::now() < deadline,
            "the fixture pod did not fill its volume"
        );
        let claim = claims.get("data").await.unwrap();
        if let Some(volume) = claim.spec.and_then(|s| s.volume_name) {
            let pv = Api::<PersistentVolume>::all(client.clone())
                .get(&volume)
                .await
                .unwrap();
            if let Some(path) = pv.spec.and_then(|s| s.host_path).map(|h| h.path) {
                let dir = PathBuf::from(path);
                if dir.join("ready").exists() {
                    return (guard, ns, dir);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Relative path → content hash (files) or link target (symlinks) or `dir`.
fn tree(root: &Path) -> BTreeMap<String, String> {
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
            let value = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else {
                hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()))
            };
            out.insert(rel, value);
        }
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn backups_to_every_remote_destination_download_and_verify_without_leaking_credentials() {
    let servers = servers_env();
    let setup = setup(&servers);
    let client = client().await;
    let (_guard, ns, volume_dir) = volume(&client).await;
    let target = format!("{ns}/data");

    // list: names, kinds, settings; references to secrets, never their values.
    let listed = setup.nkvm(&["destinations", "list", "--output", "json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "s3", "sftp", "ftps"]);
    assert_eq!(list[0]["default"], true);
    assert!(
        list[1]["settings"]["secret_access_key"]
            .as_str()
            .unwrap()
            .starts_with("file /")
    );
    setup.assert_no_secret("destinations list", &text(&listed.stdout));

    // check: every destination answers; with RUST_LOG=trace, no credential in the log.
    let checked = setup.nkvm(&["destinations", "check", "--output", "json"]);
    let stderr = text(&checked.stderr);
    assert!(
        checked.status.success(),
        "{}\n{stderr}",
        text(&checked.stdout)
    );
    let checks: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checks.as_array().unwrap().len(), 4);
    for check in checks.as_array().unwrap() {
        assert_eq!(check["status"], "ok", "{check}");
    }
    assert!(stderr.contains("TRACE"), "RUST_LOG=trace logged nothing");
    setup.assert_no_secret("the log of destinations check", &stderr);
    let unknown = setup.nkvm(&["destinations", "check", "nowhere"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no destination named \"nowhere\""),
        "{}",
        text(&unknown.stderr)
    );

    // One backup per remote destination, then an unknown destination refused up front.
    let mut runs = Vec::new();
    for (name, scheme) in [("s3", "s3://"), ("sftp", "sftp://"), ("ftps", "ftps://")] {
        let out = setup.nkvm(&["backup", &target, "--destination", name, "--output", "json"]);
        let stderr = text(&out.stderr);
        assert!(
            out.status.success(),
            "{name}: {}\n{stderr}",
            text(&out.stdout)
        );
        setup.assert_no_secret(&format!("the log of a backup to {name}"), &stderr);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        let result = &result[0];
        assert_eq!(result["status"], "succeeded", "{result}");
        assert_eq!(result["destination"], name, "{result}");
        let artifact = result["artifact"].as_str().unwrap();
        assert!(artifact.starts_with(scheme), "{artifact}");
        runs.push((name, result["run_id"].as_str().unwrap().to_owned()));
    }
    let refused = setup.nkvm(&["backup", &target, "--destination", "nowhere"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("--destination nowhere"));

    // History names each run's destination.
    let history = setup.nkvm(&["history", "--output", "json"]);
    assert!(history.status.success(), "{}", text(&history.stderr));
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let id_of = |run_id: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["run_id"] == run_id)
            .unwrap_or_else(|| panic!("run {run_id} not in the history"))
            .clone()
    };

    // Downloads through `nkvm serve`, streamed from each destination.
    let port = free_port();
    let serve_log = setup.data.path().join("serve.log");
    let mut serve = nkvm_command();
    serve
        .arg("--data-dir")
        .arg(setup.data.path())
        .arg("--destinations")
        .arg(&setup.destinations)
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&serve_log).unwrap())
        .stderr(std::fs::File::create(setup.data.path().join("serve.err")).unwrap());
    let served = Proc(serve.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_mins(1);
    while !Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", &format!("{base}/healthz")])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "nkvm serve did not start");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let expected = tree(&volume_dir);
    for (name, run_id) in &runs {
        let row = id_of(run_id);
        assert_eq!(row["destination"], *name, "{row}");
        let key = row["object_key"].as_str().unwrap();
        let file = key.rsplit('/').next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (kind, saved) in [
            ("archive", file.to_owned()),
            ("sha256", format!("{file}.sha256")),
        ] {
            let got = Command::new("curl")
                .args([
                    "-fsS",
                    "-o",
                    &saved,
                    &format!("{base}/download/{}/{kind}", row["id"]),
                ])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(got.status.success(), "{name} {kind}: {}", text(&got.stderr));
        }
        let check = Command::new("sha256sum")
            .args(["-c", &format!("{file}.sha256")])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(check.status.success(), "{name}: {check:?}");
        let out = tempfile::tempdir().unwrap();
        let tar = Command::new("tar")
            .arg("-xzf")
            .arg(dir.path().join(file))
            .arg("-C")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(tar.status.success(), "{name}: {tar:?}");
        assert_eq!(
            tree(out.path()),
            expected,
            "{name}: the archive differs from the volume"
        );
    }
    drop(served);
    for log in ["serve.log", "serve.err"] {
        let logged = std::fs::read_to_string(setup.data.path().join(log)).unwrap();
        setup.assert_no_secret("the web server's log", &logged);
    }

    // The audit trail names destinations, never credentials.
    let store = nkvm_engine::store::Store::open(&setup.data.path().join("nkvm.db"))
        .await
        .unwrap();
    let audit = store
        .audit_events(&nkvm_engine::audit::AuditFilter::default())
        .await
        .unwrap();
    let audit_text = format!("{audit:?}");
    for (name, _) in &runs {
        assert!(
            audit_text.contains(&format!("to destination {name}")),
            "{audit_text}"
        );
    }
    setup.assert_no_secret("the audit trail", &audit_text);
}
