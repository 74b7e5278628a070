//! Backups against the real test cluster: a round trip of an awkward volume checked with system `tar`
//! and `sha256sum`, the failure paths (each leaving no helper pod and no `.partial` file), a batch of
//! 10 PVCs with concurrency 3, and start-up recovery after an interrupted run.
//!
//! Needs `NKVM_TEST_KUBECONFIG` (set by the repository's test command once the test cluster is up),
//! the images `nkvm.local/helper:1` (GNU tar, sh) and `nkvm.local/workload:1` on the node, and the
//! default storage class `nkvm-local` (hostPath volumes on this machine: fixtures are written straight
//! into the volume's directory). Each test works in its own namespace, deleted afterwards.

mod support;

use support::cluster::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use nkvm_engine::backup::pod::{self as helper_pod, HelperPodParams};
use nkvm_engine::backup::{
    BackupEngine, BackupOptions, BackupResult, Compression, ProgressEvent, PvcRef, Requester,
    ResultStatus,
};
use nkvm_engine::domain::{RunStatus, Stage};
use nkvm_engine::store::{NewRun, RunFilter, Store};
use serde_json::{Value, json};
use support::wait_for;

async fn assert_failed_clean(
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

/// Random bytes (fast, not cryptographic): incompressible test data.

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn round_trip_of_an_awkward_volume() {
    awkward_round_trip("nkvm-bk-rt", Compression::Server).await;
}

/// The helper compresses (pigz in the test image); nkvm stores its gzip bytes unchanged.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn round_trip_with_source_compression() {
    awkward_round_trip("nkvm-bk-src", Compression::Source).await;
}

/// Byte 9 of a gzip header: the OS that wrote it. nkvm's encoder writes 255 (unknown), pigz and
/// gzip 3 (Unix): who compressed an archive is visible in it.
fn gzip_os_byte(archive: &Path) -> u8 {
    std::fs::read(archive).unwrap()[9]
}

