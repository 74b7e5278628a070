//! Webhook configuration refusals, the signature (RFC 4231 vector), and deliveries to a real HTTP
//! listener on loopback: the body signed as received, retries with backoff after 503s, no retry
//! after a 4xx.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::domain::RunStatus;

#[test]
fn the_signature_is_hmac_sha256_of_the_body() {
    // RFC 4231, test case 2.
    let dir = tempfile::tempdir().unwrap();
    let secret = file_secret(dir.path(), "Jefe").resolve().unwrap();
    assert_eq!(
        signature(&secret, b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// Writes the secret to a file and returns its reference (environment changes need `unsafe`).
fn file_secret(dir: &std::path::Path, value: &str) -> SecretRef {
    let path = dir.join("secret");
    std::fs::write(&path, format!("{value}\n")).unwrap();
    SecretRef::File(path)
}

#[test]
fn configuration_refusals() {
    let base = Path::new("/etc/nkvm");
    let ok = parse_config(
        "webhooks:\n- name: ops\n  url: https://hooks.example/x\n  secret_file: hook.key\n",
        base,
    )
    .unwrap();
    assert_eq!(ok[0].events, [EventKind::Failure, EventKind::Overdue]);
    assert_eq!(ok[0].attempts, 5);
    assert!(matches!(&ok[0].secret, SecretRef::File(p) if p == Path::new("/etc/nkvm/hook.key")));
    for (text, expected) in [
        (
            "webhooks:\n- name: a\n  url: https://x/\n  secret: hunter2\n",
            "inline",
        ),
        (
            "webhooks:\n- name: a\n  url: https://x/\n",
            "secret is missing",
        ),
        (
            "webhooks:\n- name: a\n  url: ftp://x/\n  secret_env: S\n",
            "http(s)",
        ),
        (
            "webhooks:\n- name: A!\n  url: https://x/\n  secret_env: S\n",
            "invalid",
        ),
        (
            "webhooks:\n- name: a\n  url: https://x/\n  secret_env: S\n  events: [explode]\n",
            "unknown",
        ),
        (
            "webhooks:\n- name: a\n  url: https://x/\n  secret_env: S\n- name: a\n  url: https://y/\n  secret_env: S\n",
            "twice",
        ),
        ("hooks: []\n", "webhooks"),
    ] {
        let error = parse_config(text, base).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}

/// What the receiver saw: headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 receiver answering each request with the next status of `statuses` (the
/// last one repeats).
async fn receiver(statuses: Vec<u16>) -> (url::Url, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut index = 0;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (head_end, length) = loop {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break (0, 0);
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    break (end + 4, length);
                }
            };
            while data.len() < head_end + length {
                let n = socket.read(&mut buf).await.unwrap();
                data.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&data[..head_end]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                .collect();
            log.lock().unwrap().push(Received {
                headers,
                body: data[head_end..head_end + length].to_vec(),
            });
            let status = statuses[index.min(statuses.len() - 1)];
            index += 1;
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, seen)
}

fn hook(url: url::Url, secret: SecretRef) -> Webhook {
    Webhook {
        name: "ops".into(),
        url,
        secret,
        events: vec![EventKind::Failure],
        schedules: vec![],
        attempts: 4,
        backoff: Duration::from_millis(20),
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn deliveries_are_signed_and_retried_after_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = file_secret(dir.path(), "s3cr3t");
    let (url, seen) = receiver(vec![503, 503, 204]).await;
    let client = HttpClient::new(false).unwrap();
    let body = Bytes::from_static(br#"{"event":"backup.failed"}"#);
    deliver(
        &client,
        &hook(url, secret.clone()),
        EventKind::Failure,
        "d-1",
        body.clone(),
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two 503s then success");
    let expected = signature(&secret.resolve().unwrap(), &body);
    for request in &seen {
        assert_eq!(request.body, body.as_ref());
        assert_eq!(header(request, "x-nkvm-signature-256"), expected);
        assert_eq!(header(request, "x-nkvm-event"), "backup.failed");
        assert_eq!(header(request, "x-nkvm-delivery"), "d-1");
        assert_eq!(header(request, "content-type"), "application/json");
    }
}

#[tokio::test]
async fn client_errors_are_not_retried_and_the_secret_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let secret = file_secret(dir.path(), "s3cr3t");
    let (url, seen) = receiver(vec![401]).await;
    let client = HttpClient::new(false).unwrap();
    let error = deliver(
        &client,
        &hook(url, secret),
        EventKind::Failure,
        "d",
        Bytes::from_static(b"{}"),
    )
    .await
    .unwrap_err();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("after 1 attempt"), "{error}");
    assert!(!error.contains("s3cr3t"));
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A receiver that is down: every attempt made, the error says so.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let secret = file_secret(dir.path(), "s3cr3t");
    let error = deliver(
        &client,
        &hook(url, secret),
        EventKind::Failure,
        "d",
        Bytes::from_static(b"{}"),
    )
    .await
    .unwrap_err();
    assert!(error.contains("after 4 attempt"), "{error}");
}

#[tokio::test]
async fn receivers_get_only_their_events_and_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let (all_url, all_seen) = receiver(vec![200]).await;
    let (team_url, team_seen) = receiver(vec![200]).await;
    let mut all = hook(all_url, file_secret(dir.path(), "a"));
    all.events = vec![EventKind::Failure, EventKind::Success];
    let mut team = hook(team_url, file_secret(dir.path(), "a"));
    team.name = "team".into();
    team.schedules = vec!["nightly".into()];
    let notifier = Notifier::new(vec![all, team]).unwrap();
    let run = |by: &str, status: RunStatus| RunRecord {
        message: Some("m".into()),
        finished_at: Some("2026-11-29T03:00:05.000000Z".into()),
        ..RunRecord::unrecorded(
            &format!("r-{by}"),
            "shop",
            "data",
            status,
            by,
            "2026-11-29T03:00:00.000000Z".into(),
        )
    };
    notifier.run_finished(&run("schedule:nightly", RunStatus::Failed));
    notifier.run_finished(&run("cli:me", RunStatus::Failed));
    notifier.run_finished(&run("schedule:nightly", RunStatus::Succeeded));
    for _ in 0..100 {
        if all_seen.lock().unwrap().len() == 3 && team_seen.lock().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(all_seen.lock().unwrap().len(), 3);
    let team = team_seen.lock().unwrap().clone();
    assert_eq!(team.len(), 1, "only the failure of its schedule");
    let payload: Payload = serde_json::from_slice(&team[0].body).unwrap();
    assert_eq!(payload.event, "backup.failed");
    assert_eq!(payload.schedule.as_deref(), Some("nightly"));
    assert_eq!(payload.run.unwrap().run_id, "r-schedule:nightly");
}
