//! Helper pod removal on every path: idempotent deletion (a missing pod is deleted already), a guard
//! that deletes on drop (cancellation, panics), a sweeper that retries failed deletions, and start-up
//! recovery (interrupted runs, orphan helpers, and per destination the unfinished uploads of this
//! instance's runs that are no longer active: S3 multipart uploads aborted, `.partial` files
//! removed).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client};
use serde::Serialize;

use super::pod::{LABEL_RUN_ID, helper_pod_name, helper_selector};
use crate::destination::{ArtifactKeys, Destination, Destinations};
use crate::domain::RunStatus;
use crate::kubeapi::{self, Call, http_status, is_transient, timed};
use crate::store::{HelperPod, Store, StoreError};

/// Deletes a helper pod immediately (grace period 0). With `uid`, only the pod of that UID (a
/// deletion precondition): a pod of the same name that nkvm did not create is never deleted. A pod
/// that does not exist (or no longer has that UID) counts as deleted. Transient failures are
/// retried twice; the error says what failed and what to do.
pub async fn delete_helper(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match timed(timeout, api.delete(name, &params)).await {
            Ok(_) => return Ok(()),
            Err(err) if http_status(&err) == Some(404) => return Ok(()),
            // The precondition failed: the pod of that UID is gone, another one has the name.
            Err(err) if uid.is_some() && http_status(&err) == Some(409) => return Ok(()),
            Err(err) => err,
        };
        if is_transient(&err) && attempt < 3 {
            tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            continue;
        }
        return Err(format!(
            "deleting helper pod {namespace}/{name} failed: {}; it is retried in the background \
             and at the next start, or delete it with `kubectl delete pod -n {namespace} {name}`",
            kubeapi::advice(&err, Call::new("delete", "pods", namespace))
        ));
    }
}

/// A deletion waiting for the sweeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeletion {
    pub namespace: String,
    pub pod: String,
    /// The UID nkvm created it with, when known: only that pod is deleted.
    pub uid: Option<String>,
    pub attempts: u32,
    pub last_error: String,
}

struct SweeperInner {
    client: Client,
    timeout: Duration,
    interval: Duration,
    pending: Mutex<BTreeMap<(String, String), PendingDeletion>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SweeperInner {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

/// Retries helper deletions that failed, every `interval`, until they succeed.
#[derive(Clone)]
pub struct Sweeper {
    inner: Arc<SweeperInner>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("pending", &self.pending().len())
            .finish_non_exhaustive()
    }
}

impl Sweeper {
    pub fn new(client: Client, interval: Duration, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(SweeperInner {
                client,
                timeout,
                interval,
                pending: Mutex::default(),
                task: Mutex::default(),
            }),
        }
    }

    /// Queues a deletion (of the pod with `uid`, when known) and makes sure the background task
    /// runs.
    pub fn add(&self, namespace: &str, pod: &str, uid: Option<&str>, error: &str) {
        if let Ok(mut pending) = self.inner.pending.lock() {
            let entry = pending
                .entry((namespace.to_owned(), pod.to_owned()))
                .or_insert_with(|| PendingDeletion {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    uid: uid.map(str::to_owned),
                    attempts: 0,
                    last_error: String::new(),
                });
            entry.attempts += 1;
            error.clone_into(&mut entry.last_error);
        }
        self.ensure_task();
    }

    /// Deletions still waiting.
    pub fn pending(&self) -> Vec<PendingDeletion> {
        self.inner
            .pending
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One pass over the queue; returns how many deletions are still pending.
    pub async fn sweep_once(&self) -> usize {
        sweep(&self.inner).await
    }

    fn ensure_task(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(mut task) = self.inner.task.lock() else {
            return;
        };
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak: Weak<SweeperInner> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        *task = Some(handle.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if sweep(&inner).await == 0 {
                    return;
                }
            }
        }));
    }
}

