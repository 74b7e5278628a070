//! The real destination servers of `end2end/servers/up` (versitygw, sshd, vsftpd on loopback):
//! the variables of its env file (`NKVM_TEST_SERVERS_ENV`, default `<repo>/.servers/env`), read
//! by the tests that need them, which fail — never skip — without it.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared fixtures"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The variables written by `end2end/servers/up`.
pub struct Servers(HashMap<String, String>);

impl Servers {
    pub fn load() -> Self {
        let path = std::env::var("NKVM_TEST_SERVERS_ENV").map_or_else(
            |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.servers/env"),
            PathBuf::from,
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): start the test servers with end2end/servers/up, or set \
                 NKVM_TEST_SERVERS_ENV",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self(vars)
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).unwrap_or_else(|| {
            panic!("{name} missing from the servers env file: rerun end2end/servers/up")
        })
    }

    /// Starts a versitygw of the caller's own (to kill) on `127.0.0.1:port`, serving the buckets
    /// (directories) under `data`, with the test servers' credentials and certificate.
    pub async fn start_own_s3(&self, port: u16, data: &Path) -> OwnServer {
        let ca_dir = Path::new(self.get("NKVM_TEST_SERVERS_DIR")).join("ca");
        let mut command = tokio::process::Command::new(self.get("NKVM_TEST_VERSITYGW"));
        command
            .env(
                "ROOT_ACCESS_KEY_ID",
                self.file("NKVM_TEST_S3_ACCESS_KEY_ID_FILE"),
            )
            .env(
                "ROOT_SECRET_ACCESS_KEY",
                self.file("NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE"),
            )
            .args(["--port", &format!("127.0.0.1:{port}"), "--quiet"])
            .arg("--cert")
            .arg(ca_dir.join("server.pem"))
            .arg("--key")
            .arg(ca_dir.join("server.key"))
            .arg("posix")
            .arg(data);
        OwnServer::start(command, port).await
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.get(name))
            .unwrap()
            .trim()
            .to_owned()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every process whose parent chain leads to `root` (from /proc).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so parse after the last ')'.
        let Some(parent_pid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        parents.push((pid, parent_pid));
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// A server process of the test's own, in its own process group (sshd and vsftpd fork a process
/// per connection: killing the group ends the sessions too).
pub struct OwnServer {
    child: tokio::process::Child,
}

impl OwnServer {
    pub async fn start(mut command: tokio::process::Command, port: u16) -> Self {
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "own server did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child }
    }

    /// Kills the server and every process it forked (sshd and vsftpd sessions call setsid, so
    /// they leave the process group).
    pub fn kill(&mut self) {
        let Some(root) = self.child.id() else { return };
        let mut pids = descendants(root);
        pids.push(root);
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid.cast_signed()) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
