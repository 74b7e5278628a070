//! Pre-flight of one backup: the PVC exists and is Bound, who uses it (ReadWriteOncePod in use is
//! refused, ReadWriteOnce in use pins the helper to the consumer's node), whom to run as, which
//! workload owns it, and whether the destination has room for it.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, PartialObjectMeta};
use kube::{Api, Client};

use super::error::BackupError;
use super::pod::{self, RunAs};
use crate::domain::format::format_bytes_exact;
use crate::domain::{Owner, PvcRef, PvcSummary, pvc};
use crate::kubeapi::{self, Call, http_status, timed};
use crate::objects::{self, is_nkvm_helper, is_terminated, mounts_claim, node_of, summarize};
use crate::owners::{self, MAX_OWNER_DEPTH, OwnerIndex};

/// The outcome of the pure pre-flight checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub pvc: PvcSummary,
    /// Pods (not nkvm helpers) whose spec mounts the claim, sorted.
    pub consumers: Vec<String>,
    /// The node to pin the helper to (ReadWriteOnce claim with a Running consumer).
    pub node: Option<String>,
    /// User/groups of the consumer pod, when it names them.
    pub run_as: Option<RunAs>,
    /// The consumer pod `run_as` was taken from.
    pub run_as_from: Option<String>,
}

fn name_of(pod: &Pod) -> &str {
    objects::name_of(&pod.metadata)
}

/// The pure checks: Bound, ReadWriteOncePod not in use, node pinning for ReadWriteOnce, run-as.
/// `pods` are the pods of the PVC's namespace.
pub fn plan(pvc: &PersistentVolumeClaim, pods: &[Pod]) -> Result<Plan, BackupError> {
    let summary = summarize(pvc);
    let target = format!("{}/{}", summary.namespace, summary.name);
    if summary.phase != "Bound" {
        return Err(BackupError::preflight(format!(
            "PVC {target} is {} (not Bound): there is no volume to back up yet; bind it (create a \
             pod that uses it, or check its storage class and events with `kubectl describe pvc -n \
             {} {}`), then retry",
            summary.phase, summary.namespace, summary.name
        )));
    }
    let using: Vec<&Pod> = pods
        .iter()
        .filter(|p| mounts_claim(p, &summary.name))
        .collect();
    let active: Vec<&Pod> = using
        .iter()
        .copied()
        .filter(|p| !is_terminated(p))
        .collect();

    if summary.is_read_write_once_pod() && !active.is_empty() {
        let names: Vec<&str> = active.iter().map(|p| name_of(p)).collect();
        let helpers = active.iter().any(|p| is_nkvm_helper(p));
        let advice = if helpers {
            "another nkvm backup of it is running; wait for it to finish".to_owned()
        } else {
            "a ReadWriteOncePod volume can be mounted by one pod only, so the backup helper \
             cannot mount it while it is in use: scale the owning workload down to 0 (e.g. \
             `kubectl scale --replicas=0 ...`) or stop the pod, back up, then scale it up again"
                .to_owned()
        };
        return Err(BackupError::preflight(format!(
            "PVC {target} is ReadWriteOncePod and in use by pod(s) {}; {advice}",
            names.join(", ")
        )));
    }

    let consumers: Vec<&Pod> = using
        .iter()
        .copied()
        .filter(|p| !is_nkvm_helper(p))
        .collect();
    let mut consumer_names: Vec<String> = consumers.iter().map(|p| name_of(p).to_owned()).collect();
    consumer_names.sort();
    consumer_names.dedup();

    let running: Vec<&Pod> = consumers
        .iter()
        .copied()
        .filter(|p| objects::pod_phase(p) == "Running")
        .collect();
    let running_nodes: BTreeSet<&str> = running.iter().filter_map(|p| node_of(p)).collect();
    let node = if summary.is_read_write_once() || summary.is_read_write_once_pod() {
        running_nodes.iter().next().map(|n| (*n).to_owned())
    } else {
        None
    };

    // Run as the Running consumer (the one on the pinned node), else any live one, else any.
    let mut ordered: Vec<&Pod> = running
        .iter()
        .copied()
        .filter(|p| node.is_none() || node_of(p) == node.as_deref())
        .collect();
    ordered.sort_by_key(|p| name_of(p));
    let mut rest: Vec<&Pod> = consumers.clone();
    rest.sort_by_key(|p| (is_terminated(p), name_of(p)));
    let source = ordered
        .into_iter()
        .chain(rest)
        .find_map(|p| pod::run_as_of(p).map(|r| (p, r)));

    Ok(Plan {
        pvc: summary,
        consumers: consumer_names,
        node,
        run_as: source.map(|(_, r)| r),
        run_as_from: source.map(|(p, _)| name_of(p).to_owned()),
    })
}

