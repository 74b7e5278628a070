//! Lifecycle of the helper pod on the apiserver: create (with bounded retries for transient
//! failures), wait until it runs (failing fast on image and scheduling problems), exec `tar` (stdout
//! streamed, stderr tail kept, exit status read) and an optional cheap pre-scan for progress totals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::error::BackupError;
use super::pod::{CONTAINER, LABEL_RUN_ID, MOUNT_PATH};
use crate::kubeapi::{self, Call, http_status, is_transient, timed};

/// Bounded retries with exponential backoff for transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub base_delay: Duration,
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        self.base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// Creates the helper pod, retrying 429, 5xx and transport failures up to `retry.attempts` times; a
/// 409 after a failed attempt whose pod carries this run's id counts as created (the earlier attempt
/// reached the apiserver).
pub async fn create_with_retry(
    api: &Api<Pod>,
    pod: &Pod,
    retry: RetryPolicy,
    timeout: Duration,
) -> Result<Pod, BackupError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let run_id = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_RUN_ID))
        .cloned();
    let attempts = retry.attempts.max(1);
    let mut last: Option<kube::Error> = None;
    for attempt in 1..=attempts {
        if attempt > 1 {
            tokio::time::sleep(retry.delay(attempt - 1)).await;
        }
        match timed(timeout, api.create(&PostParams::default(), pod)).await {
            Ok(created) => return Ok(created),
            Err(err) if http_status(&err) == Some(409) && last.is_some() => {
                if let Ok(Some(existing)) = timed(timeout, super::lookup::object(api, &name)).await
                {
                    let same = existing
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_RUN_ID))
                        == run_id.as_ref();
                    if same {
                        return Ok(existing);
                    }
                }
                last = Some(err);
                break;
            }
            Err(err) if is_transient(&err) && attempt < attempts => {
                tracing::warn!(pod = %name, attempt, error = %err, "helper create failed; retrying");
                last = Some(err);
            }
            Err(err) => {
                last = Some(err);
                break;
            }
        }
    }
    let err = last.unwrap_or_else(|| kube::Error::Service("no attempt was made".into()));
    let status = http_status(&err);
    let tried = if is_transient(&err) {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    };
    Err(BackupError::CreateHelper {
        pod: name,
        message: format!(
            "{}{tried}",
            kubeapi::advice(&err, Call::new("create", "pods", &namespace))
        ),
        status,
    })
}

/// Container waiting reasons that will not resolve by waiting.
const FATAL_WAITING: [&str; 6] = [
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why a pending pod will not start, if it says so already (image problems, unschedulable, failed).
pub fn startup_failure(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref()?;
    let image = spec
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("?");
    let node = spec
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("its node");
    for container in status.container_statuses.iter().flatten() {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if !FATAL_WAITING.contains(&reason) {
            continue;
        }
        let detail = waiting.message.as_deref().unwrap_or_default();
        let advice = match reason {
            "ErrImageNeverPull" => format!(
                "image {image} is not on node {node} and its pull policy is Never; load the image \
                 onto the node, or choose another helper image (--helper-image / NKVM_HELPER_IMAGE)"
            ),
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => format!(
                "node {node} cannot pull image {image}; check the image name and tag (pin it by \
                 digest), registry access and pull secrets, or choose another helper image \
                 (--helper-image / NKVM_HELPER_IMAGE)"
            ),
            _ => format!(
                "the container of image {image} could not be created on node {node}; check the \
                 pod's events (`kubectl describe pod`)"
            ),
        };
        return Some(format!("{reason}: {advice} ({detail})"));
    }
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
        {
            return Some(format!(
                "Unschedulable: {}; the helper needs 100m CPU and 64Mi memory on a node that can \
                 mount the volume: free capacity or fix taints and node affinity, then retry",
                condition.message.as_deref().unwrap_or("no node fits")
            ));
        }
    }
    match status.phase.as_deref() {
        Some(phase @ ("Failed" | "Succeeded")) => Some(format!(
            "the pod ended ({phase}{}{}); check `kubectl describe pod` and the node's kubelet",
            status
                .reason
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default(),
            status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
            })
}

/// Short description of a pod's state, for timeout messages.
fn describe_state(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
        return "no status yet".to_owned();
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    )];
    for condition in status.conditions.iter().flatten() {
        if condition.status != "True" {
            parts.push(format!(
                "{}={} ({})",
                condition.type_,
                condition.status,
                condition
                    .reason
                    .as_deref()
                    .or(condition.message.as_deref())
                    .unwrap_or("-")
            ));
        }
    }
    for container in status.container_statuses.iter().flatten() {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "container waiting: {}",
                waiting.reason.as_deref().unwrap_or("-")
            ));
        }
    }
    parts.join(", ")
}