async fn sweep(inner: &SweeperInner) -> usize {
    let queued: Vec<PendingDeletion> = inner
        .pending
        .lock()
        .map(|p| p.values().cloned().collect())
        .unwrap_or_default();
    for item in queued {
        let result = delete_helper(
            &inner.client,
            &item.namespace,
            &item.pod,
            item.uid.as_deref(),
            inner.timeout,
        )
        .await;
        let Ok(mut pending) = inner.pending.lock() else {
            continue;
        };
        let key = (item.namespace.clone(), item.pod.clone());
        match result {
            Ok(()) => {
                tracing::info!(namespace = %item.namespace, pod = %item.pod, "sweeper deleted helper pod");
                pending.remove(&key);
            }
            Err(err) => {
                tracing::warn!(namespace = %item.namespace, pod = %item.pod, error = %err, "sweeper could not delete helper pod");
                if let Some(entry) = pending.get_mut(&key) {
                    entry.attempts += 1;
                    entry.last_error = err;
                }
            }
        }
    }
    inner.pending.lock().map(|p| p.len()).unwrap_or_default()
}

/// Deletes the helper pod when dropped while armed (cancelled or panicking runs); the normal paths
/// call [`HelperGuard::delete`].
pub struct HelperGuard {
    client: Client,
    namespace: String,
    name: String,
    /// The UID the pod was created with (set once the create answered).
    uid: Option<String>,
    timeout: Duration,
    sweeper: Sweeper,
    armed: bool,
}

impl HelperGuard {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        timeout: Duration,
        sweeper: Sweeper,
    ) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: None,
            timeout,
            sweeper,
            armed: true,
        }
    }

    /// Notes the UID the pod was created with: from then on only that pod is deleted.
    pub fn set_uid(&mut self, uid: &str) {
        self.uid = Some(uid.to_owned());
    }

    /// The helper pod's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the pod now; a failure is handed to the sweeper and returned as a message.
    pub async fn delete(mut self) -> Result<(), String> {
        self.armed = false;
        let uid = self.uid.as_deref();
        match delete_helper(&self.client, &self.namespace, &self.name, uid, self.timeout).await {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::warn!(pod = %self.name, error = %err, "helper pod deletion failed");
                self.sweeper.add(&self.namespace, &self.name, uid, &err);
                Err(err)
            }
        }
    }
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, namespace, name, uid, timeout, sweeper) = (
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
            self.uid.clone(),
            self.timeout,
            self.sweeper.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let uid = uid.as_deref();
                    if let Err(err) = delete_helper(&client, &namespace, &name, uid, timeout).await
                    {
                        sweeper.add(&namespace, &name, uid, &err);
                    }
                });
            }
            Err(_) => sweeper.add(
                &namespace,
                &name,
                uid.as_deref(),
                "dropped outside a runtime",
            ),
        }
    }
}

/// What start-up recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Run ids marked `interrupted`.
    pub interrupted: Vec<String>,
    /// Orphan helper pods deleted (`namespace/name`).
    pub helpers_deleted: Vec<String>,
    /// `.partial` files removed from `<data-dir>/artifacts`.
    pub partials_removed: Vec<PathBuf>,
    /// Unfinished uploads of this instance's runs removed at a destination (their URIs): S3
    /// multipart uploads aborted, `.partial` files deleted.
    pub uploads_aborted: Vec<String>,
    /// What could not be done (listing or deleting refused, unreadable directories).
    pub warnings: Vec<String>,
}

/// Where recovery looks.
#[derive(Debug, Clone)]
pub struct RecoveryScope<'a> {
    /// Only helpers of this instance (see [`super::pod::LABEL_INSTANCE`]); all when `None`.
    pub instance: Option<&'a str>,
    /// Only these namespaces; all when `None`.
    pub namespaces: Option<&'a [String]>,
    /// Runs still in progress in this process: their helpers and uploads are kept.
    pub active_run_ids: &'a HashSet<String>,
    /// `(destination, archive key)` of the uploads those runs write.
    pub active_uploads: &'a HashSet<(String, String)>,
}

/// Longest time recovery spends on one destination (a server that is down must not hold up the
/// start); what is left is tried again at the next start.
const DESTINATION_RECOVERY_WAIT: Duration = Duration::from_secs(30);

