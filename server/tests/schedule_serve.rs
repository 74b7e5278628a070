//! `nkvm serve` running a schedule on the real test cluster, watched by real tools: a schedule of
//! every minute (created with `nkvm schedule add`) backs up one PVC and fails on a missing one;
//! Debian's `prometheus` scrapes `/metrics` from the separate metrics listener with the bearer
//! token (the series queried through Prometheus' API) while anonymous scrapes are refused; Debian's
//! `webhook` receives the signed failure and success notifications (it checks the HMAC-SHA256
//! signature itself and refuses a tampered one); `/readyz` answers; logs are JSON lines without the
//! token or the webhook secret; and nkvm stopped across a scheduled time runs the missed firing once
//! on start-up, then realigns.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the test images, and `prometheus` and `webhook` on the PATH
//! (`apt-get install prometheus webhook`; scripts/test-all.sh installs them). Takes about two
//! minutes: it waits for real minute boundaries.

#[path = "../../engine/tests/support/mod.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestNamespace;

#[path = "support/process.rs"]
mod process;

use process::{Proc, free_port};

const TOKEN: &str = "scrape-token-4c1f9e";
const HOOK_SECRET: &str = "hook-secret-7d2a0b";

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: this test needs Debian's prometheus and webhook \
             (apt-get install -y prometheus webhook; scripts/test-all.sh installs them)"
        )
    })
}

/// One HTTP/1.1 request; returns the status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    // Chunked bodies keep their chunk sizes; the callers only search the text.
    (status, body)
}

fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn nkvm(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nkvm"));
    command
        .arg("--kubeconfig")
        .arg(std::env::var_os("NKVM_TEST_KUBECONFIG").expect("NKVM_TEST_KUBECONFIG"))
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("NKVM_IN_CLUSTER")
        .env_remove("NKVM_CONTEXT")
        .env_remove("NKVM_METRICS_TOKEN");
    command
}

struct Server {
    data_dir: PathBuf,
    namespace: String,
    port: u16,
    metrics_port: u16,
    files: PathBuf,
}

