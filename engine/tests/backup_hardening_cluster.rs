//! Backups of hostile or awkward volumes on the real test cluster: files nobody may read (the root
//! helper still reads them), a huge sparse file (streamed as its data only), a stream past the cap
//! (failed cleanly), file names with control characters (recorded escaped), and pods that only
//! carry the helper labels (start-up recovery leaves them alone).
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the images `nkvm.local/helper:1` and `nkvm.local/workload:1`
//! and the storage class `nkvm-local` (hostPath volumes: fixtures are written straight into the
//! volume's directory). Run with `--include-ignored`.

mod support;

use support::cluster::*;

use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use nkvm_engine::backup::pod::{self as helper_pod, HelperPodParams, HelperResources};
use nkvm_engine::backup::{BackupOptions, ResultStatus};
use nkvm_engine::domain::Stage;
use nkvm_engine::store::{HelperPod, NewRun, RunFilter, Store};
use serde_json::json;

/// The history's newest message.
async fn last_message(engine: &nkvm_engine::backup::BackupEngine) -> String {
    let rows = engine
        .store()
        .recent_runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    rows[0].message.clone().unwrap_or_default()
}

/// A root (or unknown) consumer's volume is read whatever its modes: the helper reads files of
/// mode 000 and directories of mode 0700 owned by other users and by root.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn files_nobody_may_read_are_backed_up() {
    in_namespace("nkvm-bk-unread", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("none"), b"mode 000, uid 1234").unwrap();
        chown(source.join("none"), Some(1234), Some(1234)).unwrap();
        set_mode(&source.join("none"), 0o000);
        for (dir, owner) in [("theirs", 42), ("roots", 0)] {
            let path = source.join(dir);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("inside"), format!("in {dir}")).unwrap();
            set_mode(&path.join("inside"), 0o000);
            chown(path.join("inside"), Some(owner), Some(owner)).unwrap();
            chown(&path, Some(owner), Some(owner)).unwrap();
            set_mode(&path, 0o700);
        }
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        let out = extract(Path::new(result.artifact.as_deref().unwrap()));
        assert_eq!(snapshot(out.path()), snapshot(&source));
        assert_eq!(
            std::fs::read(out.path().join("theirs/inside")).unwrap(),
            b"in theirs"
        );
        assert_eq!(std::fs::read(out.path().join("none")).unwrap().len(), 18);
    })
    .await;
}

/// Writes `len` bytes of `fill` at `offset` of `path` (a file made sparse around them).
fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(data).unwrap();
}

/// A 64 MiB volume holding a 1 TiB sparse file and a 256 MiB one with data in three places: the
/// backup takes seconds and a few KiB (no cap is reached: only data streams), and the archive
/// extracts to the same bytes.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn huge_sparse_files_stream_as_their_data() {
    in_namespace("nkvm-bk-sparse", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        let huge = source.join("huge");
        let status = Command::new("truncate")
            .args(["-s", "1T"])
            .arg(&huge)
            .status()
            .unwrap();
        assert!(status.success());
        let holes = source.join("holes");
        std::fs::File::create(&holes)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        for (offset, seed) in [(0, 1), (100 << 20, 2), ((256 << 20) - 4096, 3)] {
            write_at(&holes, offset, &random_bytes(4096, seed));
        }
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let started = Instant::now();
        let result = backup_one(&engine, &ns, "vol").await;
        let took = started.elapsed();
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        assert!(result.bytes.unwrap() < 256 * 1024, "{result:#?}");
        assert!(took.as_secs() < 120, "took {took:?}");
        let out = extract(Path::new(result.artifact.as_deref().unwrap()));
        let restored: PathBuf = out.path().join("huge");
        let meta = std::fs::metadata(&restored).unwrap();
        assert_eq!(meta.len(), 1 << 40);
        assert!(
            meta.blocks() < 1024,
            "extracted sparse: {} blocks",
            meta.blocks()
        );
        assert!(
            std::fs::read(out.path().join("holes")).unwrap()
                == std::fs::read(source.join("holes")).unwrap(),
            "not the same bytes"
        );
        eprintln!(
            "sparse: {} archive bytes in {:.1}s",
            result.bytes.unwrap(),
            took.as_secs_f64()
        );
    })
    .await;
}

/// An incompressible 8 MiB file in a 1 MiB claim, with the cap at 2× the capacity: the run fails
/// at the stream stage, naming the cap and how to raise it, and leaves nothing behind.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_stream_past_the_cap_fails_cleanly() {
    in_namespace("nkvm-bk-cap", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Mi").await;
        std::fs::write(source.join("noise"), random_bytes(8 << 20, 11)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let options = BackupOptions {
            stream_cap_factor: 2,
            ..engine_options(data.path(), &unique("i"))
        };
        let engine = engine(&cluster, data.path(), options).await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Failed, "{result:#?}");
        assert_eq!(result.stage, Some(Stage::Stream), "{result:#?}");
        assert!(
            result
                .message
                .contains("passed 2.0 MiB (2097152 bytes), 2× the PVC's capacity of 1.0 MiB"),
            "{}",
            result.message
        );
        assert!(
            result.message.contains("--stream-cap-factor"),
            "{}",
            result.message
        );
        assert!(result.artifact.is_none());
        assert!(helpers_left(&client, &ns).await.is_empty(), "helper left");
        assert!(files_under(data.path(), ".partial").is_empty());
        assert!(files_under(data.path(), ".tar.gz").is_empty());
        assert_eq!(last_message(&engine).await, result.message);
    })
    .await;
}