/// Records the helper pod nkvm just created (`created`, the apiserver's answer) for `job_id`: its
/// UID goes into the history's `helper_pods` and onto `guard`, so that recovery, the sweeper and
/// the guard delete only that pod. Returns the UID (`None` when the answer had none, which an
/// apiserver never does).
pub(crate) async fn record_created(
    store: &Store,
    guard: Option<&mut HelperGuard>,
    created: &Pod,
    job_id: &str,
) -> Result<Option<String>, StoreError> {
    let meta = &created.metadata;
    let (Some(uid), Some(namespace), Some(name)) = (&meta.uid, &meta.namespace, &meta.name) else {
        return Ok(None);
    };
    if let Some(guard) = guard {
        guard.set_uid(uid);
    }
    store
        .record_helper(&HelperPod {
            uid: uid.clone(),
            job_id: job_id.to_owned(),
            namespace: namespace.clone(),
            name: name.clone(),
        })
        .await?;
    Ok(Some(uid.clone()))
}

/// Whether a pod that carries the helper labels is one nkvm created.
pub(crate) enum Ownership {
    /// Delete it (only the pod of this UID).
    Ours {
        namespace: String,
        name: String,
        uid: String,
    },
    /// Leave it; the text says why (a recovery warning).
    NotOurs(String),
}

/// Decides whether nkvm created the pod of `meta` (labels alone prove nothing: whoever may label
/// pods can add them): its UID is in the history's `helper_pods`, or — for jobs recorded before
/// UIDs were — its run-id label names such a job of this data directory, in the same namespace,
/// and the pod has that job's helper name (`helper_name(job id)`).
pub(crate) async fn created_by_nkvm(
    store: &Store,
    meta: &ObjectMeta,
    helper_name: fn(&str) -> String,
) -> Result<Ownership, StoreError> {
    let (Some(namespace), Some(name), Some(uid)) = (&meta.namespace, &meta.name, &meta.uid) else {
        return Ok(Ownership::NotOurs(
            "a listed helper pod had no namespace, name or UID".to_owned(),
        ));
    };
    let job = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_RUN_ID))
        .map_or("", String::as_str);
    let ours = store.helper_recorded(uid).await?
        || (!job.is_empty()
            && *name == helper_name(job)
            && store.job_before_helper_uids(job, namespace).await?);
    Ok(if ours {
        Ownership::Ours {
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
        }
    } else {
        Ownership::NotOurs(format!(
            "left pod {namespace}/{name}: it carries nkvm's helper labels, but nkvm's history has \
             no record of creating it; delete it yourself if it is a stale helper"
        ))
    })
}

/// Start-up recovery: marks `running` rows `interrupted`, deletes orphan helper pods (those whose
/// UID nkvm recorded, see [`created_by_nkvm`]),
/// removes `*.partial` files under `artifacts_dir` (`<data-dir>/artifacts`, this instance's own
/// directory), and at every destination removes what unfinished uploads of this instance's
/// finished runs left ([`recover_destination`]). Only the store failing is an error; refused
/// listings or deletions become warnings.
pub async fn recover(
    client: &Client,
    store: &Store,
    destinations: &Destinations,
    artifacts_dir: &Path,
    scope: &RecoveryScope<'_>,
    timeout: Duration,
) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let rows = store
        .mark_interrupted("interrupted: the nkvm process stopped before the backup finished")
        .await?;
    report.interrupted = rows.into_iter().map(|r| r.run_id).collect();

    let selector = helper_selector(scope.instance);
    let apis: Vec<(Option<String>, Api<Pod>)> = match scope.namespaces {
        None => vec![(None, Api::all(client.clone()))],
        Some(namespaces) => namespaces
            .iter()
            .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
            .collect(),
    };
    for (namespace, api) in apis {
        let where_ = namespace.as_deref().unwrap_or("all namespaces");
        let listed = timed(
            timeout,
            api.list_metadata(&ListParams::default().labels(&selector)),
        )
        .await;
        let pods = match listed {
            Ok(list) => list.items,
            Err(err) => {
                let call = Call {
                    verb: "list",
                    resource: "pods",
                    namespace: namespace.as_deref(),
                };
                report.warnings.push(format!(
                    "could not list helper pods in {where_}: {}",
                    kubeapi::advice(&err, call)
                ));
                continue;
            }
        };
        for pod in pods {
            let run_id = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_RUN_ID))
                .cloned()
                .unwrap_or_default();
            if scope.active_run_ids.contains(&run_id) {
                continue;
            }
            match created_by_nkvm(store, &pod.metadata, helper_pod_name).await? {
                Ownership::Ours {
                    namespace,
                    name,
                    uid,
                } => match delete_helper(client, &namespace, &name, Some(&uid), timeout).await {
                    Ok(()) => report.helpers_deleted.push(format!("{namespace}/{name}")),
                    Err(err) => report.warnings.push(err),
                },
                Ownership::NotOurs(warning) => report.warnings.push(warning),
            }
        }
    }

    let dir = artifacts_dir.to_owned();
    let keep = active_partial_paths(destinations, scope.active_uploads);
    let removed = tokio::task::spawn_blocking(move || remove_partials(&dir, &keep))
        .await
        .unwrap_or_else(|err| {
            (
                Vec::new(),
                vec![format!("partial file sweep failed: {err}")],
            )
        });
    report.partials_removed = removed.0;
    report.warnings.extend(removed.1);

    let passes = destinations.iter().map(|destination| async move {
        let pass = recover_destination(store, destination, scope.active_uploads);
        match tokio::time::timeout(DESTINATION_RECOVERY_WAIT, pass).await {
            Ok(result) => result,
            Err(_) => (
                Vec::new(),
                vec![format!(
                    "destination {}: recovery took longer than {} s and was left for the next \
                     start",
                    destination.name(),
                    DESTINATION_RECOVERY_WAIT.as_secs()
                )],
            ),
        }
    });
    for (aborted, warnings) in futures::future::join_all(passes).await {
        report.uploads_aborted.extend(aborted);
        report.warnings.extend(warnings);
    }
    // The caller reports the warnings (the server logs them, the CLI prints them once).
    Ok(report)
}

