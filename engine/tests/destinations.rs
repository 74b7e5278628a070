//! Destinations against real servers on loopback (versitygw for S3, OpenSSH's sshd for SFTP,
//! vsftpd with `require_ssl_reuse=YES` for FTPS), started by `end2end/servers/up`. The tests read
//! `NKVM_TEST_SERVERS_ENV` (default `<repo>/.servers/env`) and fail — never skip — without it.
//! Run: `end2end/servers/up && cargo test -p nkvm-engine --test destinations -- --include-ignored`

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nkvm_engine::destination::{
    Destination, DestinationError, Destinations, DestinationsConfig, Kind,
};
use sha2::{Digest as _, Sha256};
use support::servers::{OwnServer, Servers, free_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MIB: usize = 1 << 20;

fn unique(tag: &str) -> String {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).unwrap();
    format!("t-{tag}-{}", hex::encode(random))
}

/// Builds one destination through the destinations file parser (so the tests cover it too).
fn destination(yaml_entry: &str) -> Destination {
    let text = format!("destinations:\n  - {yaml_entry}\n");
    let config = DestinationsConfig::parse(&text, Path::new("/"), Path::new("/nonexistent"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let destinations = Destinations::from_config(&config).unwrap();
    destinations.get("under-test").unwrap().clone()
}

fn s3(servers: &Servers, prefix: &str, extra: &str) -> Destination {
    destination(&format!(
        "{{name: under-test, type: s3, endpoint: '{}', bucket: {}, prefix: '{prefix}', \
         region: us-east-1, path_style: true, access_key_id_file: '{}', \
         secret_access_key_file: '{}', {extra}}}",
        servers.get("NKVM_TEST_S3_ENDPOINT"),
        servers.get("NKVM_TEST_S3_BUCKET"),
        servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
    ))
}

fn s3_trusting(servers: &Servers, prefix: &str, extra: &str) -> Destination {
    s3(
        servers,
        prefix,
        &format!("ca_file: '{}', {extra}", servers.get("NKVM_TEST_CA_FILE")),
    )
}

fn sftp(servers: &Servers, path: &str, port: &str, key: &str, known_hosts: &str) -> Destination {
    destination(&format!(
        "{{name: under-test, type: sftp, host: {}, port: {port}, user: {}, path: '{path}', \
         private_key_file: '{key}', known_hosts_file: '{known_hosts}'}}",
        servers.get("NKVM_TEST_SFTP_HOST"),
        servers.get("NKVM_TEST_SFTP_USER"),
    ))
}

fn sftp_ok(servers: &Servers, path: &str) -> Destination {
    sftp(
        servers,
        path,
        servers.get("NKVM_TEST_SFTP_PORT"),
        servers.get("NKVM_TEST_SFTP_KEY_FILE"),
        servers.get("NKVM_TEST_SFTP_KNOWN_HOSTS"),
    )
}

fn ftps(servers: &Servers, path: &str, port: &str, password_file: &str, ca: &str) -> Destination {
    destination(&format!(
        "{{name: under-test, type: ftps, host: {}, port: {port}, user: {}, path: '{path}', \
         password_file: '{password_file}', ca_file: '{ca}'}}",
        servers.get("NKVM_TEST_FTPS_HOST"),
        servers.get("NKVM_TEST_FTPS_USER"),
    ))
}

fn ftps_ok(servers: &Servers, path: &str) -> Destination {
    ftps(
        servers,
        path,
        servers.get("NKVM_TEST_FTPS_PORT"),
        servers.get("NKVM_TEST_FTPS_PASSWORD_FILE"),
        servers.get("NKVM_TEST_CA_FILE"),
    )
}

/// Deterministic pseudo-random bytes (xorshift), produced chunk by chunk.
struct Data(u64);

impl Data {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Uploads `size` bytes under `key` in 1 MiB writes and commits; returns the sha256.
async fn upload(destination: &Destination, key: &str, size: usize) -> (String, u64) {
    let mut upload = destination
        .begin_upload(key, Some(size as u64))
        .await
        .unwrap();
    let mut data = Data(0x9e37_79b9_7f4a_7c15);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB);
        data.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        upload.write_all(&buf[..n]).await.unwrap();
        left -= n;
    }
    let committed = upload.commit().await.unwrap();
    assert_eq!(committed.key, key);
    assert_eq!(committed.bytes, size as u64);
    (hex::encode(hash.finalize()), committed.bytes)
}

async fn read_sha256(destination: &Destination, key: &str) -> (String, u64) {
    let mut reader = destination.open_read(key).await.unwrap();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    (hex::encode(hash.finalize()), total)
}

async fn keys(destination: &Destination) -> Vec<String> {
    destination
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Waits until `condition` holds (background aborts run asynchronously).
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn round_trip(destination: &Destination, size: usize) {
    let key = "shop/data/20261128T231858.123Z.tar.gz";
    let started = Instant::now();
    let (written, bytes) = upload(destination, key, size).await;
    let elapsed = started.elapsed();
    eprintln!(
        "{:?}: uploaded {} MiB in {:.2} s ({:.1} MiB/s)",
        destination.kind(),
        size / MIB,
        elapsed.as_secs_f64(),
        size as f64 / MIB as f64 / elapsed.as_secs_f64()
    );
    let (read, read_bytes) = read_sha256(destination, key).await;
    assert_eq!((read, read_bytes), (written.clone(), bytes));
    let sidecar = format!("{written}  20261128T231858.123Z.tar.gz\n");
    destination
        .put(&format!("{key}.sha256"), Bytes::from(sidecar.clone()))
        .await
        .unwrap();
    let mut back = String::new();
    destination
        .open_read(&format!("{key}.sha256"))
        .await
        .unwrap()
        .read_to_string(&mut back)
        .await
        .unwrap();
    assert_eq!(back, sidecar);
    let listed = destination.list("shop").await.unwrap();
    let listed: Vec<_> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(
        listed,
        [
            (key, Some(size as u64)),
            (
                "shop/data/20261128T231858.123Z.tar.gz.sha256",
                Some(sidecar.len() as u64)
            )
        ]
    );
    // A committed file is never replaced (S3 replaces objects: archive keys are unique per run).
    if destination.kind() != Kind::S3 {
        let mut again = destination.begin_upload(key, None).await.unwrap();
        again.write_all(b"other").await.unwrap();
        let error = again.commit().await.map(|_| ()).unwrap_err();
        assert_eq!(error.step(), "commit", "{error}");
        assert_eq!(read_sha256(destination, key).await.0, written);
    }
    destination.delete(key).await.unwrap();
    destination.delete(&format!("{key}.sha256")).await.unwrap();
    assert!(matches!(
        destination.delete(key).await,
        Err(DestinationError::NotFound { .. })
    ));
    assert!(matches!(
        destination.open_read(key).await,
        Err(DestinationError::NotFound { .. })
    ));
    assert_eq!(keys(destination).await, Vec::<String>::new());
    let report = destination.check().await.unwrap();
    assert!(report.probe_uri.contains(".nkvm-check/"), "{report:?}");
    assert_eq!(keys(destination).await, Vec::<String>::new());
}

/// Writes `size` bytes to an upload without committing it.
async fn write_some(upload: &mut nkvm_engine::destination::Upload, size: usize) {
    let mut data = Data(7);
    let mut buf = vec![0u8; MIB];
    for _ in 0..size / MIB {
        data.fill(&mut buf);
        upload.write_all(&buf).await.unwrap();
    }
}

async fn abandoned_uploads_leave_nothing(destination: &Destination, size: usize) {
    let key = "ns/pvc/dropped.tar.gz";
    let mut dropped = destination.begin_upload(key, None).await.unwrap();
    write_some(&mut dropped, size).await;
    drop(dropped);
    let d = destination.clone();
    eventually("the dropped upload is cleaned up", || {
        let d = d.clone();
        async move { keys(&d).await.is_empty() && pending(&d).await.is_empty() }
    })
    .await;
    let mut aborted = destination.begin_upload(key, None).await.unwrap();
    write_some(&mut aborted, size).await;
    aborted.abort().await.unwrap();
    assert_eq!(keys(destination).await, Vec::<String>::new());
    assert_eq!(pending(destination).await, Vec::<String>::new());
}

/// S3: multipart uploads neither completed nor aborted; others: none (temporary files are listed).
async fn pending(destination: &Destination) -> Vec<String> {
    destination.pending_uploads().await.unwrap()
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "a secret leaked into: {text}");
    }
}

