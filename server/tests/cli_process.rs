//! How the `nkvm` process behaves as a command-line tool, without a cluster: usage errors exit 2
//! with the engine's one wording, output into a closed pipe ends quietly, and read-only commands
//! work on a data directory they may not write.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};

use nkvm_engine::store::{NewRun, Store};

fn nkvm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nkvm"));
    command
        .env_remove("NKVM_IN_CLUSTER")
        .env_remove("NKVM_DATA_DIR")
        .env_remove("RUST_LOG");
    command
}

/// A history database with `runs` rows in `dir`.
async fn history_with(dir: &Path, runs: usize) {
    let store = Store::open(&dir.join("nkvm.db")).await.unwrap();
    for i in 0..runs {
        store
            .insert_run(&NewRun {
                run_id: format!("run-{i:05}"),
                pvc_uid: format!("uid-{i}"),
                namespace: "shop".to_owned(),
                pvc: format!("data-{i}"),
                started_by: "cli:test".to_owned(),
                started_at: jiff::Timestamp::now(),
                cluster: None,
            })
            .await
            .unwrap();
    }
    store.close().await;
}

#[test]
fn bad_names_are_usage_errors_with_one_wording() {
    let cases: [(&[&str], &str); 4] = [
        (&["backup", "Shop/data"], "invalid namespace \"Shop\""),
        (&["backup", "shop"], "expected NAMESPACE/PVC"),
        (
            &["history", "--pvc", "shop/Data"],
            "invalid PVC name \"Data\"",
        ),
        (
            &["inventory", "-n", "bad_ns"],
            "invalid namespace \"bad_ns\"",
        ),
    ];
    for (args, expected) in cases {
        let out = nkvm().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Far more JSON than a pipe buffers, so that writing must fail once the reader is gone.
    history_with(dir.path(), 3000).await;
    let mut child = nkvm()
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["history", "--limit", "0", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // The reader stops (like `| head`): stdout is closed here.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(head[0], b'[');
}

#[tokio::test]
async fn history_without_a_database_creates_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-used");
    let out = nkvm()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "history",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(stderr.contains("no history at"), "{stderr}");
    assert!(!data.exists(), "history created {}", data.display());
}

/// Read-only bind mount of `source` at `target`, unmounted when dropped.
struct ReadOnlyMount(std::path::PathBuf);

impl ReadOnlyMount {
    fn new(source: &Path, target: &Path) -> Self {
        std::fs::create_dir_all(target).unwrap();
        let mount = |args: &[&str]| {
            let status = Command::new("mount").args(args).status().unwrap();
            assert!(status.success(), "mount {args:?} (needs root)");
        };
        mount(&["--bind", source.to_str().unwrap(), target.to_str().unwrap()]);
        let guard = Self(target.to_owned());
        mount(&["-o", "remount,bind,ro", target.to_str().unwrap()]);
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
#[ignore = "needs root (a read-only bind mount)"]
async fn history_reads_a_read_only_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data");
    std::fs::create_dir_all(&source).unwrap();
    history_with(&source, 3).await;
    let read_only = dir.path().join("ro");
    let _mount = ReadOnlyMount::new(&source, &read_only);
    assert!(
        std::fs::write(read_only.join("probe"), b"x").is_err(),
        "the mount is not read-only"
    );
    let out = nkvm()
        .args([
            "--data-dir",
            read_only.to_str().unwrap(),
            "history",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
}
