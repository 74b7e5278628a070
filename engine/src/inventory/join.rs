//! The pure join of a scan: listed PVCs, pods and controllers into one [`PvcRecord`] per PVC with
//! its consumers (nkvm's helpers excluded), owners and flags; and the backup-history join that
//! fills freshness ([`apply_history`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PartialObjectMeta;

use super::list::Listed;
use crate::domain::pvc::{self, Flag, Owner, PvcRecord};
use crate::objects::{self, name_of, namespace_of};
use crate::owners::OwnerIndex;

fn index_objects<K>(index: &mut OwnerIndex, objects: &[PartialObjectMeta<K>])
where
    K: k8s_openapi::Resource,
{
    index.mark_listed(K::API_VERSION, K::KIND);
    for object in objects {
        index.insert(
            namespace_of(&object.metadata),
            K::API_VERSION,
            K::KIND,
            name_of(&object.metadata),
            object.metadata.owner_references.clone().unwrap_or_default(),
        );
    }
}

/// A pod mounting a claim, with its resolved owner.
struct User<'a> {
    pod: &'a Pod,
    owner: Option<Owner>,
}

/// Joins listed objects into records sorted by namespace and name.
pub(crate) fn build_records(listed: &Listed) -> Vec<PvcRecord> {
    let mut index = OwnerIndex::new();
    index_objects(&mut index, &listed.replica_sets);
    index_objects(&mut index, &listed.jobs);
    index_objects(&mut index, &listed.deployments);
    index_objects(&mut index, &listed.cron_jobs);

    // (namespace, claim) → pods that mount it; nkvm's helpers have no owner and are no consumer.
    let mut users: HashMap<(&str, String), Vec<User<'_>>> = HashMap::new();
    for pod in &listed.pods {
        let namespace = namespace_of(&pod.metadata);
        let claims: BTreeSet<String> = objects::claims_of(pod).collect();
        if claims.is_empty() {
            continue;
        }
        let owner = (!objects::is_nkvm_helper(pod)).then(|| {
            index.resolve_pod(
                namespace,
                name_of(&pod.metadata),
                pod.metadata.owner_references.as_deref().unwrap_or_default(),
            )
        });
        for claim in claims {
            users.entry((namespace, claim)).or_default().push(User {
                pod,
                owner: owner.clone(),
            });
        }
    }

    let mut records: Vec<PvcRecord> = listed
        .pvcs
        .iter()
        .map(|pvc| {
            let key = (
                namespace_of(&pvc.metadata),
                name_of(&pvc.metadata).to_owned(),
            );
            record(pvc, users.get(&key).map(Vec::as_slice).unwrap_or_default())
        })
        .collect();
    records.sort_by(|a, b| (&a.pvc.namespace, &a.pvc.name).cmp(&(&b.pvc.namespace, &b.pvc.name)));
    records
}

fn record(pvc: &PersistentVolumeClaim, users: &[User<'_>]) -> PvcRecord {
    let summary = objects::summarize(pvc);
    let consumers: Vec<&User<'_>> = users.iter().filter(|u| u.owner.is_some()).collect();
    let consumer_names: Vec<String> = consumers
        .iter()
        .map(|u| name_of(&u.pod.metadata).to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let consumer_nodes: Vec<String> = consumers
        .iter()
        .filter(|u| objects::pod_phase(u.pod) == "Running")
        .filter_map(|u| objects::node_of(u.pod).map(str::to_owned))
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
    if summary.is_read_write_once_pod() && users.iter().any(|u| !objects::is_terminated(u.pod)) {
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
        labels: pvc.metadata.labels.clone().unwrap_or_default(),
        annotations: pvc
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(key, _)| key.starts_with(crate::schedule::declared::ANNOTATION_PREFIX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
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