/// A file the helper may not read, named with a newline, a carriage return and a terminal escape,
/// read by BusyBox tar (the workload image), which prints names as they are: the failure recorded
/// in the history and returned has them escaped.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn control_characters_in_file_names_are_recorded_escaped() {
    in_namespace("nkvm-bk-ctrl", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        let name = "evil\n\x1b[31mnkvm: backup succeeded\r";
        std::fs::write(source.join(name), b"secret").unwrap();
        set_mode(&source.join(name), 0o600);
        set_mode(&source, 0o777);
        // The consumer runs as uid 1000: so does the helper, which cannot read the file.
        create_consumer(
            &client,
            &ns,
            "app",
            &["vol"],
            Some(json!({"runAsUser": 1000, "runAsGroup": 1000})),
        )
        .await;
        let data = tempfile::tempdir().unwrap();
        let options = BackupOptions {
            helper_image: WORKLOAD_IMAGE.to_owned(),
            ..engine_options(data.path(), &unique("i"))
        };
        let engine = engine(&cluster, data.path(), options).await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Failed, "{result:#?}");
        // tar's message lines are joined with " | ", and the newline in the name ends a line.
        let escaped = r"\x1b[31mnkvm: backup succeeded\r";
        for message in [result.message.clone(), last_message(&engine).await] {
            assert!(message.contains("evil"), "{message:?}");
            assert!(message.contains(escaped), "{message:?}");
            assert!(
                !message.contains(['\n', '\r', '\x1b']),
                "a control character got through: {message:?}"
            );
        }
    })
    .await;
}

/// Anyone who may label pods can give one nkvm's helper labels (instance and run id included), and
/// even the name of a helper nkvm once created: start-up recovery deletes only pods whose UID nkvm
/// recorded, and leaves look-alikes, saying so. (That nkvm's own orphan is still deleted is
/// `backup_cluster::recovery_after_a_killed_process`.)
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn recovery_leaves_pods_that_only_carry_helper_labels() {
    in_namespace("nkvm-bk-foreign", |cluster, ns| async move {
        let client = cluster.client.clone();
        bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        let data = tempfile::tempdir().unwrap();
        let instance = unique("i");
        let run_id = "20260101t000000-abcdef";
        // A run of this data directory whose helper (UID recorded) is gone already.
        {
            let store = Store::open(&data.path().join("nkvm.db")).await.unwrap();
            store
                .insert_run(&NewRun {
                    run_id: run_id.to_owned(),
                    pvc_uid: "x".to_owned(),
                    namespace: ns.clone(),
                    pvc: "vol".to_owned(),
                    started_by: "killed".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: None,
                })
                .await
                .unwrap();
            store
                .record_helper(&HelperPod {
                    uid: "00000000-0000-0000-0000-000000000000".to_owned(),
                    job_id: run_id.to_owned(),
                    namespace: ns.clone(),
                    name: helper_pod::helper_pod_name(run_id),
                })
                .await
                .unwrap();
        }
        // Look-alikes: that run's helper name and labels, and another run id; both this
        // instance's label.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for id in [run_id, "20260101t000000-f00f00"] {
            let pod = helper_pod::helper_pod(&HelperPodParams {
                run_id: id.to_owned(),
                namespace: ns.clone(),
                pvc_name: "vol".to_owned(),
                pvc_uid: "x".to_owned(),
                image: HELPER_IMAGE.to_owned(),
                node: None,
                run_as: None,
                active_deadline: Duration::from_mins(10),
                resources: HelperResources::default(),
                instance: Some(instance.clone()),
            });
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }

        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &instance),
        )
        .await;
        let report = engine
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .expect("recovery");
        assert_eq!(report.interrupted, [run_id]);
        assert!(report.helpers_deleted.is_empty(), "{report:#?}");
        for name in [
            "nkvm-backup-20260101t000000-abcdef",
            "nkvm-backup-20260101t000000-f00f00",
        ] {
            assert!(
                report
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("left pod {ns}/{name}"))),
                "{report:#?}"
            );
        }
        assert_eq!(
            helpers_left(&client, &ns).await,
            [
                "nkvm-backup-20260101t000000-abcdef",
                "nkvm-backup-20260101t000000-f00f00"
            ]
        );
    })
    .await;
}