// ---------------------------------------------------------------- S3

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn s3_round_trip_of_a_multipart_stream() {
    let servers = Servers::load();
    let d = s3_trusting(&servers, &unique("s3"), "part_size: 16MiB");
    assert_eq!(d.kind(), Kind::S3);
    assert!(
        d.uri("a/b").starts_with("s3://nkvm-test/t-s3-"),
        "{}",
        d.uri("a/b")
    );
    // 70 MiB in 16 MiB parts: five parts, two in flight at a time.
    round_trip(&d, 70 * MIB).await;
    assert_eq!(pending(&d).await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn s3_dropped_and_aborted_uploads_leave_no_object_and_no_multipart_upload() {
    let servers = Servers::load();
    let d = s3_trusting(&servers, &unique("s3-abort"), "part_size: 5MiB");
    abandoned_uploads_leave_nothing(&d, 12 * MIB).await;
    // While an upload runs, it is pending, and nothing is under the final key.
    let mut running = d.begin_upload("ns/pvc/running.tar.gz", None).await.unwrap();
    write_some(&mut running, 11 * MIB).await;
    assert_eq!(pending(&d).await, ["ns/pvc/running.tar.gz"]);
    assert_eq!(keys(&d).await, Vec::<String>::new());
    running.abort().await.unwrap();
    assert_eq!(pending(&d).await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn s3_refusals_are_clear_and_hold_no_secret() {
    let servers = Servers::load();
    let secret = servers.file("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE");
    let prefix = unique("s3-refuse");

    // Untrusted CA (another CA's bundle, and the system roots).
    let other = s3(
        &servers,
        &prefix,
        &format!("ca_file: '{}'", servers.get("NKVM_TEST_OTHER_CA_FILE")),
    );
    let e = other.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::VerifyServer { .. }), "{e}");
    assert!(e.to_string().contains("ca_file"), "{e}");
    let system = s3(&servers, &prefix, "");
    let e = system.begin_upload("a", None).await.unwrap_err();
    assert!(matches!(e, DestinationError::VerifyServer { .. }), "{e}");
    assert!(e.to_string().contains("set ca_file"), "{e}");

    // Wrong secret: refused at once (no retries), without echoing it.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret-0123456789\n").unwrap();
    let bad = destination(&format!(
        "{{name: under-test, type: s3, endpoint: '{}', bucket: {}, path_style: true, \
         access_key_id_file: '{}', secret_access_key_file: '{}', ca_file: '{}'}}",
        servers.get("NKVM_TEST_S3_ENDPOINT"),
        servers.get("NKVM_TEST_S3_BUCKET"),
        servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        wrong.display(),
        servers.get("NKVM_TEST_CA_FILE"),
    ));
    let started = Instant::now();
    let e = bad.begin_upload("a", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "retried a 403");
    assert!(matches!(e, DestinationError::Authenticate { .. }), "{e}");
    assert!(e.to_string().contains("secret access key"), "{e}");
    assert_no_secret(
        &format!("{e} {e:?} {bad:?}"),
        &[&secret, "not-the-secret-0123456789"],
    );

    // Missing bucket.
    let missing = destination(&format!(
        "{{name: under-test, type: s3, endpoint: '{}', bucket: no-such-bucket-nkvm, path_style: true, \
         access_key_id_file: '{}', secret_access_key_file: '{}', ca_file: '{}'}}",
        servers.get("NKVM_TEST_S3_ENDPOINT"),
        servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        servers.get("NKVM_TEST_CA_FILE"),
    ));
    let e = missing.begin_upload("a", None).await.unwrap_err();
    assert_eq!(e.step(), "upload", "{e}");
    assert!(
        e.to_string().contains("no-such-bucket-nkvm does not exist"),
        "{e}"
    );
    assert_no_secret(&format!("{e} {e:?} {missing:?}"), &[&secret]);

    // A missing secret file names the reference, not a value.
    let absent = destination(
        "{name: under-test, type: s3, endpoint: 'https://127.0.0.1:1', bucket: b, path_style: true, \
         access_key_id_env: NKVM_TEST_SURELY_UNSET, secret_access_key_file: /nonexistent}",
    );
    let e = absent.check().await.unwrap_err();
    assert!(
        e.to_string().contains("NKVM_TEST_SURELY_UNSET is not set"),
        "{e}"
    );
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn s3_server_stopped_mid_upload_fails_at_a_named_step_with_nothing_under_the_key() {
    let servers = Servers::load();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("own-bucket")).unwrap();
    let port = free_port();
    let start = || servers.start_own_s3(port, data.path());
    let mut server = start().await;
    let d = destination(&format!(
        "{{name: under-test, type: s3, endpoint: 'https://127.0.0.1:{port}', bucket: own-bucket, \
         path_style: true, access_key_id_file: '{}', secret_access_key_file: '{}', ca_file: '{}', \
         part_size: 5MiB}}",
        servers.get("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
        servers.get("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
        servers.get("NKVM_TEST_CA_FILE"),
    ));
    let key = "ns/pvc/interrupted.tar.gz";
    let mut upload = d.begin_upload(key, None).await.unwrap();
    write_some(&mut upload, 12 * MIB).await;
    server.kill();
    let mut failed_write = None;
    let mut data_gen = Data(3);
    let mut buf = vec![0u8; MIB];
    for _ in 0..20 {
        data_gen.fill(&mut buf);
        if let Err(e) = upload.write_all(&buf).await {
            failed_write = Some(e);
            break;
        }
    }
    let e = upload.commit().await.unwrap_err();
    eprintln!("write error: {failed_write:?}; commit error: {e}");
    assert!(matches!(e.step(), "upload" | "commit"), "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "names the server: {e}");
    let _server = start().await;
    assert_eq!(keys(&d).await, Vec::<String>::new());
    assert!(!data.path().join("own-bucket").join(key).exists());
    // The abort could not reach the stopped server: the unfinished upload is still listed and
    // can be cleaned up later (start-up recovery), but it never became an object.
    for pending_key in pending(&d).await {
        assert_eq!(pending_key, key);
    }
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn s3_down_fails_at_connect_after_bounded_retries() {
    let port = free_port();
    let d = destination(&format!(
        "{{name: under-test, type: s3, endpoint: 'https://127.0.0.1:{port}', bucket: b, \
         path_style: true, access_key_id_env: PATH, secret_access_key_env: PATH}}"
    ));
    let started = Instant::now();
    let e = d.begin_upload("a", None).await.unwrap_err();
    assert!(matches!(e, DestinationError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "backoff 0.5 + 1 + 2 s"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

// ---------------------------------------------------------------- SFTP

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn sftp_round_trip_with_a_pinned_hashed_host_key() {
    let servers = Servers::load();
    let d = sftp_ok(&servers, &format!("/upload/{}", unique("sftp")));
    assert!(
        d.uri("a").starts_with("sftp://127.0.0.1:"),
        "{}",
        d.uri("a")
    );
    round_trip(&d, 24 * MIB).await;
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn sftp_dropped_and_aborted_uploads_leave_nothing() {
    let servers = Servers::load();
    let d = sftp_ok(&servers, &format!("/upload/{}", unique("sftp-abort")));
    abandoned_uploads_leave_nothing(&d, 4 * MIB).await;
    let mut running = d.begin_upload("ns/pvc/running.tar.gz", None).await.unwrap();
    write_some(&mut running, 2 * MIB).await;
    running.flush().await.unwrap();
    assert_eq!(keys(&d).await, ["ns/pvc/running.tar.gz.partial"]);
    assert_eq!(pending(&d).await, ["ns/pvc/running.tar.gz"]);
    running.abort().await.unwrap();
    assert_eq!(keys(&d).await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn sftp_refuses_wrong_and_unknown_host_keys_and_wrong_user_keys() {
    let servers = Servers::load();
    let port = servers.get("NKVM_TEST_SFTP_PORT");
    let key = servers.get("NKVM_TEST_SFTP_KEY_FILE");
    let private_key = std::fs::read_to_string(key).unwrap();
    let secret_line = private_key.lines().nth(1).unwrap().to_owned();

    let wrong = sftp(
        &servers,
        "/upload",
        port,
        key,
        servers.get("NKVM_TEST_SFTP_WRONG_KNOWN_HOSTS"),
    );
    let e = wrong.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::VerifyServer { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("HOST KEY MISMATCH") && text.contains("SHA256:"),
        "{text}"
    );
    assert!(text.contains("ssh-keyscan"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "# nothing pinned\n").unwrap();
    let unknown = sftp(&servers, "/upload", port, key, empty.to_str().unwrap());
    let e = unknown.check().await.unwrap_err();
    assert!(e.to_string().contains("no trust on first use"), "{e}");

    let bad_user_key = sftp(
        &servers,
        "/upload",
        port,
        servers.get("NKVM_TEST_SFTP_WRONG_KEY_FILE"),
        servers.get("NKVM_TEST_SFTP_KNOWN_HOSTS"),
    );
    let e = bad_user_key.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Authenticate { .. }), "{e}");
    assert!(e.to_string().contains("authorized_keys"), "{e}");
    let ok = sftp_ok(&servers, "/upload");
    assert_no_secret(&format!("{e} {e:?} {ok:?}"), &[&secret_line]);
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn sftp_server_stopped_mid_upload_leaves_nothing_under_the_key() {
    let servers = Servers::load();
    let port = free_port();
    let config = std::fs::read_to_string(servers.get("NKVM_TEST_SSHD_CONFIG")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let own_config = dir.path().join("sshd_config");
    let config: String = config
        .lines()
        .map(|line| {
            if line.starts_with("ListenAddress") {
                format!("ListenAddress 127.0.0.1:{port}\n")
            } else if line.starts_with("PidFile") {
                "PidFile none\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&own_config, config).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let host_key = Path::new(servers.get("NKVM_TEST_SERVERS_DIR")).join("sftp/host_ed25519.pub");
    let host_key = std::fs::read_to_string(host_key).unwrap();
    let mut fields = host_key.split_whitespace();
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new("/usr/sbin/sshd");
    command.arg("-D").arg("-e").arg("-f").arg(&own_config);
    let mut server = OwnServer::start(command, port).await;
    let path = unique("sftp-kill");
    let d = sftp(
        &servers,
        &format!("/upload/{path}"),
        &port.to_string(),
        servers.get("NKVM_TEST_SFTP_KEY_FILE"),
        known_hosts.to_str().unwrap(),
    );
    interrupted_upload_leaves_no_final_file(
        &d,
        &mut server,
        &servers,
        "NKVM_TEST_SFTP_DATA_DIR",
        &path,
    )
    .await;
}

// ---------------------------------------------------------------- FTPS

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn ftps_round_trip_against_vsftpd_requiring_tls_session_reuse() {
    let servers = Servers::load();
    // vsftpd runs with require_ssl_reuse=YES: every data connection (uploads, downloads, MLSD
    // listings) is refused unless it resumes the control connection's TLS session.
    let d = ftps_ok(&servers, &format!("/upload/{}", unique("ftps")));
    assert!(
        d.uri("a").starts_with("ftps://127.0.0.1:"),
        "{}",
        d.uri("a")
    );
    round_trip(&d, 24 * MIB).await;
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn ftps_dropped_and_aborted_uploads_leave_nothing() {
    let servers = Servers::load();
    let d = ftps_ok(&servers, &format!("/upload/{}", unique("ftps-abort")));
    abandoned_uploads_leave_nothing(&d, 4 * MIB).await;
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn ftps_refuses_wrong_passwords_and_untrusted_certificates_without_leaking() {
    let servers = Servers::load();
    let port = servers.get("NKVM_TEST_FTPS_PORT");
    let password = servers.file("NKVM_TEST_FTPS_PASSWORD_FILE");
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("password");
    std::fs::write(&wrong, "wrong-password-0123456789\n").unwrap();
    let bad = ftps(
        &servers,
        "/upload",
        port,
        wrong.to_str().unwrap(),
        servers.get("NKVM_TEST_CA_FILE"),
    );
    let e = bad.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::Authenticate { .. }), "{e}");
    assert!(e.to_string().contains("530"), "{e}");
    assert_no_secret(
        &format!("{e} {e:?} {bad:?}"),
        &[&password, "wrong-password-0123456789"],
    );

    let untrusted = ftps(
        &servers,
        "/upload",
        port,
        servers.get("NKVM_TEST_FTPS_PASSWORD_FILE"),
        servers.get("NKVM_TEST_OTHER_CA_FILE"),
    );
    let e = untrusted.check().await.unwrap_err();
    assert!(matches!(e, DestinationError::VerifyServer { .. }), "{e}");
    assert!(e.to_string().contains("ca_file"), "{e}");
    assert_no_secret(&format!("{e} {e:?} {untrusted:?}"), &[&password]);
}

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn ftps_server_stopped_mid_upload_leaves_nothing_under_the_key() {
    let servers = Servers::load();
    let port = free_port();
    let config = std::fs::read_to_string(servers.get("NKVM_TEST_VSFTPD_CONFIG")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let own_config = dir.path().join("vsftpd.conf");
    let config: String = config
        .lines()
        .map(|line| match line.split_once('=') {
            Some(("listen_port", _)) => format!("listen_port={port}\n"),
            Some(("pasv_min_port", _)) => "pasv_min_port=17140\n".to_owned(),
            Some(("pasv_max_port", _)) => "pasv_max_port=17159\n".to_owned(),
            Some(("vsftpd_log_file", _)) => {
                format!(
                    "vsftpd_log_file={}\n",
                    dir.path().join("xfer.log").display()
                )
            }
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&own_config, config).unwrap();
    let mut command = tokio::process::Command::new("/usr/sbin/vsftpd");
    command.arg(&own_config);
    let mut server = OwnServer::start(command, port).await;
    let path = unique("ftps-kill");
    let d = ftps(
        &servers,
        &format!("/upload/{path}"),
        &port.to_string(),
        servers.get("NKVM_TEST_FTPS_PASSWORD_FILE"),
        servers.get("NKVM_TEST_CA_FILE"),
    );
    interrupted_upload_leaves_no_final_file(
        &d,
        &mut server,
        &servers,
        "NKVM_TEST_FTPS_DATA_DIR",
        &path,
    )
    .await;
}

/// Captures every `log` record (trace level included) of this test binary.
struct Capture(std::sync::Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = (record.target().to_owned(), record.args().to_string());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));

#[tokio::test]
#[ignore = "needs the test servers (end2end/servers/up)"]
async fn logs_hold_no_secret_outside_the_filtered_ftp_command_trace() {
    let servers = Servers::load();
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let password = servers.file("NKVM_TEST_FTPS_PASSWORD_FILE");
    let secret = servers.file("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE");
    let key_line = std::fs::read_to_string(servers.get("NKVM_TEST_SFTP_KEY_FILE"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    ftps_ok(&servers, &format!("/upload/{}", unique("log")))
        .check()
        .await
        .unwrap();
    s3_trusting(&servers, &unique("log"), "")
        .check()
        .await
        .unwrap();
    sftp_ok(&servers, &format!("/upload/{}", unique("log")))
        .check()
        .await
        .unwrap();
    let records = CAPTURE.0.lock().unwrap().clone();
    assert!(!records.is_empty(), "the logger captured nothing");
    let mut ftp_command_leak = false;
    for (target, line) in &records {
        if target.starts_with("suppaftp") {
            // suppaftp traces `PASS <password>`: LOG_FILTER_DIRECTIVES turns it off.
            ftp_command_leak |= line.contains(&password);
            continue;
        }
        assert_no_secret(
            &format!("{target}: {line}"),
            &[&password, &secret, &key_line],
        );
    }
    assert!(
        !ftp_command_leak
            || nkvm_engine::destination::LOG_FILTER_DIRECTIVES.contains("suppaftp=off"),
        "suppaftp logs the FTP password and the filter directives do not silence it"
    );
}

// ---------------------------------------------------------------- helpers

async fn interrupted_upload_leaves_no_final_file(
    d: &Destination,
    server: &mut OwnServer,
    servers: &Servers,
    data_dir: &str,
    path: &str,
) {
    let key = "ns/pvc/interrupted.tar.gz";
    let mut upload = d.begin_upload(key, None).await.unwrap();
    write_some(&mut upload, 4 * MIB).await;
    server.kill();
    let mut data = Data(5);
    let mut buf = vec![0u8; MIB];
    let mut write_error = None;
    for _ in 0..64 {
        data.fill(&mut buf);
        if let Err(e) = upload.write_all(&buf).await {
            write_error = Some(e);
            break;
        }
    }
    let outcome = upload.commit().await;
    eprintln!("write error: {write_error:?}; commit: {outcome:?}");
    let e = outcome.unwrap_err();
    assert!(matches!(e.step(), "upload" | "commit"), "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "names the server: {e}");
    let final_file = Path::new(servers.get(data_dir)).join(path).join(key);
    assert!(!final_file.exists(), "{} exists", final_file.display());
}
