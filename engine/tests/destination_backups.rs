//! Backups through every destination against the real test cluster and the real test servers
//! (`end2end/servers/up`: versitygw for S3, sshd for SFTP, vsftpd for FTPS): a volume backed up to
//! each destination is read back through `download::open` (the one way nkvm reads archives),
//! checked with the system's `sha256sum -c` and extracted with `tar -x`, and the files equal the
//! volume's; an S3 server killed mid-upload fails the run at `write` with nothing under the final
//! key, and start-up recovery aborts the multipart upload it left; an unreachable destination
//! fails at pre-flight before any helper pod exists.
//!
//! Needs `NKVM_TEST_KUBECONFIG` (the test cluster) and the servers' env file
//! (`NKVM_TEST_SERVERS_ENV`, default `<repo>/.servers/env`); fails without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nkvm_engine::backup::{
    BackupEngine, BackupOptions, BackupResult, PvcRef, Requester, ResultStatus,
};
use nkvm_engine::destination::{ArtifactKeys, Destinations};
use nkvm_engine::domain::{RunStatus, Stage};
use nkvm_engine::download::{self, DownloadKind};
use nkvm_engine::store::{RunFilter, RunRecord, Store};
use support::cluster::{
    Cluster, HELPER_IMAGE, assert_extracts_to, bound_claim, create_consumer, files_under,
    helpers_left, in_namespace, random_bytes, unique,
};
use support::servers::{Servers, free_port};
use tokio::io::AsyncWriteExt as _;

/// A destinations file naming the test servers `s3`, `sftp` and `ftps` (each under a prefix of
/// its own), plus `extra` entries; loaded as nkvm loads `--destinations`.
fn destinations(servers: &Servers, data: &Path, extra: &str) -> Destinations {
    let prefix = unique("dest");
    let text = format!(
        "destinations:
  - {{name: s3, type: s3, endpoint: '{endpoint}', bucket: {bucket}, prefix: '{prefix}',
     path_style: true, access_key_id_file: '{akid}', secret_access_key_file: '{sak}',
     ca_file: '{ca}', part_size: 5MiB}}
  - {{name: sftp, type: sftp, host: {sftp_host}, port: {sftp_port}, user: {sftp_user},
     path: '/upload/{prefix}', private_key_file: '{key}', known_hosts_file: '{known}'}}
  - {{name: ftps, type: ftps, host: {ftps_host}, port: {ftps_port}, user: {ftps_user},
     path: '/upload/{prefix}', password_file: '{password}', ca_file: '{ca}'}}
{extra}",
        endpoint = servers.get("NKVM_TEST_S3_ENDPOINT"),
        bucket = servers.get("NKVM_TEST_S3_BUCKET"),
        akid = servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        sak = servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        ca = servers.get("NKVM_TEST_CA_FILE"),
        sftp_host = servers.get("NKVM_TEST_SFTP_HOST"),
        sftp_port = servers.get("NKVM_TEST_SFTP_PORT"),
        sftp_user = servers.get("NKVM_TEST_SFTP_USER"),
        key = servers.get("NKVM_TEST_SFTP_KEY_FILE"),
        known = servers.get("NKVM_TEST_SFTP_KNOWN_HOSTS"),
        ftps_host = servers.get("NKVM_TEST_FTPS_HOST"),
        ftps_port = servers.get("NKVM_TEST_FTPS_PORT"),
        ftps_user = servers.get("NKVM_TEST_FTPS_USER"),
        password = servers.get("NKVM_TEST_FTPS_PASSWORD_FILE"),
    );
    let file = data.join("destinations.yaml");
    std::fs::write(&file, text).unwrap();
    Destinations::load(Some(&file), data).unwrap_or_else(|e| panic!("{e}"))
}

async fn engine(cluster: &Cluster, data: &Path, destinations: Destinations) -> BackupEngine {
    let store = Store::open(&data.join("nkvm.db"))
        .await
        .expect("open store");
    let options = BackupOptions {
        data_dir: data.to_owned(),
        destinations: Some(destinations),
        helper_image: HELPER_IMAGE.to_owned(),
        instance: Some(unique("i")),
        schedule_timeout: Duration::from_mins(2),
        stall_timeout: Duration::from_mins(1),
        ..BackupOptions::default()
    };
    BackupEngine::with_clients(
        cluster.client.clone(),
        cluster.stream.clone(),
        store,
        options,
    )
}

async fn backup_to(engine: &BackupEngine, ns: &str, pvc: &str, destination: &str) -> BackupResult {
    engine
        .run_batch_to(
            vec![PvcRef::new(ns, pvc)],
            Some(destination),
            &Requester::cli(Some("destination_backups")),
        )
        .await
        .remove(0)
}

