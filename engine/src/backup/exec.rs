//! Commands in a running helper pod over the exec websocket: `tar` streaming the volume, raw or
//! through the helper's own `pigz`/`gzip` (stdout streamed, stderr tail kept, exit statuses read
//! through markers and the status channel), the check for a usable compressor, short commands with
//! captured output, and the optional cheap pre-scan for progress totals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::error::BackupError;
use super::helper::RetryPolicy;
use super::pod::{CONTAINER, MOUNT_PATH};
use crate::domain::escape_control;
use crate::kubeapi::{self, Call, is_transient};

mod link;

pub use link::ConnectionLost;
use link::{Ending, Guarded, Link};

/// Marker the helper's shell prints on stderr with tar's exit code.
pub const EXIT_MARKER: &str = "nkvm-tar-exit=";
/// Marker the helper's shell prints on stderr with the compressor's exit code (source
/// compression), before [`EXIT_MARKER`].
pub const GZIP_EXIT_MARKER: &str = "nkvm-gzip-exit=";

/// Shell code setting `t` to the path of the first `tar` in `$PATH` (else `tar`), and `s` to
/// `--sparse` when that tar is GNU tar (empty otherwise: BusyBox tar has no such option).
const FIND_TAR: &str = "t=tar; o=$IFS; IFS=:; for d in $PATH; do if [ -x \"$d/tar\" ]; then \
                        t=\"$d/tar\"; break; fi; done; IFS=$o; s=; case \"$(\"$t\" --version \
                        2>/dev/null)\" in *'GNU tar'*) s=--sparse;; esac; ";

/// The command streaming the volume as a tar archive to stdout: `tar -cf - -C /data .` (with
/// `--sparse` under GNU tar: holes are recorded, not streamed as zeros, so a `truncate -s 4T` file
/// costs a few blocks), wrapped so that the shell reports tar's exit code on stderr and then waits
/// for stdin to close before it exits with that code. `tar` is looked up in `$PATH` by the shell script itself and run by its
/// path, as a plain exec would: BusyBox shells otherwise prefer their own `tar` applet over an
/// installed GNU tar. The wait matters: when an exec'd process exits, the container runtime and
/// kubelet tear the stream down and drop the stdout bytes still in flight (seen on the test cluster:
/// megabytes lost behind a slow reader, with `kubectl exec` too). The engine closes stdin only after
/// it has read the archive to its end-of-archive blocks.
pub fn tar_command() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "{FIND_TAR}\"$t\" $s -cf - -C {MOUNT_PATH} .; rc=$?; \
             echo \"{EXIT_MARKER}$rc\" >&2; cat >/dev/null; exit $rc"
        ),
    ]
}

/// A gzip compressor in the helper image, for source compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// `pigz -p <threads> -<level>`: parallel, one gzip member.
    Pigz { threads: usize },
    /// `gzip -<level>`: one thread.
    Gzip,
}

impl Compressor {
    /// The program's name, looked up in the helper's `$PATH`.
    #[must_use]
    pub fn program(self) -> &'static str {
        match self {
            Self::Pigz { .. } => "pigz",
            Self::Gzip => "gzip",
        }
    }

    /// Its arguments at `level` (0–9, higher taken as 9).
    fn args(self, level: u32) -> String {
        let level = level.min(9);
        match self {
            Self::Pigz { threads } => format!("-p {} -{level}", threads.max(1)),
            Self::Gzip => format!("-{level}"),
        }
    }

    /// `pigz -p 2 -6` or `gzip -6`, for messages.
    #[must_use]
    pub fn describe(self, level: u32) -> String {
        format!("{} {}", self.program(), self.args(level))
    }
}

/// Shell code setting `z` to the path of the first `program` in `$PATH` (empty when none).
fn find_program(program: &str) -> String {
    format!(
        "z=; o=$IFS; IFS=:; for d in $PATH; do if [ -x \"$d/{program}\" ]; then \
         z=\"$d/{program}\"; break; fi; done; IFS=$o; "
    )
}

/// The command that finds a usable compressor: `pigz`, else `gzip`, from `$PATH`, each tried on a
/// byte with the arguments the backup would use (BusyBox's `gzip` may lack levels, a `gzip` may not
/// take `-0`). Prints the program's name and exits 0, or exits 1 when neither works.
pub fn compressor_check_command(level: u32, pigz_threads: usize) -> Vec<String> {
    let mut script = String::new();
    for candidate in [
        Compressor::Pigz {
            threads: pigz_threads,
        },
        Compressor::Gzip,
    ] {
        let program = candidate.program();
        let args = candidate.args(level);
        script.push_str(&find_program(program));
        script.push_str(&format!(
            "if [ -n \"$z\" ] && printf x | \"$z\" {args} >/dev/null 2>&1; then echo {program}; \
             exit 0; fi; "
        ));
    }
    script.push_str("exit 1");
    vec!["sh".to_owned(), "-c".to_owned(), script]
}

