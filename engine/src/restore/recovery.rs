//! Start-up recovery of restores a previous nkvm process did not finish: their history rows
//! become `interrupted`, their helper pods are deleted, the workloads they scaled down are scaled
//! back to the replica counts recorded on them, and the PVCs they created and never completed
//! are deleted. Only this instance's objects (label `nkvm.io/instance`) are touched, and jobs
//! still active in this process are spared.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use serde::Serialize;

use super::engine::Inner;
use super::pod::{LABEL_RESTORE_ID, helper_selector, incomplete_pvc_selector};
use super::scale::{self, scaled_down_by};
use crate::backup::cleanup::delete_helper;
use crate::backup::pod::LABEL_RUN_ID;
use crate::kubeapi::{self, Call, http_status, timed};
use crate::store::StoreError;

/// What start-up recovery of restores did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreRecovery {
    /// Restore ids marked `interrupted`.
    pub interrupted: Vec<String>,
    /// Restore helper pods deleted (`namespace/name`).
    pub helpers_deleted: Vec<String>,
    /// Workloads scaled back (`namespace/Kind/name`).
    pub scaled_back: Vec<String>,
    /// Incomplete PVCs of interrupted restores deleted (`namespace/name`).
    pub pvcs_deleted: Vec<String>,
    /// What could not be done.
    pub warnings: Vec<String>,
}

/// Recovery for `inner`'s instance in `namespaces` (`None`: all), sparing the jobs in `active`.
pub(super) async fn recover(
    inner: &Inner,
    namespaces: Option<&[String]>,
    active: &[String],
) -> Result<RestoreRecovery, StoreError> {
    let mut report = RestoreRecovery::default();
    let rows = inner
        .store()
        .mark_restores_interrupted(
            "interrupted: the nkvm process stopped before the restore finished; at the next start \
             its helper pod was removed, workloads it scaled down were scaled back, and a new PVC \
             it had not completed was deleted",
        )
        .await?;
    report.interrupted = rows
        .into_iter()
        .filter(|r| !active.contains(&r.restore_id))
        .map(|r| r.restore_id)
        .collect();
    let options = inner.backup_options();
    let scope = Scope {
        client: inner.backups.client(),
        timeout: options.request_timeout,
        instance: options
            .instance
            .clone()
            .unwrap_or_else(|| "nkvm".to_owned()),
        active,
    };
    // Scale back first: workloads must never stay down because a later step failed.
    scale_back(&scope, namespaces, &mut report).await;
    let namespaces: Vec<Option<String>> = match namespaces {
        None => vec![None],
        Some(list) => list.iter().cloned().map(Some).collect(),
    };
    for namespace in &namespaces {
        delete_helpers(&scope, namespace.as_deref(), &mut report).await;
        delete_incomplete_pvcs(&scope, namespace.as_deref(), &mut report).await;
    }
    for warning in &report.warnings {
        tracing::warn!(%warning, "restore recovery");
    }
    Ok(report)
}

/// What every recovery step needs.
struct Scope<'a> {
    client: &'a Client,
    timeout: std::time::Duration,
    instance: String,
    active: &'a [String],
}

fn listing_failed(
    what: &str,
    resource: &str,
    namespace: Option<&str>,
    err: &kube::Error,
) -> String {
    format!(
        "could not list {what} in {}: {}",
        namespace.unwrap_or("all namespaces"),
        kubeapi::advice(
            err,
            Call {
                verb: "list",
                resource,
                namespace,
            }
        )
    )
}

/// Scales back the workloads this instance left scaled down.
async fn scale_back(
    scope: &Scope<'_>,
    namespaces: Option<&[String]>,
    report: &mut RestoreRecovery,
) {
    let (scaled, warnings) =
        scaled_down_by(scope.client, namespaces, &scope.instance, scope.timeout).await;
    report.warnings.extend(warnings);
    for (ns, workload, restore_id) in scaled {
        if scope.active.contains(&restore_id) {
            continue;
        }
        match scale::scale_up(scope.client, &ns, &workload, scope.timeout).await {
            Ok(note) => {
                report.scaled_back.push(format!("{ns}/{workload}"));
                report.warnings.extend(note);
            }
            Err(err) => report.warnings.push(err),
        }
    }
}

/// Deletes this instance's restore helpers in `namespace` (`None`: all).
async fn delete_helpers(scope: &Scope<'_>, namespace: Option<&str>, report: &mut RestoreRecovery) {
    let pods: Api<Pod> = match namespace {
        None => Api::all(scope.client.clone()),
        Some(ns) => Api::namespaced(scope.client.clone(), ns),
    };
    let selector = helper_selector(Some(&scope.instance));
    let list = match timed(
        scope.timeout,
        pods.list_metadata(&ListParams::default().labels(&selector)),
    )
    .await
    {
        Ok(list) => list,
        Err(err) => {
            report.warnings.push(listing_failed(
                "restore helper pods",
                "pods",
                namespace,
                &err,
            ));
            return;
        }
    };
    for pod in list.items {
        let id = label(&pod.metadata, LABEL_RUN_ID);
        let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        if scope.active.contains(&id) {
            continue;
        }
        match delete_helper(scope.client, &ns, &name, scope.timeout).await {
            Ok(()) => report.helpers_deleted.push(format!("{ns}/{name}")),
            Err(err) => report.warnings.push(err),
        }
    }
}

/// Deletes the PVCs this instance created for restores that never completed.
async fn delete_incomplete_pvcs(
    scope: &Scope<'_>,
    namespace: Option<&str>,
    report: &mut RestoreRecovery,
) {
    let pvcs: Api<PersistentVolumeClaim> = match namespace {
        None => Api::all(scope.client.clone()),
        Some(ns) => Api::namespaced(scope.client.clone(), ns),
    };
    let selector = incomplete_pvc_selector(Some(&scope.instance));
    let list = match timed(
        scope.timeout,
        pvcs.list_metadata(&ListParams::default().labels(&selector)),
    )
    .await
    {
        Ok(list) => list,
        Err(err) => {
            report.warnings.push(listing_failed(
                "incomplete restore PVCs",
                "persistentvolumeclaims",
                namespace,
                &err,
            ));
            return;
        }
    };
    for pvc in list.items {
        let id = label(&pvc.metadata, LABEL_RESTORE_ID);
        let (Some(ns), Some(name)) = (pvc.metadata.namespace, pvc.metadata.name) else {
            continue;
        };
        if scope.active.contains(&id) {
            continue;
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(scope.client.clone(), &ns);
        match timed(
            scope.timeout,
            api.delete(&name, &DeleteParams::background()),
        )
        .await
        {
            Ok(_) => report.pvcs_deleted.push(format!("{ns}/{name}")),
            Err(err) if http_status(&err) == Some(404) => {}
            Err(err) => report.warnings.push(format!(
                "could not delete the incomplete restore PVC {ns}/{name}: {}",
                kubeapi::advice(&err, Call::new("delete", "persistentvolumeclaims", &ns))
            )),
        }
    }
}

fn label(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> String {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}