/// The `.partial` files active uploads to local destinations may write (archive, sidecar,
/// manifest), which the sweep of the data directory keeps.
fn active_partial_paths(
    destinations: &Destinations,
    active: &HashSet<(String, String)>,
) -> HashSet<PathBuf> {
    let mut paths = HashSet::new();
    for (name, archive) in active {
        let (Ok(destination), Some(keys)) =
            (destinations.get(name), ArtifactKeys::for_archive(archive))
        else {
            continue;
        };
        if let Some(root) = destination.local_root() {
            for key in [keys.archive, keys.sidecar, keys.manifest] {
                paths.insert(root.join(format!("{key}.partial")));
            }
        }
    }
    paths
}

/// One destination's recovery: every unfinished upload ([`Destination::pending_uploads`]) whose
/// archive belongs to a run of this instance's history that is no longer running (nor active in
/// this process) is removed ([`Destination::abort_pending`]). Uploads of other instances sharing
/// the destination, and of runs still going, are never touched. Returns the URIs removed and the
/// warnings.
async fn recover_destination(
    store: &Store,
    destination: &Destination,
    active: &HashSet<(String, String)>,
) -> (Vec<String>, Vec<String>) {
    let (mut aborted, mut warnings) = (Vec::new(), Vec::new());
    let pending = match destination.pending_uploads().await {
        Ok(pending) => pending,
        Err(error) => {
            warnings.push(format!(
                "could not list unfinished uploads: {error}; they are tried again at the next start"
            ));
            return (aborted, warnings);
        }
    };
    for key in pending {
        let Some(archive) = ArtifactKeys::archive_of(&key) else {
            continue;
        };
        if active.contains(&(destination.name().to_owned(), archive.clone())) {
            continue;
        }
        match store.run_for_object(destination.name(), &archive).await {
            Ok(Some(run)) if run.status != RunStatus::Running => {}
            Ok(_) => continue,
            Err(error) => {
                warnings.push(format!("could not look up the run of {key}: {error}"));
                continue;
            }
        }
        match destination.abort_pending(&key).await {
            Ok(()) => aborted.push(destination.uri(&key)),
            Err(error) => warnings.push(error.to_string()),
        }
    }
    (aborted, warnings)
}

/// Removes `*.partial` files under `dir` (recursively), except `keep`.
fn remove_partials(dir: &Path, keep: &HashSet<PathBuf>) -> (Vec<PathBuf>, Vec<String>) {
    let mut removed = Vec::new();
    let mut warnings = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                warnings.push(format!("could not read {}: {err}", current.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "partial") && !keep.contains(&path) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(path),
                    Err(err) => {
                        warnings.push(format!("could not remove {}: {err}", path.display()));
                    }
                }
            }
        }
    }
    removed.sort();
    (removed, warnings)
}

#[cfg(test)]
mod tests;