/// Waits until the helper runs; fails fast when [`startup_failure`] names a reason, and after
/// `timeout` otherwise. Returns the running pod.
pub async fn wait_running(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
) -> Result<Pod, BackupError> {
    let schedule = |message: String| BackupError::Schedule {
        pod: name.to_owned(),
        message,
    };
    let done = |pod: Option<&Pod>| match pod {
        None => true,
        Some(pod) => is_running(pod) || startup_failure(pod).is_some(),
    };
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, done)).await {
        Ok(Ok(Some(pod))) => match startup_failure(&pod) {
            Some(reason) if !is_running(&pod) => Err(schedule(reason)),
            _ => Ok(pod),
        },
        Ok(Ok(None)) => Err(schedule(
            "the pod was deleted before it started (by someone else, or an admission \
             controller); retry"
                .to_owned(),
        )),
        Ok(Err(err)) => Err(schedule(watch_failure(
            &err,
            api.namespace().unwrap_or_default(),
        ))),
        Err(_) => {
            let state = match super::lookup::object(api, name).await {
                Ok(Some(pod)) => describe_state(&pod),
                Ok(None) => "the pod no longer exists".to_owned(),
                Err(err) => format!("its state could not be read: {err}"),
            };
            Err(schedule(format!(
                "not running after {}s ({state}); check `kubectl describe pod` for events, node \
                 capacity and volume attachment, or raise the schedule timeout",
                timeout.as_secs()
            )))
        }
    }
}

/// What to do when the watch on the helper failed: the list or watch call's HTTP status and the
/// grant it needs when the apiserver answered, else a generic retry hint.
fn watch_failure(err: &kube::runtime::wait::Error, namespace: &str) -> String {
    use kube::runtime::watcher::Error as Watch;
    let kube::runtime::wait::Error::ProbeFailed(watch) = err;
    let (verb, source) = match watch {
        Watch::InitialListFailed(source) => ("list", source),
        Watch::WatchStartFailed(source) | Watch::WatchFailed(source) => ("watch", source),
        Watch::WatchError(_) | Watch::NoResourceVersion => {
            return format!(
                "watching the pod failed ({err}); check the connection to the apiserver and retry"
            );
        }
    };
    format!(
        "watching the pod failed: {}",
        kubeapi::advice(source, Call::new(verb, "pods", namespace))
    )
}

/// Marker the helper's shell prints on stderr with tar's exit code.
pub const EXIT_MARKER: &str = "nkvm-tar-exit=";

/// The command streaming the volume as a tar archive to stdout: `tar -cf - -C /data .`, wrapped so
/// that the shell reports tar's exit code on stderr and then waits for stdin to close before it
/// exits with that code. `tar` is looked up in `$PATH` by the shell script itself and run by its
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
            "t=tar; o=$IFS; IFS=:; for d in $PATH; do if [ -x \"$d/tar\" ]; then t=\"$d/tar\"; \
             break; fi; done; IFS=$o; \"$t\" -cf - -C {MOUNT_PATH} .; rc=$?; \
             echo \"{EXIT_MARKER}$rc\" >&2; cat >/dev/null; exit $rc"
        ),
    ]
}

/// The exit code in an [`EXIT_MARKER`] line of `stderr`, if there is one.
pub fn parse_exit_marker(stderr: &str) -> Option<i64> {
    stderr.lines().rev().find_map(|line| {
        line.trim()
            .strip_prefix(EXIT_MARKER)
            .and_then(|code| code.trim().parse().ok())
    })
}

