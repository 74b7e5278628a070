//! Memory under a flood of bad logins, measured on a running `nkvm serve`: N parallel logins with
//! wrong passwords (each a different name, so the rate limiter lets all of them through to the
//! argon2id check, about 19 MiB each) are sent while the server's peak resident memory (`VmHWM`
//! in /proc/PID/status) is read before and after. With the verification cap (the default
//! `--login-concurrency 4`) the growth stays under a bound tied to the cap; the same flood with the
//! cap raised to N (what the server did before it had one) is measured beside it, and printed.
//!
//! Needs `NKVM_TEST_KUBECONFIG` (`nkvm serve` checks its cluster connection at start-up).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Parallel bad logins.
mod support;

use support::process::{Proc, free_port};

const FLOOD: usize = 40;

/// Memory of one argon2id verification with the default parameters (19 MiB).
const ARGON2_KIB: u64 = 19 * 1024;

/// One HTTP/1.1 request; returns the status (0 when the connection failed).
fn http(port: u16, method: &str, path: &str, body: &str) -> u16 {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Starts `nkvm serve` with one admin (a default-cost argon2id hash) and `--login-concurrency
/// cap`; returns it once `/healthz` answers.
fn serve(dir: &Path, cap: usize) -> (Proc, u16) {
    let port = free_port();
    let hash = nkvm_engine::auth::hash_password("the right password").unwrap();
    let users = dir.join("users.yaml");
    std::fs::write(
        &users,
        format!("users:\n- {{name: admin, role: admin, password_hash: \"{hash}\"}}\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("serve-{cap}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nkvm"))
        .arg("--kubeconfig")
        .arg(std::env::var_os("NKVM_TEST_KUBECONFIG").expect("NKVM_TEST_KUBECONFIG"))
        .arg("--data-dir")
        .arg(dir.join(format!("data-{cap}")))
        .args(["serve", "--auth", "local", "--users-file"])
        .arg(&users)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--login-concurrency", &cap.to_string()])
        .env_remove("NKVM_IN_CLUSTER")
        .env_remove("NKVM_CONTEXT")
        .env_remove("NKVM_ADMIN_USER")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_mins(1);
    while http(port, "GET", "/healthz", "") != 200 {
        assert!(Instant::now() < deadline, "nkvm serve did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    (proc, port)
}

/// Floods the server with [`FLOOD`] parallel bad logins; returns (baseline, peak) `VmHWM` in KiB
/// and the statuses seen.
fn flood(cap: usize) -> (u64, u64, Vec<u16>) {
    let dir = tempfile::tempdir().unwrap();
    let (proc, port) = serve(dir.path(), cap);
    // One login first, so that the allocator's arenas and the blocking pool exist in both runs.
    assert_eq!(
        http(port, "POST", "/auth/login", "username=warm&password=up"),
        303
    );
    let before = peak_rss_kib(proc.0.id());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..FLOOD)
            .map(|i| {
                scope.spawn(move || {
                    http(
                        port,
                        "POST",
                        "/auth/login",
                        &format!("username=junk{i}&password=wrong-{i}"),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = peak_rss_kib(proc.0.id());
    drop(proc);
    (before, after, statuses)
}

#[test]
#[ignore = "needs the test cluster"]
fn a_flood_of_bad_logins_keeps_memory_bounded_by_the_verification_cap() {
    let cap = 4;
    let (before, after, statuses) = flood(cap);
    let growth = after.saturating_sub(before);
    let (u_before, u_after, _) = flood(FLOOD);
    let uncapped = u_after.saturating_sub(u_before);
    println!(
        "peak RSS (VmHWM) under {FLOOD} parallel bad logins: cap {cap}: {before} KiB -> {after} \
         KiB (+{} MiB); cap {FLOOD} (no effective cap, as before): {u_before} KiB -> {u_after} KiB \
         (+{} MiB)",
        growth / 1024,
        uncapped / 1024
    );
    // Every login was answered: refused as wrong (303 to the login page) or, past the queue, 503.
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 503),
        "{statuses:?}"
    );
    // At most `cap` hashes at once, plus generous room for buffers, threads and the allocator.
    let bound = (u64::try_from(cap).unwrap() + 2) * ARGON2_KIB + 48 * 1024;
    assert!(
        growth <= bound,
        "peak RSS grew by {growth} KiB under the flood; the bound for cap {cap} is {bound} KiB"
    );
}