#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn awkward_round_trip(prefix: &str, compression: Compression) {
    in_namespace(prefix, |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
        write_fixture(&source);
        // A live consumer: the helper is pinned to its node and shares the RWO volume.
        create_consumer(&client, &ns, "app", &["vol"], None).await;

        let data = tempfile::tempdir().unwrap();
        let options = BackupOptions {
            compression,
            ..engine_options(data.path(), &unique("i"))
        };
        let engine = engine(&cluster, data.path(), options).await;
        let mut events = engine.subscribe();
        let started = Instant::now();
        let result = backup_one(&engine, &ns, "vol").await;
        let took = started.elapsed();
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        assert_eq!(result.stage, None);
        assert_eq!(result.node.as_deref(), Some("127.0.0.1"));
        assert!(result.warnings.is_empty(), "{:?}", result.warnings);

        // Layout and sidecar.
        let artifact = PathBuf::from(result.artifact.clone().unwrap());
        let dir = artifact.parent().unwrap();
        assert_eq!(dir, data.path().join("artifacts").join(&ns).join("vol"));
        let name = artifact.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with("Z.tar.gz") && name.len() == "20261128T231858.123Z.tar.gz".len(),
            "{name}"
        );
        let size = std::fs::metadata(&artifact).unwrap().len();
        assert_eq!(result.bytes, Some(size));
        let check = Command::new("sha256sum")
            .args(["-c", &format!("{name}.sha256")])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        let sidecar = std::fs::read_to_string(dir.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(
            sidecar,
            format!("{}  {name}\n", result.sha256.clone().unwrap())
        );

        // Extract with system tar and compare with the volume.
        let out = tempfile::tempdir().unwrap();
        let tar = Command::new("tar")
            .arg("-xzf")
            .arg(&artifact)
            .arg("-C")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(tar.status.success(), "{tar:?}");
        let expected = snapshot(&source);
        let got = snapshot(out.path());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (path, value) in &expected {
            assert_eq!(&got[path], value, "{path}");
        }
        assert_eq!(expected["shared-group"].1, 0o2775);
        assert_eq!(expected["secret"].1, 0o600);
        let listing = Command::new("tar")
            .arg("-tzf")
            .arg(&artifact)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.lines().all(|l| l == "./" || l.starts_with("./")),
            "{listing}"
        );

        // Counts: regular files (hard link excluded) and their bytes.
        let regular = expected.values().filter(|v| v.0 == 'f').count() as u64 - 1;
        assert_eq!(result.files, Some(regular));
        assert!(result.source_bytes.unwrap() > 105 * 1024 * 1024);

        // Manifest.
        let stem = name.trim_end_matches(".tar.gz");
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{stem}.manifest.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["pvc"]["name"], "vol");
        assert_eq!(manifest["pvc"]["namespace"], json!(ns));
        assert_eq!(
            manifest["pvc"]["uid"],
            json!(result.pvc_uid.clone().unwrap())
        );
        assert_eq!(manifest["pvc"]["access_modes"], json!(["ReadWriteOnce"]));
        assert_eq!(manifest["pvc"]["capacity"], "1Gi");
        assert_eq!(manifest["owner_kind"], "Pod");
        assert_eq!(manifest["owner_name"], "app");
        assert_eq!(manifest["node"], "127.0.0.1");
        assert_eq!(manifest["helper_image"], HELPER_IMAGE);
        assert_eq!(
            manifest["archive"]["sha256"],
            json!(result.sha256.clone().unwrap())
        );
        assert_eq!(manifest["archive"]["bytes"], json!(size));
        assert_eq!(manifest["archive"]["gzip_level"], 6);
        assert_eq!(
            manifest["archive"]["compressed_by"],
            json!(compression.as_str())
        );
        let os = match compression {
            Compression::Server => 255,
            Compression::Source => 3,
        };
        assert_eq!(gzip_os_byte(&artifact), os, "who compressed");
        assert_eq!(manifest["nkvm_version"], env!("CARGO_PKG_VERSION"));

        // History.
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, RunStatus::Succeeded);
        assert_eq!(rows[0].sha256, result.sha256);
        assert_eq!(rows[0].artifact, result.artifact);
        assert_eq!(rows[0].files, result.files);
        assert_eq!(rows[0].node.as_deref(), Some("127.0.0.1"));

        // Progress: totals from the pre-scan, moving bytes, stages in order.
        let mut seen: Vec<ProgressEvent> = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(event);
        }
        let streaming: Vec<&ProgressEvent> =
            seen.iter().filter(|e| e.stage == Stage::Stream).collect();
        assert!(
            streaming.iter().any(|e| e.total_bytes.is_some()),
            "no pre-scan totals"
        );
        assert!(
            streaming
                .iter()
                .any(|e| e.bytes_read > 0 && e.rate_bytes_per_sec > 0.0)
        );
        let last = seen.last().unwrap();
        assert_eq!(last.status, RunStatus::Succeeded);

        assert!(helpers_left(&client, &ns).await.is_empty());
        assert!(files_under(data.path(), ".partial").is_empty());
        eprintln!(
            "round trip ({}): {} source bytes, {} archive bytes in {:.1}s",
            compression.as_str(),
            result.source_bytes.unwrap(),
            size,
            took.as_secs_f64()
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn missing_helper_image_fails_schedule() {
    in_namespace("nkvm-bk-img", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("f"), b"x").unwrap();
        let data = tempfile::tempdir().unwrap();
        let options = BackupOptions {
            helper_image: "nkvm.local/nope:1".to_owned(),
            ..engine_options(data.path(), &unique("i"))
        };
        let engine = engine(&cluster, data.path(), options).await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_failed_clean(&client, &ns, data.path(), &result, Stage::Schedule).await;
        assert!(
            result.message.contains("ErrImageNeverPull"),
            "{}",
            result.message
        );
        assert!(
            result.message.contains("nkvm.local/nope:1"),
            "{}",
            result.message
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn missing_pvc_fails_preflight() {
    in_namespace("nkvm-bk-404", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let result = backup_one(&engine, &ns, "nope").await;
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Preflight).await;
        assert!(
            result.message.contains("PVC not found"),
            "{}",
            result.message
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn rwop_in_use_is_refused() {
    in_namespace("nkvm-bk-rwop", |cluster, ns| async move {
        let client = cluster.client.clone();
        create_claim(&client, &ns, "solo", "ReadWriteOncePod", "64Mi").await;
        create_consumer(&client, &ns, "owner", &["solo"], None).await;
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let result = backup_one(&engine, &ns, "solo").await;
        assert_failed_clean(&client, &ns, data.path(), &result, Stage::Preflight).await;
        assert!(
            result.message.contains("ReadWriteOncePod"),
            "{}",
            result.message
        );
        assert!(result.message.contains("owner"), "{}", result.message);
        assert!(result.message.contains("scale"), "{}", result.message);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn tar_exiting_non_zero_fails_exec() {
    in_namespace("nkvm-bk-tar", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("readable"), b"ok").unwrap();
        std::fs::write(source.join("root-only"), b"secret").unwrap();
        set_mode(&source.join("root-only"), 0o600);
        set_mode(&source, 0o777);
        // The consumer runs as uid 1000: so does the helper, which cannot read root-only.
        create_consumer(
            &client,
            &ns,
            "app",
            &["vol"],
            Some(json!({"runAsUser": 1000, "runAsGroup": 1000})),
        )
        .await;
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_failed_clean(&client, &ns, data.path(), &result, Stage::Exec).await;
        assert!(
            result.message.contains("tar exited with code 2"),
            "{}",
            result.message
        );
        assert!(result.message.contains("root-only"), "{}", result.message);
        assert!(
            result.message.contains("Permission denied"),
            "{}",
            result.message
        );
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Failed);
        assert_eq!(rows[0].stage, Some(Stage::Exec));
    })
    .await;
}

/// The workload image has no pigz, only BusyBox's `gzip` (and BusyBox `tar`): source compression
/// uses that gzip at level 6; at level 0, which BusyBox's `gzip` refuses, no compressor is usable
/// and the run falls back to nkvm's own compression and says so.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn source_compression_uses_gzip_or_falls_back_without_a_usable_compressor() {
    in_namespace("nkvm-bk-nogz", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::create_dir(source.join("dir")).unwrap();
        std::fs::write(source.join("dir/file"), b"fallback".repeat(10_000)).unwrap();
        for (level, fallback) in [(6, false), (0, true)] {
            let data = tempfile::tempdir().unwrap();
            let options = BackupOptions {
                compression: Compression::Source,
                helper_image: WORKLOAD_IMAGE.to_owned(),
                gzip_level: level,
                ..engine_options(data.path(), &unique("i"))
            };
            let engine = engine(&cluster, data.path(), options).await;
            let result = backup_one(&engine, &ns, "vol").await;
            assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
            assert_eq!(result.files, Some(1));
            let warned = result
                .warnings
                .iter()
                .any(|w| w.contains("no usable pigz or gzip") && w.contains(WORKLOAD_IMAGE));
            assert_eq!(warned, fallback, "level {level}: {:?}", result.warnings);
            let rows = engine
                .store()
                .recent_runs(&RunFilter {
                    limit: 1,
                    ..RunFilter::default()
                })
                .await
                .unwrap();
            let message = rows[0].message.clone().unwrap_or_default();
            assert_eq!(
                message.contains("server compression"),
                fallback,
                "{message}"
            );
            let artifact = PathBuf::from(result.artifact.clone().unwrap());
            let stem = artifact
                .to_string_lossy()
                .trim_end_matches(".tar.gz")
                .to_owned();
            let manifest: Value =
                serde_json::from_slice(&std::fs::read(format!("{stem}.manifest.json")).unwrap())
                    .unwrap();
            let by = if fallback { "server" } else { "source" };
            assert_eq!(manifest["archive"]["compressed_by"], by, "level {level}");
            if fallback {
                assert_eq!(gzip_os_byte(&artifact), 255, "compressed by nkvm");
            }
            let tar = Command::new("tar")
                .arg("-tzf")
                .arg(&artifact)
                .output()
                .unwrap();
            assert!(tar.status.success(), "{tar:?}");
            assert!(String::from_utf8_lossy(&tar.stdout).contains("./dir/file"));
            assert!(helpers_left(&client, &ns).await.is_empty());
        }
    })
    .await;
}

/// Starts a backup of a large random volume and returns once it streams.
async fn streaming_run(
    cluster: &Cluster,
    ns: &str,
    data: &Path,
    size_mib: usize,
) -> (BackupEngine, nkvm_engine::backup::StartedRun, String) {
    let client = &cluster.client;
    let source = bound_claim(client, ns, "big", "ReadWriteOnce", "2Gi").await;
    for i in 0..size_mib / 64 {
        std::fs::write(
            source.join(format!("chunk-{i}")),
            random_bytes(64 << 20, i as u64 + 3),
        )
        .unwrap();
    }
    let options = BackupOptions {
        gzip_level: 9,
        prescan: false,
        ..engine_options(data, &unique("i"))
    };
    let engine = engine(cluster, data, options).await;
    let mut events = engine.subscribe();
    let run = engine
        .start(PvcRef::new(ns, "big"), &Requester::cli(Some("test")))
        .await
        .expect("admitted");
    let helper = loop {
        let event = tokio::time::timeout(Duration::from_mins(2), events.recv())
            .await
            .expect("progress")
            .expect("event");
        if event.stage == Stage::Stream && event.bytes_read > 20 << 20 {
            break helper_pod::helper_pod_name(&event.run_id);
        }
        assert_eq!(event.status, RunStatus::Running, "{event:?}");
    };
    (engine, run, helper)
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn helper_deleted_mid_stream_fails_the_stream() {
    in_namespace("nkvm-bk-del", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, helper) = streaming_run(&cluster, &ns, data.path(), 512).await;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        pods.delete(&helper, &params).await.expect("delete helper");
        let result = tokio::time::timeout(Duration::from_mins(3), run.handle)
            .await
            .expect("run ends")
            .expect("task");
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Stream).await;
        assert!(result.message.contains("deleted"), "{}", result.message);
        assert!(engine.active_runs().is_empty());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn cancel_mid_stream_cleans_up() {
    in_namespace("nkvm-bk-cancel", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, _helper) = streaming_run(&cluster, &ns, data.path(), 256).await;
        assert!(engine.cancel(&run.run_id));
        let result = tokio::time::timeout(Duration::from_mins(1), run.handle)
            .await
            .expect("run ends")
            .expect("task");
        assert!(result.cancelled, "{result:#?}");
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Stream).await;
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Cancelled);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn batch_of_ten_with_concurrency_three() {
    in_namespace("nkvm-bk-batch", |cluster, ns| async move {
        let client = cluster.client.clone();
        let names: Vec<String> = (0..10).map(|i| format!("pvc-{i}")).collect();
        for name in &names {
            create_claim(&client, &ns, name, "ReadWriteOnce", "64Mi").await;
        }
        let claims: Vec<&str> = names.iter().map(String::as_str).collect();
        create_consumer(&client, &ns, "binder", &claims, None).await;
        for (i, name) in names.iter().enumerate() {
            let dir = volume_dir(&client, &ns, name).await;
            std::fs::write(dir.join("id"), format!("{i}\n")).unwrap();
            std::fs::write(dir.join("blob"), random_bytes(2 << 20, i as u64 + 11)).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let options = BackupOptions {
            concurrency: 3,
            ..engine_options(data.path(), &unique("i"))
        };
        let engine = engine(&cluster, data.path(), options).await;
        let mut events = engine.subscribe();
        let targets: Vec<PvcRef> = names.iter().map(|n| PvcRef::new(&ns, n)).collect();
        let results = engine
            .run_batch(targets, &Requester::cli(Some("test")))
            .await;
        assert_eq!(results.len(), 10);
        for (result, name) in results.iter().zip(&names) {
            assert_eq!(&result.pvc, name);
            assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
            assert_eq!(result.files, Some(2));
        }
        let shas: std::collections::BTreeSet<_> =
            results.iter().map(|r| r.sha256.clone().unwrap()).collect();
        assert_eq!(shas.len(), 10, "independent archives");

        // At most 3 runs past the queue at any time.
        let mut stage_of: BTreeMap<String, (Stage, RunStatus)> = BTreeMap::new();
        let mut busiest = 0;
        while let Ok(event) = events.try_recv() {
            stage_of.insert(event.run_id.clone(), (event.stage, event.status));
            let busy = stage_of
                .values()
                .filter(|(stage, status)| {
                    *status == RunStatus::Running && *stage != Stage::Preflight
                })
                .count();
            busiest = busiest.max(busy);
        }
        assert!(busiest <= 3, "{busiest} runs at once");
        assert!(busiest >= 2, "runs did not overlap ({busiest})");
        assert!(helpers_left(&client, &ns).await.is_empty());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn recovery_after_a_killed_process() {
    in_namespace("nkvm-bk-recover", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("f"), b"x").unwrap();
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get("vol")
            .await
            .unwrap();
        let uid = pvc.metadata.uid.unwrap();
        let data = tempfile::tempdir().unwrap();
        let instance = unique("i");

        // What a killed process leaves: a running row, a helper pod, a partial archive.
        {
            let store = Store::open(&data.path().join("nkvm.db")).await.unwrap();
            store
                .insert_run(&NewRun {
                    run_id: "20260101t000000-abcdef".to_owned(),
                    pvc_uid: uid.clone(),
                    namespace: ns.clone(),
                    pvc: "vol".to_owned(),
                    started_by: "killed".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: None,
                })
                .await
                .unwrap();
        }
        let orphan_params = HelperPodParams {
            run_id: "20260101t000000-abcdef".to_owned(),
            namespace: ns.clone(),
            pvc_name: "vol".to_owned(),
            pvc_uid: uid,
            image: HELPER_IMAGE.to_owned(),
            node: None,
            run_as: None,
            active_deadline: Duration::from_mins(10),
            resources: helper_pod::HelperResources::default(),
            instance: Some(instance.clone()),
        };
        let orphan = helper_pod::helper_pod(&orphan_params);
        Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &orphan)
            .await
            .unwrap();
        // Another instance's helper must survive.
        let other = helper_pod::helper_pod(&HelperPodParams {
            run_id: "20260101t000000-999999".to_owned(),
            instance: Some("someone-else".to_owned()),
            ..orphan_params.clone()
        });
        Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &other)
            .await
            .unwrap();
        let partial_dir = data.path().join("artifacts").join(&ns).join("vol");
        std::fs::create_dir_all(&partial_dir).unwrap();
        let partial = partial_dir.join("20260101T000000.000Z.tar.gz.partial");
        std::fs::write(&partial, b"half an archive").unwrap();
        let finished = partial_dir.join("20251231T000000.000Z.tar.gz");
        std::fs::write(&finished, b"kept").unwrap();

        // The restarted process.
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
        assert_eq!(report.interrupted, ["20260101t000000-abcdef"]);
        assert_eq!(
            report.helpers_deleted,
            [format!("{ns}/nkvm-backup-20260101t000000-abcdef")]
        );
        assert_eq!(report.partials_removed, std::slice::from_ref(&partial));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(!partial.exists());
        assert!(finished.exists());
        assert_eq!(
            helpers_left(&client, &ns).await,
            ["nkvm-backup-20260101t000000-999999"]
        );
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Interrupted);

        // Then a backup works as usual.
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn aborted_task_cleans_up_and_recovery_marks_it_interrupted() {
    in_namespace("nkvm-bk-abort", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, helper) = streaming_run(&cluster, &ns, data.path(), 256).await;
        // A task dropped mid-stream (as when its process is killed, minus the kill).
        run.handle.abort();
        let _ = run.handle.await;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
        wait_for(
            "the helper deleted by the drop guard",
            Duration::from_millis(500),
            || {
                let pods = pods.clone();
                let helper = helper.clone();
                async move { pods.get_opt(&helper).await.ok()?.is_none().then_some(()) }
            },
        )
        .await;
        assert!(files_under(data.path(), ".partial").is_empty());
        assert!(engine.active_runs().is_empty());
        let report = engine
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .unwrap();
        assert_eq!(report.interrupted, std::slice::from_ref(&run.run_id));
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Interrupted);
    })
    .await;
}