async fn row_of(store: &Store, run_id: &str) -> RunRecord {
    store
        .recent_runs(&RunFilter {
            run_id: Some(run_id.to_owned()),
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .unwrap()
        .remove(0)
}

/// Copies one file of a run, as nkvm serves it, into `dir`; returns its path.
async fn fetch(
    destinations: &Destinations,
    run: &RunRecord,
    kind: DownloadKind,
    dir: &Path,
) -> PathBuf {
    let mut download = download::open(destinations, run, kind)
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    let path = dir.join(&download.file_name);
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    let copied = tokio::io::copy(&mut download.reader, &mut file)
        .await
        .unwrap();
    file.flush().await.unwrap();
    if let Some(len) = download.len {
        assert_eq!(
            copied, len,
            "{kind}: size announced and bytes served differ"
        );
    }
    path
}

/// A volume with nested directories, an empty file, a symlink and 13 MiB of random data (three
/// S3 parts of 5 MiB once compressed).
fn write_volume(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("blob.bin"), random_bytes(13 << 20, 42)).unwrap();
    std::fs::write(root.join("ünïcødé.txt"), "grüße\n").unwrap();
    std::os::unix::fs::symlink("a/b/deep.txt", root.join("link")).unwrap();
}

/// Backs a volume up to `name`, then reads it back through nkvm and checks it by the book.
async fn round_trip(name: &str) {
    let servers = Servers::load();
    in_namespace(&format!("nkvm-dst-{name}"), |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
        write_volume(&source);
        create_consumer(&client, &ns, "app", &["vol"], None).await;
        let data = tempfile::tempdir().unwrap();
        let destinations = destinations(&servers, data.path(), "");
        let destination = destinations.get(name).unwrap().clone();
        let engine = engine(&cluster, data.path(), destinations.clone()).await;

        let result = backup_to(&engine, &ns, "vol", name).await;
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        assert_eq!(result.destination.as_deref(), Some(name));
        let run = row_of(engine.store(), result.run_id.as_deref().unwrap()).await;
        assert_eq!(run.destination.as_deref(), Some(name));
        let key = run.object_key.clone().unwrap();
        assert!(
            key.starts_with(&format!("{ns}/vol/")) && key.ends_with("Z.tar.gz"),
            "{key}"
        );
        assert_eq!(
            run.artifact.as_deref(),
            Some(destination.uri(&key).as_str())
        );
        assert_eq!(result.artifact, run.artifact);
        let scheme = match name {
            "local" => "/",
            other => other,
        };
        assert!(
            result.artifact.as_deref().unwrap().starts_with(scheme),
            "{result:#?}"
        );

        // The three files, and nothing else, under the run's prefix.
        let keys = ArtifactKeys::for_archive(&key).unwrap();
        let listed: Vec<String> = destination
            .list(&ns)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let mut expected = vec![
            keys.archive.clone(),
            keys.sidecar.clone(),
            keys.manifest.clone(),
        ];
        expected.sort();
        assert_eq!(listed, expected);
        assert!(destination.pending_uploads().await.unwrap().is_empty());

        // Read back through nkvm: sha256sum -c, tar -x, equal to the volume.
        let out = tempfile::tempdir().unwrap();
        let archive = fetch(&destinations, &run, DownloadKind::Archive, out.path()).await;
        fetch(&destinations, &run, DownloadKind::Checksum, out.path()).await;
        let manifest = fetch(&destinations, &run, DownloadKind::Manifest, out.path()).await;
        let name_of = archive.file_name().unwrap().to_string_lossy().into_owned();
        let check = Command::new("sha256sum")
            .args(["-c", &format!("{name_of}.sha256")])
            .current_dir(out.path())
            .output()
            .unwrap();
        assert!(check.status.success(), "{check:?}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        assert_eq!(
            manifest["archive"]["sha256"],
            serde_json::json!(result.sha256)
        );
        assert_eq!(manifest["archive"]["file"], serde_json::json!(name_of));
        assert_extracts_to(&archive, &source);

        assert!(helpers_left(&client, &ns).await.is_empty());
        assert!(files_under(data.path(), ".partial").is_empty());
        // Remote runs leave nothing on nkvm's disk.
        if name != "local" {
            assert!(files_under(&data.path().join("artifacts"), ".tar.gz").is_empty());
        }
        for key in [&keys.archive, &keys.sidecar, &keys.manifest] {
            destination.delete(key).await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
async fn round_trip_through_local() {
    round_trip("local").await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
async fn round_trip_through_s3() {
    round_trip("s3").await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
async fn round_trip_through_sftp() {
    round_trip("sftp").await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
async fn round_trip_through_ftps() {
    round_trip("ftps").await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
async fn an_unreachable_destination_fails_at_preflight_before_any_helper_pod() {
    let servers = Servers::load();
    in_namespace("nkvm-dst-down", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("f"), b"x").unwrap();
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let down = format!(
            "  - {{name: down, type: s3, endpoint: 'https://127.0.0.1:{port}', bucket: b, \
             path_style: true, access_key_id_file: '{}', secret_access_key_file: '{}'}}\n",
            servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
            servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        );
        let engine = engine(
            &cluster,
            data.path(),
            destinations(&servers, data.path(), &down),
        )
        .await;
        let result = backup_to(&engine, &ns, "vol", "down").await;
        assert_eq!(result.status, ResultStatus::Failed, "{result:#?}");
        assert_eq!(result.stage, Some(Stage::Preflight), "{result:#?}");
        for part in [
            "destination down: cannot connect to https://127.0.0.1:",
            "after 4 attempts",
            "no helper pod was started",
            "nkvm destinations check down",
        ] {
            assert!(result.message.contains(part), "{part}: {}", result.message);
        }
        assert!(result.helper_pod.is_none(), "{result:#?}");
        assert!(helpers_left(&client, &ns).await.is_empty());
        let run = row_of(engine.store(), result.run_id.as_deref().unwrap()).await;
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.stage, Some(Stage::Preflight));
        assert_eq!(run.destination.as_deref(), Some("down"));

        // An unknown name is refused before anything starts.
        let refused = backup_to(&engine, &ns, "vol", "nowhere").await;
        assert_eq!(refused.status, ResultStatus::Failed);
        assert!(
            refused.message.contains("no destination named \"nowhere\""),
            "{}",
            refused.message
        );
        assert!(refused.run_id.is_none());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster and servers"]
#[allow(
    clippy::too_many_lines,
    reason = "one failure scenario, checked step by step"
)]
async fn s3_killed_mid_upload_fails_at_write_and_recovery_aborts_the_multipart_upload() {
    let servers = Servers::load();
    in_namespace("nkvm-dst-kill", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "big", "ReadWriteOnce", "2Gi").await;
        for i in 0..4 {
            std::fs::write(
                source.join(format!("chunk-{i}")),
                random_bytes(64 << 20, i + 5),
            )
            .unwrap();
        }
        // An S3 server of this test's own, to kill.
        let s3_data = tempfile::tempdir().unwrap();
        std::fs::create_dir(s3_data.path().join("own-bucket")).unwrap();
        let port = free_port();
        let start = || servers.start_own_s3(port, s3_data.path());
        let mut server = start().await;
        let own = format!(
            "  - {{name: own, type: s3, endpoint: 'https://127.0.0.1:{port}', bucket: own-bucket, \
             path_style: true, access_key_id_file: '{}', secret_access_key_file: '{}', \
             ca_file: '{}', part_size: 5MiB}}\n",
            servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
            servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
            servers.get("NKVM_TEST_CA_FILE"),
        );
        let data = tempfile::tempdir().unwrap();
        let destinations = destinations(&servers, data.path(), &own);
        let destination = destinations.get("own").unwrap().clone();
        let engine = engine(&cluster, data.path(), destinations).await;
        let mut events = engine.subscribe();
        let run = engine
            .start_to(
                PvcRef::new(&ns, "big"),
                Some("own"),
                &Requester::cli(Some("test")),
            )
            .await
            .expect("admitted");
        // Kill the server once parts are on their way.
        loop {
            let event = tokio::time::timeout(Duration::from_mins(2), events.recv())
                .await
                .expect("progress")
                .expect("event");
            assert_eq!(event.status, RunStatus::Running, "{event:?}");
            if event.stage == Stage::Stream && event.archive_bytes > 16 << 20 {
                break;
            }
        }
        server.kill();
        let result = tokio::time::timeout(Duration::from_mins(3), run.handle)
            .await
            .expect("the run ends")
            .expect("task");
        eprintln!(
            "message: {}\nwarnings: {:?}",
            result.message, result.warnings
        );
        assert_eq!(result.status, ResultStatus::Failed, "{result:#?}");
        assert_eq!(result.stage, Some(Stage::Write), "{result:#?}");
        for part in [
            "destination own:",
            &format!("127.0.0.1:{port}"),
            "nothing was stored under the final key",
            "nkvm destinations check own",
        ] {
            assert!(result.message.contains(part), "{part}: {}", result.message);
        }
        // The abort could not reach the dead server: the run says so.
        assert!(
            result.warnings.iter().any(|w| w.contains("next start")),
            "{:?}",
            result.warnings
        );
        assert!(helpers_left(&client, &ns).await.is_empty());

        // The server is back: no object under the final key, one unfinished multipart upload.
        let _server = start().await;
        let row = row_of(engine.store(), result.run_id.as_deref().unwrap()).await;
        assert_eq!(row.stage, Some(Stage::Write));
        let key = row.object_key.clone().unwrap();
        assert!(destination.list("").await.unwrap().is_empty());
        assert!(!s3_data.path().join("own-bucket").join(&key).exists());
        assert_eq!(
            destination.pending_uploads().await.unwrap(),
            std::slice::from_ref(&key)
        );

        // Start-up recovery aborts it (the run is this instance's and no longer running).
        let report = engine
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .expect("recovery");
        assert_eq!(
            report.uploads_aborted,
            [destination.uri(&key)],
            "{report:#?}"
        );
        assert!(destination.pending_uploads().await.unwrap().is_empty());
        assert!(destination.list("").await.unwrap().is_empty());
    })
    .await;
}
