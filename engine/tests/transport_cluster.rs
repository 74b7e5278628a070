//! Backups and restores whose exec connection through the API server is lost mid-stream, on the
//! real test cluster: the stream client goes through a relay ([`support::relay`]) that closes every
//! connection at once, as a killed API server's do, and lets new ones through (the API server is
//! back). With stream attempts left the run streams again in the same helper and its archive
//! verifies with system `tar` and `sha256sum`; with none it fails at once naming the lost
//! connection, leaving nothing behind; a restore fails at once naming it. All end long before the
//! stall timeout: before the fix a backup's reader waited on the dropped connection until that
//! timer fired, and a restore blamed the helper.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nkvm_engine::backup::{
    BackupEngine, BackupOptions, BackupResult, PvcRef, Requester, ResultStatus, stream_client,
};
use nkvm_engine::connection::{self, ConnectOptions};
use nkvm_engine::domain::{RestoreStage, Stage};
use nkvm_engine::store::Store;
use support::cluster::*;
use support::relay::{self, Relay};
use support::restores::{backed_up, into_new, restore_engine};

/// Far longer than the tests wait for a run: a run that only the stall timer ends fails them.
const STALL: Duration = Duration::from_mins(10);
const VOLUME_MIB: usize = 256;

/// An engine whose exec streams go through a new relay, and the relay.
async fn relayed_engine(
    cluster: &Cluster,
    data: &Path,
    options: BackupOptions,
) -> (BackupEngine, Relay) {
    let connected =
        connection::connect(&support::test_cluster_source(), &ConnectOptions::default())
            .await
            .expect("connect to the test cluster");
    let relay = Relay::start(relay::upstream(connected.config())).await;
    let stream = stream_client(&relay.config(connected.config())).expect("relayed stream client");
    let store = Store::open(&data.join("nkvm.db"))
        .await
        .expect("open store");
    let engine = BackupEngine::with_clients(cluster.client.clone(), stream, store, options);
    (engine, relay)
}

/// A claim `big` filled with [`VOLUME_MIB`] of random bytes; its directory.
async fn random_volume(cluster: &Cluster, ns: &str) -> PathBuf {
    let source = bound_claim(&cluster.client, ns, "big", "ReadWriteOnce", "1Gi").await;
    for i in 0..VOLUME_MIB / 64 {
        std::fs::write(
            source.join(format!("chunk-{i}")),
            random_bytes(64 << 20, i as u64 + 11),
        )
        .unwrap();
    }
    source
}

/// The test options with a stall timeout no test waits for and `attempts` streams.
fn options(data: &Path, attempts: u32) -> BackupOptions {
    BackupOptions {
        gzip_level: 9,
        prescan: false,
        stall_timeout: STALL,
        stream_attempts: attempts,
        ..engine_options(data, &unique("i"))
    }
}

/// Backs up a random volume of [`VOLUME_MIB`] through the relay, cutting every connection once
/// 20 MiB streamed; returns the result, the volume's directory and the time from the cut to the
/// run's end.
async fn cut_mid_stream(
    cluster: &Cluster,
    ns: &str,
    data: &Path,
    attempts: u32,
) -> (BackupResult, PathBuf, Duration) {
    let source = bound_claim(&cluster.client, ns, "big", "ReadWriteOnce", "1Gi").await;
    for i in 0..VOLUME_MIB / 64 {
        std::fs::write(
            source.join(format!("chunk-{i}")),
            random_bytes(64 << 20, i as u64 + 11),
        )
        .unwrap();
    }
    let options = BackupOptions {
        gzip_level: 9,
        prescan: false,
        stall_timeout: STALL,
        stream_attempts: attempts,
        ..engine_options(data, &unique("i"))
    };
    let (engine, relay) = relayed_engine(cluster, data, options).await;
    let mut events = engine.subscribe();
    let run = engine
        .start(PvcRef::new(ns, "big"), &Requester::cli(Some("transport")))
        .await
        .expect("admitted");
    support::next_event(&mut events, |e| {
        e.stage == Stage::Stream && e.bytes_read > 20 << 20
    })
    .await;
    let cut = relay.cut();
    let at = Instant::now();
    assert!(cut >= 1, "the exec stream went through the relay");
    let result = tokio::time::timeout(Duration::from_mins(3), run.handle)
        .await
        .expect("the run ends long before the stall timeout")
        .expect("task");
    (result, source, at.elapsed())
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_lost_connection_mid_stream_streams_again_and_the_archive_verifies() {
    in_namespace("nkvm-bk-lost", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (result, source, after) = cut_mid_stream(&cluster, &ns, data.path(), 3).await;
        println!("connection cut → run succeeded {after:?} later");
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        assert_eq!(result.warnings.len(), 1, "{:?}", result.warnings);
        let warning = &result.warnings[0];
        assert!(
            warning.starts_with("stream 1 of 3 failed: lost the connection to the API server"),
            "{warning}"
        );
        assert!(
            helpers_left(&cluster.client, &ns).await.is_empty(),
            "helper left"
        );

        let artifact = PathBuf::from(result.artifact.clone().unwrap());
        let dir = artifact.parent().unwrap();
        let name = artifact.file_name().unwrap().to_string_lossy().into_owned();
        let check = Command::new("sha256sum")
            .args(["-c", &format!("{name}.sha256")])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        assert_eq!(files_under(data.path(), ".partial"), Vec::<PathBuf>::new());
        assert_eq!(
            files_under(data.path(), ".tar.gz"),
            vec![artifact.clone()],
            "one archive"
        );
        assert_extracts_to(&artifact, &source);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn with_one_stream_attempt_a_lost_connection_fails_at_once_and_names_it() {
    in_namespace("nkvm-bk-lost1", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (result, _, after) = cut_mid_stream(&cluster, &ns, data.path(), 1).await;
        println!(
            "connection cut → run failed {after:?} later: {}",
            result.message
        );
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Stream).await;
        assert!(
            result
                .message
                .starts_with("lost the connection to the API server while streaming"),
            "{}",
            result.message
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_restore_whose_connection_is_lost_fails_at_once_and_names_it() {
    in_namespace("nkvm-rs-lost", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        random_volume(&cluster, &ns).await;
        let (engine, relay) = relayed_engine(&cluster, data.path(), options(data.path(), 1)).await;
        let (_, run_id) = backed_up(&engine, &ns, "big").await;
        let restoring = restore_engine(engine);
        let mut events = restoring.subscribe();
        let job = restoring
            .start_restore(
                into_new(&run_id, "copy", None),
                &Requester::cli(Some("transport")),
            )
            .await
            .expect("admitted");
        support::next_event(&mut events, |e| {
            e.stage == RestoreStage::Stream && e.progress.bytes > 20 << 20
        })
        .await;
        assert!(relay.cut() >= 1, "the exec stream went through the relay");
        let at = Instant::now();
        let result = tokio::time::timeout(Duration::from_mins(3), job.handle)
            .await
            .expect("the restore ends long before the stall timeout")
            .expect("task");
        println!(
            "connection cut → restore failed {:?} later: {}",
            at.elapsed(),
            result.message
        );
        assert_eq!(result.status, ResultStatus::Failed, "{result:#?}");
        assert_eq!(result.stage, Some(RestoreStage::Stream), "{result:#?}");
        assert!(
            result
                .message
                .starts_with("lost the connection to the API server while restoring"),
            "{}",
            result.message
        );
        assert!(
            helpers_left(&cluster.client, &ns).await.is_empty(),
            "helper left"
        );
    })
    .await;
}
