//! Lifecycle of the helper pod on the apiserver: create (with bounded retries for transient
//! failures), wait until it runs (failing fast on image and scheduling problems), and tell whether
//! it is gone. Running commands in it is [`super::exec`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

use super::error::BackupError;
use super::pod::LABEL_RUN_ID;
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
    /// The delay before attempt `attempt + 1`.
    pub fn delay(&self, attempt: u32) -> Duration {
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
            && !waits_for_the_scheduler_cache(condition.message.as_deref())
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

/// Whether an `Unschedulable` message only says that the scheduler has not seen the pod's claim
/// yet (`persistentvolumeclaim "x" not found` right after nkvm created it): the scheduler retries,
/// so this is waited out (until the schedule timeout) instead of failing the run.
fn waits_for_the_scheduler_cache(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.contains("persistentvolumeclaim") && m.contains("not found"))
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
mod tests;