/// `stderr` without the marker line.
fn without_marker(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.trim().starts_with(EXIT_MARKER))
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

/// A running command in the helper: its stdout, stdin (held open until [`TarSession::finish`]), the
/// tail of its stderr, the exit code it reports there, and the exit status.
pub struct TarSession {
    process: AttachedProcess,
    stdout: Box<dyn AsyncRead + Send + Unpin>,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    status: BoxFuture<'static, Option<Status>>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// The status from the status channel; `None` when the connection ended without one.
    pub status: Option<Status>,
    /// tar's exit code as the helper's shell reported it on stderr.
    pub reported_exit: Option<i64>,
    /// stderr without the exit marker.
    pub stderr: String,
    /// Error of the connection's message loop, if any.
    pub transport_error: Option<String>,
}

impl ExecOutcome {
    /// tar exited 0: as reported by the shell, else by the exit status.
    pub fn succeeded(&self) -> bool {
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
        let mut stderr = process.stderr().ok_or_else(|| missing("stderr"))?;
        let stdin_writer: Option<Box<dyn AsyncWrite + Send + Unpin>> = if stdin {
            Some(Box::new(process.stdin().ok_or_else(|| missing("stdin"))?))
        } else {
            None
        };
        let status = process
            .take_status()
            .ok_or_else(|| missing("status channel"))?
            .boxed();
        let tail = Tail::new(STDERR_TAIL);
        let sink = tail.clone();
        let (marker_tx, marker) = watch::channel(None);
        // Drained concurrently: an unread stderr would block the connection's message loop.
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
            stdout: Box::new(stdout),
            stdin: stdin_writer,
            status,
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

    /// The stderr kept so far (without the exit marker).
    pub fn stderr_tail(&self) -> String {
        without_marker(&self.stderr.text())
    }

    /// Drops the connection without waiting for the command (which the helper's deletion stops).
    pub fn abort(self) -> ExecOutcome {
        let stderr = self.stderr.text();
        let reported_exit = *self.marker.borrow();
        ExecOutcome {
            status: None,
            reported_exit: reported_exit.or_else(|| parse_exit_marker(&stderr)),
            stderr: without_marker(&stderr),
            transport_error: Some("aborted by nkvm".to_owned()),
        }
    }

    /// Ends the session: drains stdout until tar's exit code is reported (at most `wait`), closes
    /// stdin so the helper's shell exits, drains stdout to its end and reads the exit status.
    pub async fn finish(self, wait: Duration) -> ExecOutcome {
        let Self {
            process,
            mut stdout,
            stdin,
            status,
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
        let status = tokio::time::timeout(Duration::from_secs(10), status)
            .await
            .ok()
            .flatten();
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
            stderr: without_marker(&text),
            transport_error,
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

/// Whether the helper pod is gone or being deleted.
pub async fn helper_gone(client: &Client, namespace: &str, pod: &str) -> bool {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match timed(Duration::from_secs(10), super::lookup::object(&api, pod)).await {
        Ok(None) => true,
        Ok(Some(pod)) => {
            pod.metadata.deletion_timestamp.is_some()
                || matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_forbidden_watch_names_the_grant() {
        use kube::runtime::wait::Error as Wait;
        use kube::runtime::watcher::Error as Watch;
        let forbidden = || {
            kube::Error::Api(Box::new(kube::core::Status {
                code: 403,
                message: "forbidden".into(),
                ..kube::core::Status::default()
            }))
        };
        let watch = watch_failure(
            &Wait::ProbeFailed(Watch::WatchStartFailed(forbidden())),
            "shop",
        );
        assert!(
            watch.contains("HTTP 403 Forbidden: grant watch on pods in namespace shop"),
            "{watch}"
        );
        let list = watch_failure(
            &Wait::ProbeFailed(Watch::InitialListFailed(forbidden())),
            "shop",
        );
        assert!(
            list.contains("grant list on pods in namespace shop"),
            "{list}"
        );
        let other = watch_failure(&Wait::ProbeFailed(Watch::NoResourceVersion), "shop");
        assert!(other.contains("retry"), "{other}");
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "nkvm-backup-x"},
            "spec": {"nodeName": "n1", "containers": [{"name": "helper", "image": "nkvm.local/nope:1"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn image_problems_fail_fast_naming_image_and_node() {
        for reason in ["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull"] {
            let p = pod(json!({"phase": "Pending", "containerStatuses": [{
                "name": "helper", "image": "nkvm.local/nope:1", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}]}));
            let message = startup_failure(&p).unwrap();
            assert!(message.starts_with(reason), "{message}");
            assert!(message.contains("nkvm.local/nope:1"), "{message}");
            assert!(message.contains("node n1"), "{message}");
            assert!(message.contains("--helper-image"), "{message}");
        }
    }

    #[test]
    fn container_creating_is_not_a_failure() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "helper", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(startup_failure(&p), None);
        assert!(!is_running(&p));
    }

    #[test]
    fn unschedulable_fails_fast() {
        let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu."}]}));
        let message = startup_failure(&p).unwrap();
        assert!(message.contains("Insufficient cpu"), "{message}");
    }

    #[test]
    fn failed_pod_fails() {
        let p = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        assert!(startup_failure(&p).unwrap().contains("DeadlineExceeded"));
    }

    #[test]
    fn running_needs_a_running_container() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "helper", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}));
        assert!(is_running(&p));
        assert_eq!(startup_failure(&p), None);
    }

    #[test]
    fn exit_codes_come_from_the_status_causes() {
        let status: Status = serde_json::from_value(json!({
            "status": "Failure", "message": "command terminated with non-zero exit code",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}))
        .unwrap();
        assert_eq!(exit_code(&status), Some(2));
        let outcome = ExecOutcome {
            status: Some(status),
            reported_exit: None,
            stderr: String::new(),
            transport_error: None,
        };
        assert!(!outcome.succeeded());
        assert_eq!(outcome.exit_code(), Some(2));
    }

    #[test]
    fn the_reported_exit_code_decides() {
        let outcome = ExecOutcome {
            status: None,
            reported_exit: Some(0),
            stderr: String::new(),
            transport_error: Some("reset".into()),
        };
        assert!(outcome.succeeded());
        assert_eq!(outcome.exit_code(), None);
        let failed = ExecOutcome {
            reported_exit: Some(2),
            ..outcome
        };
        assert!(!failed.succeeded());
        assert_eq!(failed.exit_code(), Some(2));
    }

    #[test]
    fn exit_marker_parses_and_is_hidden() {
        let stderr = "tar: ./x: Cannot open: Permission denied\ntar: Exiting with failure status\nnkvm-tar-exit=2\n";
        assert_eq!(parse_exit_marker(stderr), Some(2));
        assert_eq!(parse_exit_marker("nothing"), None);
        assert!(!without_marker(stderr).contains("nkvm-tar-exit"));
        assert!(without_marker(stderr).contains("Permission denied"));
        let command = tar_command();
        assert_eq!(command[0], "sh");
        assert!(
            command[2].contains("\"$t\" -cf - -C /data .;"),
            "{}",
            command[2]
        );
        assert!(command[2].contains("cat >/dev/null"), "{}", command[2]);
    }

    #[test]
    fn prescan_output_parses() {
        assert_eq!(
            parse_prescan("123456\n42\n"),
            Some(Totals {
                bytes: 123_456,
                files: 42
            })
        );
        assert_eq!(
            parse_prescan("12\t/data\n  7\n"),
            Some(Totals {
                bytes: 12,
                files: 7
            })
        );
        assert_eq!(parse_prescan("\n3\n"), None);
        assert_eq!(parse_prescan("x\n3\n"), None);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let tail = Tail::new(10);
        tail.push(b"0123456789");
        tail.push(b"abc");
        assert_eq!(tail.text(), "3456789abc");
    }

    #[test]
    fn backoff_doubles() {
        let retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_secs(1),
        };
        assert_eq!(retry.delay(1), Duration::from_secs(1));
        assert_eq!(retry.delay(2), Duration::from_secs(2));
    }
}
