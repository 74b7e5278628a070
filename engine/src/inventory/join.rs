//! The pure join of a scan: listed PVCs, pods and controllers into one [`PvcRecord`] per PVC with
//! its consumers (nkvm's helpers excluded), owners and flags; and the backup-history join that
//! fills freshness ([`apply_history`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};

use super::facts::{ClaimFacts, ControllerFacts, PodFacts};
use super::list::Listed;
use crate::domain::pvc::{self, Flag, Owner, PvcRecord};
use crate::owners::OwnerIndex;

/// What a join reads: the facts of one scope's objects, by reference. A controller kind that is
/// `None` was not read (its watch is not synced or is refused): references to it end the owner
/// walk as they are, as for kinds a scan never lists.
pub(crate) struct Sources<'a> {
    pub pvcs: Vec<&'a ClaimFacts>,
    pub pods: Vec<&'a PodFacts>,
    pub replica_sets: Option<Vec<&'a ControllerFacts<ReplicaSet>>>,
    pub jobs: Option<Vec<&'a ControllerFacts<Job>>>,
    pub deployments: Option<Vec<&'a ControllerFacts<Deployment>>>,
    pub cron_jobs: Option<Vec<&'a ControllerFacts<CronJob>>>,
}

impl<'a> Sources<'a> {
    /// Everything a scan listed.
    pub fn of(listed: &'a Listed) -> Self {
        Self {
            pvcs: listed.pvcs.iter().collect(),
            pods: listed.pods.iter().collect(),
            replica_sets: Some(listed.replica_sets.iter().collect()),
            jobs: Some(listed.jobs.iter().collect()),
            deployments: Some(listed.deployments.iter().collect()),
            cron_jobs: Some(listed.cron_jobs.iter().collect()),
        }
    }
}

fn index_objects<K>(index: &mut OwnerIndex, objects: Option<&[&ControllerFacts<K>]>)
where
    K: k8s_openapi::Resource,
{
    let Some(objects) = objects else {
        return;
    };
    index.mark_listed(K::API_VERSION, K::KIND);
    for object in objects {
        index.insert(
            &object.namespace,
            K::API_VERSION,
            K::KIND,
            &object.name,
            object.owner_references.clone(),
        );
    }
}

/// A pod mounting a claim, with its resolved owner.
struct User<'a> {
    pod: &'a PodFacts,
    owner: Option<Owner>,
}

/// Joins listed objects into records sorted by namespace and name.
pub(crate) fn build_records(listed: &Listed) -> Vec<PvcRecord> {
    join(&Sources::of(listed))
}

/// Joins objects into records sorted by namespace and name.
pub(crate) fn join(sources: &Sources<'_>) -> Vec<PvcRecord> {
    let mut index = OwnerIndex::new();
    index_objects(&mut index, sources.replica_sets.as_deref());
    index_objects(&mut index, sources.jobs.as_deref());
    index_objects(&mut index, sources.deployments.as_deref());
    index_objects(&mut index, sources.cron_jobs.as_deref());

    // (namespace, claim) → pods that mount it; nkvm's helpers have no owner and are no consumer.
    let mut users: HashMap<(&str, &str), Vec<User<'_>>> = HashMap::new();
    for pod in sources.pods.iter().copied() {
        if pod.claims.is_empty() {
            continue;
        }
        let owner = (!pod.helper)
            .then(|| index.resolve_pod(&pod.namespace, &pod.name, &pod.owner_references));
        for claim in &pod.claims {
            users
                .entry((pod.namespace.as_str(), claim.as_str()))
                .or_default()
                .push(User {
                    pod,
                    owner: owner.clone(),
                });
        }
    }

    let mut records: Vec<PvcRecord> = sources
        .pvcs
        .iter()
        .map(|claim| {
            let key = (
                claim.summary.namespace.as_str(),
                claim.summary.name.as_str(),
            );
            record(
                claim,
                users.get(&key).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect();
    records.sort_by(|a, b| (&a.pvc.namespace, &a.pvc.name).cmp(&(&b.pvc.namespace, &b.pvc.name)));
    records
}

fn record(claim: &ClaimFacts, users: &[User<'_>]) -> PvcRecord {
    let summary = claim.summary.clone();
    let consumers: Vec<&User<'_>> = users.iter().filter(|u| u.owner.is_some()).collect();
    let consumer_names: Vec<String> = consumers
        .iter()
        .map(|u| u.pod.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let consumer_nodes: Vec<String> = consumers
        .iter()
        .filter(|u| u.pod.phase == "Running")
        .filter_map(|u| u.pod.node.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owners = pvc::distinct_sorted(consumers.iter().filter_map(|u| u.owner.clone()));
    let (owner_kind, owner_name) = pvc::display_owners(&owners);

    let mut flags = Vec::new();
    if summary.phase != "Bound" {
        flags.push(Flag::Unbound);
    }
    if consumers.is_empty() {
        flags.push(Flag::NoConsumer);
    }
    // Any live pod holds a ReadWriteOncePod claim, nkvm's own helpers included.
    if summary.is_read_write_once_pod() && users.iter().any(|u| !u.pod.is_terminated()) {
        flags.push(Flag::RwopInUse);
    }
    PvcRecord {
        pvc: summary,
        owner_kind,
        owner_name,
        owners,
        consumers: consumer_names,
        consumer_nodes,
        last_success_at: None,
        last_verified_at: None,
        flags,
        labels: claim.labels.clone(),
        annotations: claim.annotations.clone(),
    }
}

/// Fills `last_success_at` from backup history (PVC UID → time of the last successful backup) and
/// recomputes the `never-backed-up` / `stale-backup` flags: never backed up when history has no
/// entry for the UID; stale when `stale_after` is set and the last success is older than that at
/// `now`.
pub fn apply_history<S: std::hash::BuildHasher>(
    records: &mut [PvcRecord],
    last_success: &HashMap<String, jiff::Timestamp, S>,
    stale_after: Option<Duration>,
    now: jiff::Timestamp,
) {
    let stale_after =
        stale_after.map(|d| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX));
    for record in records {
        record
            .flags
            .retain(|f| !matches!(f, Flag::NeverBackedUp | Flag::StaleBackup));
        match last_success.get(&record.pvc.uid) {
            None => {
                record.last_success_at = None;
                record.flags.push(Flag::NeverBackedUp);
            }
            Some(at) => {
                record.last_success_at = Some(at.to_string());
                if stale_after.is_some_and(|limit| now.duration_since(*at) > limit) {
                    record.flags.push(Flag::StaleBackup);
                }
            }
        }
    }
}