/// Reads the PVC and the pods of its namespace.
pub async fn fetch(
    client: &Client,
    target: &PvcRef,
    timeout: Duration,
) -> Result<(PersistentVolumeClaim, Vec<Pod>), BackupError> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &target.namespace);
    let pvc = match timed(timeout, pvcs.get(&target.name)).await {
        Ok(pvc) => pvc,
        Err(err) if http_status(&err) == Some(404) => {
            return Err(BackupError::preflight(format!(
                "PVC not found: {target} does not exist; check the namespace and name (`nkvm \
                 inventory -n {}` lists them)",
                target.namespace
            )));
        }
        Err(err) => {
            return Err(BackupError::preflight(format!(
                "could not read PVC {target}: {}",
                kubeapi::advice(
                    &err,
                    Call::new("get", "persistentvolumeclaims", &target.namespace)
                )
            )));
        }
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let list = timed(timeout, pods.list(&ListParams::default()))
        .await
        .map_err(|err| {
            BackupError::preflight(format!(
                "could not list the pods using PVC {target}: {}",
                kubeapi::advice(&err, Call::new("list", "pods", &target.namespace))
            ))
        })?;
    Ok((pvc, list.items))
}

/// The workloads owning the consumers (best effort: a lookup that fails leaves the reference as the
/// owner). Follows ReplicaSet→Deployment and Job→CronJob with one GET per object.
pub async fn resolve_owners(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
    consumers: &[String],
    timeout: Duration,
) -> Vec<Owner> {
    let mut index = OwnerIndex::new();
    let mut seen = BTreeSet::new();
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| consumers.iter().any(|c| c == name_of(p)))
        .collect();
    for pod in &selected {
        let mut next = owners::reference_to_follow(
            pod.metadata.owner_references.as_deref().unwrap_or_default(),
        )
        .cloned();
        for _ in 0..MAX_OWNER_DEPTH {
            let Some(reference) = next.take() else {
                break;
            };
            if !seen.insert((
                reference.api_version.clone(),
                reference.kind.clone(),
                reference.name.clone(),
            )) {
                break;
            }
            let fetched = match (reference.api_version.as_str(), reference.kind.as_str()) {
                ("apps/v1", "ReplicaSet") => {
                    get_meta::<ReplicaSet>(client, namespace, &reference.name, timeout).await
                }
                ("apps/v1", "Deployment") => {
                    get_meta::<Deployment>(client, namespace, &reference.name, timeout).await
                }
                ("batch/v1", "Job") => {
                    get_meta::<Job>(client, namespace, &reference.name, timeout).await
                }
                ("batch/v1", "CronJob") => {
                    get_meta::<CronJob>(client, namespace, &reference.name, timeout).await
                }
                _ => break,
            };
            match fetched {
                Lookup::Found(refs) => {
                    next = owners::reference_to_follow(&refs).cloned();
                    index.insert(
                        namespace,
                        &reference.api_version,
                        &reference.kind,
                        &reference.name,
                        refs,
                    );
                }
                Lookup::Missing => {
                    index.mark_listed(&reference.api_version, &reference.kind);
                }
                Lookup::Failed => break,
            }
        }
    }
    pvc::distinct_sorted(selected.iter().map(|p| {
        index.resolve_pod(
            namespace,
            name_of(p),
            p.metadata.owner_references.as_deref().unwrap_or_default(),
        )
    }))
}

enum Lookup {
    Found(Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>),
    Missing,
    Failed,
}

async fn get_meta<K>(client: &Client, namespace: &str, name: &str, timeout: Duration) -> Lookup
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match timed(timeout, super::lookup::metadata(&api, name)).await {
        Ok(Some(PartialObjectMeta { metadata, .. })) => {
            Lookup::Found(metadata.owner_references.unwrap_or_default())
        }
        Ok(None) => Lookup::Missing,
        Err(err) => {
            tracing::debug!(error = %err, name, "owner lookup failed");
            Lookup::Failed
        }
    }
}

/// Free bytes for an unprivileged user on the filesystem holding `dir`.
pub fn available_space(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Fails when `dir` has less room than `needed` bytes.
pub fn check_free_space(dir: &Path, needed: u64, what: &str) -> Result<(), BackupError> {
    let available = available_space(dir).map_err(|err| {
        BackupError::preflight(format!(
            "could not check the free space at {}: {err}",
            dir.display()
        ))
    })?;
    if available < needed {
        return Err(BackupError::preflight(format!(
            "not enough free space at {}: {} available, but {what} is {}; free some space or use a \
             data directory on a larger filesystem",
            dir.display(),
            format_bytes_exact(available),
            format_bytes_exact(needed)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