/// The compressor named by [`compressor_check_command`]'s output.
pub fn parse_compressor(output: &str, pigz_threads: usize) -> Option<Compressor> {
    match output.trim() {
        "pigz" => Some(Compressor::Pigz {
            threads: pigz_threads,
        }),
        "gzip" => Some(Compressor::Gzip),
        _ => None,
    }
}

/// Looks for a usable compressor in the helper (`None`: none, or the check failed or timed out).
pub async fn find_compressor(
    api: &Api<Pod>,
    pod: &str,
    level: u32,
    pigz_threads: usize,
    timeout: Duration,
) -> Option<Compressor> {
    let command = compressor_check_command(level, pigz_threads);
    let output = exec_capture(api, pod, command, 256, timeout).await?;
    parse_compressor(&output, pigz_threads)
}

/// Like [`tar_command`], with the helper compressing: `tar [--sparse] -cf - -C /data . |
/// <compressor>`. The
/// shell reports the compressor's exit code ([`GZIP_EXIT_MARKER`]) and then tar's
/// ([`EXIT_MARKER`]) once both ended, waits for stdin to close, and exits with tar's code if it
/// failed, else the compressor's. (tar's code comes back through a file descriptor, as POSIX
/// shells have no `pipefail`.)
pub fn source_tar_command(compressor: Compressor, level: u32) -> Vec<String> {
    let find = find_program(compressor.program());
    let args = compressor.args(level);
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "{FIND_TAR}{find}exec 4>&1; \
             trc=$( {{ {{ \"$t\" $s -cf - -C {MOUNT_PATH} .; echo $? >&3; }} | \
             \"$z\" {args} >&4 3>&-; }} 3>&1 ); zrc=$?; exec 4>&-; trc=${{trc:-255}}; \
             echo \"{GZIP_EXIT_MARKER}$zrc\" >&2; echo \"{EXIT_MARKER}$trc\" >&2; \
             cat >/dev/null; if [ \"$trc\" != 0 ]; then exit $trc; fi; exit $zrc"
        ),
    ]
}

/// The exit code in an [`EXIT_MARKER`] line of `stderr`, if there is one.
pub fn parse_exit_marker(stderr: &str) -> Option<i64> {
    parse_marker(stderr, EXIT_MARKER)
}

/// The exit code in the last `marker` line of `stderr`, if there is one.
pub fn parse_marker(stderr: &str, marker: &str) -> Option<i64> {
    stderr.lines().rev().find_map(|line| {
        line.trim()
            .strip_prefix(marker)
            .and_then(|code| code.trim().parse().ok())
    })
}

/// `stderr` without the marker lines, each line's control characters escaped
/// ([`escape_control`]): tar names the tenant's files in it, and BusyBox tar prints them raw.
pub fn without_marker(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.starts_with(EXIT_MARKER) && !l.starts_with(GZIP_EXIT_MARKER)
        })
        .map(escape_control)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Bytes of stderr kept for messages.
pub const STDERR_TAIL: usize = 16 * 1024;
/// Buffer between the exec connection and the stream reader.
const STDOUT_BUFFER: usize = 1024 * 1024;

/// The last bytes of a stream.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    bytes: Arc<Mutex<Vec<u8>>>,
    limit: usize,
}

impl Tail {
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Arc::default(),
            limit,
        }
    }

    pub fn push(&self, data: &[u8]) {
        let Ok(mut bytes) = self.bytes.lock() else {
            return;
        };
        bytes.extend_from_slice(data);
        if bytes.len() > self.limit {
            let excess = bytes.len() - self.limit;
            bytes.drain(..excess);
        }
    }

    /// The kept text (lossy UTF-8), trimmed.
    pub fn text(&self) -> String {
        self.bytes
            .lock()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default()
    }
}