impl Server {
    fn start(&self, log: &str) -> Proc {
        let log = std::fs::File::create(self.files.join(log)).unwrap();
        let child = nkvm(&self.data_dir)
            .args([
                "--helper-image",
                "nkvm.local/helper:1",
                "--namespace-allowlist",
                &self.namespace,
            ])
            .args(["--log-format", "json", "serve", "--auth", "none"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .arg("--metrics-token-file")
            .arg(self.files.join("token"))
            .arg("--notifications")
            .arg(self.files.join("notifications.yaml"))
            .args([
                "--schedule-tick-seconds",
                "1",
                "--schedule-refresh-seconds",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nkvm serve");
        let proc = Proc(child);
        wait_until("/readyz", Duration::from_mins(1), || {
            (http(self.port, "GET", "/readyz", &[], "").0 == 200).then_some(())
        });
        proc
    }

    /// The runs of `pvc`, oldest first.
    fn runs(&self, pvc: &str) -> Vec<Value> {
        let output = nkvm(&self.data_dir)
            .args([
                "history",
                "--pvc",
                &format!("{}/{pvc}", self.namespace),
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut runs: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        runs.reverse();
        runs
    }
}

fn stop(mut proc: Proc) {
    let pid = proc.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(45) {
        if proc.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("nkvm serve did not stop within 45 s of SIGTERM");
}

fn setup_files(files: &Path, hook_port: u16, metrics_port: u16) {
    std::fs::write(files.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(files.join("hook-secret"), HOOK_SECRET).unwrap();
    std::fs::write(
        files.join("notifications.yaml"),
        format!(
            "webhooks:\n- name: ops\n  url: http://127.0.0.1:{hook_port}/hooks/nkvm\n  \
             secret_file: hook-secret\n  events: [failure, success]\n  schedules: [every]\n"
        ),
    )
    .unwrap();
    let record = files.join("record.sh");
    std::fs::write(
        &record,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\n",
            files.join("received.jsonl").display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&record).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&record, permissions).unwrap();
    let hooks = serde_json::json!([{
        "id": "nkvm",
        "execute-command": record,
        "command-working-directory": files,
        "pass-arguments-to-command": [{"source": "entire-payload"}],
        "trigger-rule-mismatch-http-response-code": 403,
        "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": HOOK_SECRET,
            "parameter": {"source": "header", "name": "X-Nkvm-Signature-256"}}},
    }]);
    std::fs::write(files.join("hooks.json"), hooks.to_string()).unwrap();
    std::fs::write(
        files.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n\
             - job_name: nkvm\n  authorization: {{type: Bearer, credentials_file: {}}}\n  \
             static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n",
            files.join("token").display()
        ),
    )
    .unwrap();
}

/// The value of the first series `query` returns through Prometheus' API.
fn prometheus_value(port: u16, query: &str) -> Option<f64> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http(
        port,
        "GET",
        &format!("/api/v1/query?query={encoded}"),
        &[],
        "",
    );
    if status != 200 {
        return None;
    }
    let start = body.find('{')?;
    let json: Value =
        serde_json::from_str(body[start..].trim_end_matches(|c: char| c != '}')).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
#[ignore = "needs the test cluster"]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
fn scheduled_runs_are_scraped_notified_and_run_once_after_a_restart() {
    let (prometheus, webhook) = (tool("prometheus"), tool("webhook"));
    let ns = TestNamespace::create("sched-serve");
    ns.claims_with_consumer("app", &[("data", "app: db")]);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let (hook_port, prom_port) = (free_port(), free_port());
    let server = Server {
        data_dir: dir.path().join("data"),
        namespace: ns.0.clone(),
        port: free_port(),
        metrics_port: free_port(),
        files: files.clone(),
    };
    setup_files(&files, hook_port, server.metrics_port);
    let _webhook = Proc(
        Command::new(webhook)
            .arg("-hooks")
            .arg(files.join("hooks.json"))
            .args([
                "-ip",
                "127.0.0.1",
                "-port",
                &hook_port.to_string(),
                "-verbose",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(files.join("webhook.log")).unwrap())
            .spawn()
            .expect("start webhook"),
    );
    let _prometheus = Proc(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                files.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(files.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let added = nkvm(&server.data_dir)
        .args(["schedule", "add", "every", "--cron", "* * * * *"])
        .args([
            "--pvc",
            &format!("{}/data", ns.0),
            "--pvc",
            &format!("{}/missing", ns.0),
        ])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let serve = server.start("serve-1.log");
    // Metrics: refused without the token on both listeners, served with it.
    assert_eq!(http(server.metrics_port, "GET", "/metrics", &[], "").0, 401);
    assert_eq!(http(server.port, "GET", "/metrics", &[], "").0, 401);
    let bearer = format!("Bearer {TOKEN}");
    let body = wait_until("the schedule's series", Duration::from_secs(10), || {
        let (status, body) = http(
            server.metrics_port,
            "GET",
            "/metrics",
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(status, 200);
        body.contains(r#"nkvm_schedule_next_run_timestamp_seconds{schedule="every"}"#)
            .then_some(body)
    });
    assert!(
        body.contains("# TYPE nkvm_backup_runs_in_progress gauge"),
        "{body}"
    );

    // The first firing (at the next minute): data backed up, missing failed.
    let first = wait_until("the first scheduled run", Duration::from_secs(90), || {
        server
            .runs("data")
            .into_iter()
            .find(|r| r["status"] == "succeeded")
    });
    assert_eq!(first["started_by"], "schedule:every");

    // Real receiver: both notifications arrived, signed (webhook ran the command only for a
    // valid HMAC-SHA256), and a tampered one is refused.
    let received = files.join("received.jsonl");
    let events = wait_until("signed notifications", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        (kinds.contains(&"backup.failed") && kinds.contains(&"backup.succeeded")).then_some(events)
    });
    let failed = events
        .iter()
        .find(|e| e["event"] == "backup.failed")
        .unwrap();
    assert_eq!(failed["run"]["pvc"], "missing");
    assert_eq!(failed["schedule"], "every");
    let before = std::fs::read_to_string(&received).unwrap();
    let (status, _) = http(
        hook_port,
        "POST",
        "/hooks/nkvm",
        &[
            ("Content-Type", "application/json"),
            ("X-Nkvm-Signature-256", "sha256=00ff"),
        ],
        r#"{"event":"backup.failed","forged":true}"#,
    );
    assert_ne!(status, 200, "a forged notification must be refused");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&received).unwrap(), before);

    // Real scraper: Prometheus scraped with the token and has the series.
    // `up` is 1 only when the scrape (with the token) succeeded.
    wait_until("Prometheus scraping nkvm", Duration::from_secs(30), || {
        prometheus_value(prom_port, r#"up{job="nkvm"}"#).filter(|v| *v > 0.5)
    });
    let labels = format!(r#"namespace="{}",schedule="every""#, ns.0);
    let succeeded = wait_until("the succeeded series", Duration::from_secs(30), || {
        prometheus_value(
            prom_port,
            &format!("nkvm_backup_succeeded_total{{{labels},pvc=\"data\"}}"),
        )
    });
    assert!(succeeded >= 1.0);
    let attempts = wait_until("the attempts series", Duration::from_secs(30), || {
        prometheus_value(
            prom_port,
            &format!("nkvm_backup_attempts_total{{{labels},pvc=\"data\"}}"),
        )
    });
    assert!(attempts >= succeeded);
    // The failure of the PVC that does not exist was counted, then its series went away with the
    // next scan (series of PVCs that are gone disappear); the notification above is its trace.
    let scrape = http(
        server.metrics_port,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        "",
    )
    .1;
    assert!(!scrape.contains(r#"pvc="missing""#), "{scrape}");
    let last = wait_until("the last success series", Duration::from_secs(30), || {
        prometheus_value(
            prom_port,
            &format!(
                "nkvm_backup_last_success_timestamp_seconds{{namespace=\"{}\",pvc=\"data\"}}",
                ns.0
            ),
        )
    });
    let first_finished: jiff::Timestamp = first["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (last - first_finished.as_second() as f64).abs() < 2.0,
        "{last} vs {first_finished}"
    );

    // Stopped across the next scheduled time, then restarted: the missed firing runs once.
    stop(serve);
    let first_minute = jiff::Timestamp::from_second(
        first["started_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
            / 60
            * 60,
    )
    .unwrap();
    let missed = first_minute + jiff::SignedDuration::from_mins(1);
    let now = jiff::Timestamp::now();
    let wait = missed.duration_since(now) + jiff::SignedDuration::from_secs(3);
    if wait.is_positive() {
        std::thread::sleep(wait.unsigned_abs());
    }
    let down_runs = server.runs("data").len();
    let serve = server.start("serve-2.log");
    let after = wait_until(
        "the missed firing on start-up",
        Duration::from_secs(30),
        || {
            let runs = server.runs("data");
            (runs.len() > down_runs && runs.iter().all(|r| r["status"] != "running"))
                .then_some(runs)
        },
    );
    let next_boundary = missed + jiff::SignedDuration::from_mins(1);
    std::thread::sleep(Duration::from_secs(3));
    let settled = server.runs("data");
    if jiff::Timestamp::now() < next_boundary {
        assert_eq!(
            settled.len(),
            down_runs + 1,
            "the missed firing ran more than once: {settled:#?}"
        );
    }
    assert_eq!(after.len(), down_runs + 1, "{after:#?}");
    stop(serve);

    // JSON logs, without the token or the webhook secret.
    for log in ["serve-1.log", "serve-2.log"] {
        let text = std::fs::read_to_string(files.join(log)).unwrap();
        assert!(
            !text.contains(TOKEN) && !text.contains(HOOK_SECRET),
            "{log} leaks a secret"
        );
        let first_line = text.lines().next().unwrap_or_default();
        let parsed: Value = serde_json::from_str(first_line)
            .unwrap_or_else(|e| panic!("{log}: not a JSON line ({e}): {first_line}"));
        assert!(parsed["level"].is_string(), "{first_line}");
    }
    let log = std::fs::read_to_string(files.join("serve-2.log")).unwrap();
    assert!(log.contains("schedule firing"), "{log}");
}
