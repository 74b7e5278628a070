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
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde::Serialize;

use super::pod::{LABEL_RUN_ID, helper_selector};
use crate::destination::{ArtifactKeys, Destination, Destinations};
use crate::domain::RunStatus;
use crate::kubeapi::{self, Call, http_status, is_transient, timed};
use crate::store::{Store, StoreError};

/// Deletes a helper pod immediately (grace period 0). A pod that does not exist counts as deleted.
/// Transient failures are retried twice; the error says what failed and what to do.
pub async fn delete_helper(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match timed(timeout, api.delete(name, &params)).await {
            Ok(_) => return Ok(()),
            Err(err) if http_status(&err) == Some(404) => return Ok(()),
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

    /// Queues a deletion and makes sure the background task runs.
    pub fn add(&self, namespace: &str, pod: &str, error: &str) {
        if let Ok(mut pending) = self.inner.pending.lock() {
            let entry = pending
                .entry((namespace.to_owned(), pod.to_owned()))
                .or_insert_with(|| PendingDeletion {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
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
        let result = delete_helper(&inner.client, &item.namespace, &item.pod, inner.timeout).await;
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
            timeout,
            sweeper,
            armed: true,
        }
    }

    /// The helper pod's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the pod now; a failure is handed to the sweeper and returned as a message.
    pub async fn delete(mut self) -> Result<(), String> {
        self.armed = false;
        match delete_helper(&self.client, &self.namespace, &self.name, self.timeout).await {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::warn!(pod = %self.name, error = %err, "helper pod deletion failed");
                self.sweeper.add(&self.namespace, &self.name, &err);
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
        let (client, namespace, name, timeout, sweeper) = (
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
            self.timeout,
            self.sweeper.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(err) = delete_helper(&client, &namespace, &name, timeout).await {
                        sweeper.add(&namespace, &name, &err);
                    }
                });
            }
            Err(_) => sweeper.add(&namespace, &name, "dropped outside a runtime"),
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

/// Start-up recovery: marks `running` rows `interrupted`, deletes orphan helper pods (by label),
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
            let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
                continue;
            };
            match delete_helper(client, &ns, &name, timeout).await {
                Ok(()) => report.helpers_deleted.push(format!("{ns}/{name}")),
                Err(err) => report.warnings.push(err),
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
mod tests {
    use super::*;

    #[test]
    fn removes_only_partial_files_and_keeps_active_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ns/pvc");
        std::fs::create_dir_all(&sub).unwrap();
        for name in [
            "a.tar.gz.partial",
            "b.tar.gz",
            "b.tar.gz.sha256.partial",
            "c.tar.gz.partial",
        ] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        let keep = HashSet::from([sub.join("c.tar.gz.partial")]);
        let (removed, warnings) = remove_partials(dir.path(), &keep);
        assert!(warnings.is_empty());
        assert_eq!(
            removed,
            [
                sub.join("a.tar.gz.partial"),
                sub.join("b.tar.gz.sha256.partial")
            ]
        );
        assert!(sub.join("b.tar.gz").exists());
        assert!(sub.join("c.tar.gz.partial").exists());
    }

    /// A history row of `destination`/`key` with `status`.
    async fn run_at(store: &Store, run_id: &str, key: &str, status: RunStatus) {
        let id = store
            .insert_run(&crate::store::NewRun {
                run_id: run_id.to_owned(),
                pvc_uid: "uid".into(),
                namespace: "ns".into(),
                pvc: "pvc".into(),
                started_by: "test".into(),
                started_at: jiff::Timestamp::now(),
                cluster: None,
            })
            .await
            .unwrap();
        let update = crate::store::RunUpdate {
            status: Some(status),
            destination: Some("local".into()),
            object_key: Some(key.into()),
            ..crate::store::RunUpdate::default()
        };
        store.update_run(id, &update).await.unwrap();
    }

    #[tokio::test]
    async fn destination_recovery_removes_only_finished_runs_of_this_instance() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = Destinations::local_only(dir.path());
        let local = destinations.default_destination();
        let store = Store::open_in_memory().await.unwrap();
        let root = dir.path().join("artifacts/ns/pvc");
        std::fs::create_dir_all(&root).unwrap();
        // failed: its archive and sidecar partials go; running (in the database) and active (in
        // this process) stay; an upload no run of this history knows (another instance) stays.
        for name in [
            "failed.tar.gz.partial",
            "failed.tar.gz.sha256.partial",
            "running.tar.gz.partial",
            "active.tar.gz.partial",
            "foreign.tar.gz.partial",
            "done.tar.gz",
        ] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        run_at(&store, "r1", "ns/pvc/failed.tar.gz", RunStatus::Failed).await;
        run_at(&store, "r2", "ns/pvc/running.tar.gz", RunStatus::Running).await;
        run_at(&store, "r3", "ns/pvc/active.tar.gz", RunStatus::Interrupted).await;
        let active = HashSet::from([("local".to_owned(), "ns/pvc/active.tar.gz".to_owned())]);
        let (aborted, warnings) = recover_destination(&store, local, &active).await;
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut aborted = aborted;
        aborted.sort();
        assert_eq!(
            aborted,
            [
                local.uri("ns/pvc/failed.tar.gz"),
                local.uri("ns/pvc/failed.tar.gz.sha256"),
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "active.tar.gz.partial",
                "done.tar.gz",
                "foreign.tar.gz.partial",
                "running.tar.gz.partial"
            ]
        );
        // The data directory's sweep keeps what active uploads write.
        let keep = active_partial_paths(&destinations, &active);
        assert!(
            keep.contains(&root.join("active.tar.gz.partial")),
            "{keep:?}"
        );
        assert!(
            keep.contains(&root.join("active.tar.gz.sha256.partial")),
            "{keep:?}"
        );
    }

    #[test]
    fn a_missing_artifacts_dir_is_fine() {
        let (removed, warnings) = remove_partials(Path::new("/nonexistent/nkvm"), &HashSet::new());
        assert!(removed.is_empty() && warnings.is_empty());
    }
}