/// A running command in the helper: its stdout (failing with [`ConnectionLost`] when the
/// connection is lost), stdin (held open until [`TarSession::finish`]), the tail of its stderr,
/// the exit code it reports there, and how the connection ended ([`Link`]).
pub struct TarSession {
    process: AttachedProcess,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    link: Link,
    status_task: AbortOnDrop,
    stderr: Tail,
    stderr_task: AbortOnDrop,
    marker: watch::Receiver<Option<i64>>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the remote command ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutcome {
    /// The status from the status channel; `None` when the connection ended without one.
    pub status: Option<Status>,
    /// tar's exit code as the helper's shell reported it on stderr.
    pub reported_exit: Option<i64>,
    /// The compressor's exit code (source compression), as the helper's shell reported it.
    pub compressor_exit: Option<i64>,
    /// stderr without the exit marker.
    pub stderr: String,
    /// Error of the connection's message loop, if any.
    pub transport_error: Option<String>,
    /// The connection ended without the command's exit status (not closed by nkvm): the API
    /// server, or the network to it, went away.
    pub connection_lost: bool,
}

impl ExecOutcome {
    /// tar (and the compressor, when there is one) exited 0: as reported by the shell, else by
    /// the exit status.
    pub fn succeeded(&self) -> bool {
        if self.compressor_exit.is_some_and(|code| code != 0) {
            return false;
        }
        match self.reported_exit {
            Some(code) => code == 0,
            None => self
                .status
                .as_ref()
                .is_some_and(|s| s.status.as_deref() == Some("Success")),
        }
    }

    /// The non-zero exit code, reported by the shell or carried by a `NonZeroExitCode` status.
    pub fn exit_code(&self) -> Option<i64> {
        self.reported_exit
            .filter(|c| *c != 0)
            .or_else(|| exit_code(self.status.as_ref()?))
    }
}

/// The exit code a failure status carries (`details.causes[reason=ExitCode].message`).
pub fn exit_code(status: &Status) -> Option<i64> {
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

impl TarSession {
    /// Starts `command` in the helper container (stdin attached when `stdin`), retrying transient
    /// connection failures.
    pub async fn start(
        api: &Api<Pod>,
        pod: &str,
        command: Vec<String>,
        stdin: bool,
        retry: RetryPolicy,
    ) -> Result<Self, BackupError> {
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(stdin)
            .stdout(true)
            .stderr(true)
            .tty(false)
            .max_stdout_buf_size(STDOUT_BUFFER)
            .max_stderr_buf_size(64 * 1024);
        let attempts = retry.attempts.max(1);
        let mut attempt = 1;
        let mut process = loop {
            match api.exec(pod, command.clone(), &params).await {
                Ok(process) => break process,
                Err(err) if is_transient(&err) && attempt < attempts => {
                    tracing::warn!(pod, attempt, error = %err, "exec failed; retrying");
                    tokio::time::sleep(retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(err) => {
                    let namespace = api.namespace().unwrap_or_default().to_owned();
                    return Err(BackupError::Exec {
                        pod: pod.to_owned(),
                        message: format!(
                            "could not exec into helper pod {pod}: {}",
                            kubeapi::advice(
                                &err,
                                Call::new("get and create", "pods/exec", &namespace)
                            )
                        ),
                    });
                }
            }
        };
        let missing = |what: &str| BackupError::Exec {
            pod: pod.to_owned(),
            message: format!("the exec session has no {what}"),
        };
        let stdout = process.stdout().ok_or_else(|| missing("stdout"))?;
        let stderr = process.stderr().ok_or_else(|| missing("stderr"))?;
        let stdin_writer: Option<Box<dyn AsyncWrite + Send + Unpin>> = if stdin {
            Some(Box::new(process.stdin().ok_or_else(|| missing("stdin"))?))
        } else {
            None
        };
        let status = process
            .take_status()
            .ok_or_else(|| missing("status channel"))?;
        // The status channel closes without a status when the connection's message loop ends on
        // a transport error: that is the moment the connection is known lost.
        let link = Link::default();
        let ended = link.clone();
        let status_task = tokio::spawn(async move {
            ended.end(match status.await {
                Some(status) => Ending::Status(Box::new(status)),
                None => Ending::Lost,
            });
        });
        let tail = Tail::new(STDERR_TAIL);
        let sink = tail.clone();
        let (marker_tx, marker) = watch::channel(None);
        // Drained concurrently: an unread stderr would block the connection's message loop.
        let mut stderr = Guarded::new(stderr, link.clone());
        let stderr_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.push(&buf[..n]);
                if marker_tx.borrow().is_none()
                    && let Some(code) = parse_exit_marker(&sink.text())
                {
                    let _ = marker_tx.send(Some(code));
                }
            }
        });
        Ok(Self {
            process,
            stdout: Box::new(Guarded::new(stdout, link.clone())),
            stdin: stdin_writer,
            link,
            status_task: AbortOnDrop(status_task),
            stderr: tail,
            stderr_task: AbortOnDrop(stderr_task),
            marker,
        })
    }

    /// The command's stdout.
    pub fn stdout(&mut self) -> &mut (dyn AsyncRead + Send + Unpin) {
        &mut *self.stdout
    }

    /// Resolves once tar's exit code was reported, or stderr closed (the command or the connection
    /// ended).
    pub fn exited(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut marker = self.marker.clone();
        async move {
            let _ = marker.wait_for(Option::is_some).await;
        }
    }

    /// Drops the connection without waiting for the command (which the helper's deletion stops).
    pub fn abort(self) -> ExecOutcome {
        let stderr = self.stderr.text();
        let reported_exit = *self.marker.borrow();
        ExecOutcome {
            status: None,
            reported_exit: reported_exit.or_else(|| parse_exit_marker(&stderr)),
            compressor_exit: parse_marker(&stderr, GZIP_EXIT_MARKER),
            stderr: without_marker(&stderr),
            transport_error: Some("aborted by nkvm".to_owned()),
            connection_lost: false,
        }
    }

    /// Ends the session: drains stdout until tar's exit code is reported (at most `wait`), closes
    /// stdin so the helper's shell exits, drains stdout to its end and reads the exit status.
    pub async fn finish(self, wait: Duration) -> ExecOutcome {
        let Self {
            process,
            mut stdout,
            stdin,
            link,
            mut status_task,
            stderr,
            mut stderr_task,
            mut marker,
        } = self;
        let mut scratch = vec![0u8; 64 * 1024];
        let mut eof = false;
        let reported = async {
            loop {
                tokio::select! {
                    _ = marker.wait_for(Option::is_some) => break,
                    read = stdout.read(&mut scratch) => {
                        if !matches!(read, Ok(n) if n > 0) {
                            eof = true;
                            break;
                        }
                    }
                }
            }
        };
        let _ = tokio::time::timeout(wait, reported).await;
        if let Some(mut stdin) = stdin {
            let _ = tokio::time::timeout(Duration::from_secs(5), stdin.shutdown()).await;
        }
        if !eof {
            let drain =
                async { while matches!(stdout.read(&mut scratch).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        }
        drop(stdout);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut status_task.0).await;
        let status = link.status();
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut stderr_task.0).await;
        let text = stderr.text();
        let reported_exit = *marker.borrow();
        let transport_error =
            match tokio::time::timeout(Duration::from_secs(2), process.join()).await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some("the exec connection did not close".to_owned()),
            };
        ExecOutcome {
            status,
            reported_exit: reported_exit.or_else(|| parse_exit_marker(&text)),
            compressor_exit: parse_marker(&text, GZIP_EXIT_MARKER),
            stderr: without_marker(&text),
            transport_error,
            connection_lost: link.ending() == Some(Ending::Lost),
        }
    }
}

