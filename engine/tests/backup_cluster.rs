//! Backups against the real test cluster: a round trip of an awkward volume checked with system `tar`
//! and `sha256sum`, the failure paths before streaming (each leaving no helper pod and no `.partial`
//! file), source compression's fallback, and a batch of 10 PVCs with concurrency 3. Runs stopped
//! mid-stream and start-up recovery are in `backup_interrupted_cluster.rs`.
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
use std::time::Instant;

use nkvm_engine::backup::{
    BackupOptions, Compression, ProgressEvent, PvcRef, Requester, ResultStatus,
};
use nkvm_engine::domain::{RunStatus, Stage};
use nkvm_engine::store::RunFilter;
use serde_json::{Value, json};

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