/// Reads a small command's whole stdout (at most `limit` bytes) within `timeout`.
pub async fn exec_capture(
    api: &Api<Pod>,
    pod: &str,
    command: Vec<String>,
    limit: usize,
    timeout: Duration,
) -> Option<String> {
    let run = async {
        let retry = RetryPolicy {
            attempts: 1,
            base_delay: Duration::ZERO,
        };
        let mut session = TarSession::start(api, pod, command, false, retry)
            .await
            .ok()?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = session.stdout().read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            if out.len() + n > limit {
                return None;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(timeout, run).await.ok().flatten()
}

/// Totals of the volume from a cheap walk in the helper, for percentages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Apparent size of everything under the mount (`du -sb`).
    pub bytes: u64,
    /// Number of regular files.
    pub files: u64,
}

/// The pre-scan command: apparent size, then the number of regular files.
pub fn prescan_command() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "du -sb {MOUNT_PATH} 2>/dev/null | cut -f1; find {MOUNT_PATH} -type f 2>/dev/null | wc -l"
        ),
    ]
}

/// Parses the pre-scan output: two numbers on two lines.
pub fn parse_prescan(output: &str) -> Option<Totals> {
    let mut numbers = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        });
    let bytes = numbers.next()??;
    let files = numbers.next()??;
    Some(Totals { bytes, files })
}

/// Runs the pre-scan; `None` when it fails or takes longer than `timeout`.
pub async fn prescan(api: &Api<Pod>, pod: &str, timeout: Duration) -> Option<Totals> {
    let output = exec_capture(api, pod, prescan_command(), 4096, timeout).await?;
    parse_prescan(&output)
}

#[cfg(test)]
mod tests;
