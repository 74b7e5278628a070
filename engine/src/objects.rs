//! Kubernetes objects read into nkvm's vocabulary, the same way for the inventory and for a
//! backup's pre-flight: a PVC's [`PvcSummary`], the claims a pod mounts, its phase, and whether it
//! is one of nkvm's own helper pods (never a consumer).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::backup::pod::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::domain::PvcSummary;
use crate::quantity;

/// The object's name (empty when unset).
#[must_use]
pub fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The object's namespace (empty when unset).
#[must_use]
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

/// Summarises a PVC: capacity from its status, else its request; phase `Unknown` when unset.
#[must_use]
pub fn summarize(pvc: &PersistentVolumeClaim) -> PvcSummary {
    let spec = pvc.spec.as_ref();
    let status = pvc.status.as_ref();
    let capacity = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .or_else(|| {
            spec.and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
        })
        .map(|q| q.0.clone());
    PvcSummary {
        namespace: namespace_of(&pvc.metadata).to_owned(),
        name: name_of(&pvc.metadata).to_owned(),
        uid: pvc.metadata.uid.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".to_owned()),
        capacity_bytes: capacity.as_deref().and_then(quantity::parse_bytes),
        capacity,
        storage_class: spec.and_then(|s| s.storage_class_name.clone()),
        access_modes: spec
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default(),
        volume_name: spec.and_then(|s| s.volume_name.clone()),
    }
}

/// Names of the claims a pod mounts: `persistentVolumeClaim.claimName`, and `<pod>-<volume>` for
/// generic ephemeral volumes (the PVC Kubernetes creates for them). May repeat a name.
pub fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = name_of(&pod.metadata);
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter_map(move |volume| {
            if let Some(claim) = &volume.persistent_volume_claim {
                Some(claim.claim_name.clone())
            } else if volume.ephemeral.is_some() {
                Some(format!("{pod_name}-{}", volume.name))
            } else {
                None
            }
        })
}

/// Whether the pod's spec mounts the claim (directly, or as its generic ephemeral volume).
#[must_use]
pub fn mounts_claim(pod: &Pod, claim: &str) -> bool {
    claims_of(pod).any(|c| c == claim)
}

/// The pod's phase (`Running`, `Pending`, …; empty when unset).
#[must_use]
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the pod has ended (`Succeeded` or `Failed`) and so no longer holds its volumes.
#[must_use]
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// The node the pod was scheduled to.
#[must_use]
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Whether the pod is one of nkvm's backup or restore helpers (label
/// `app.kubernetes.io/managed-by=nkvm`): it uses volumes but is never their consumer.
#[must_use]
pub fn is_nkvm_helper(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        EphemeralVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn pod(name: &str, volumes: Vec<Volume>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("shop".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                node_name: Some("node-1".to_owned()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.to_owned()),
                ..PodStatus::default()
            }),
        }
    }

    fn claim_volume(claim: &str) -> Volume {
        Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        }
    }

    #[test]
    fn claims_include_generic_ephemeral_volumes() {
        let ephemeral = Volume {
            name: "cache".to_owned(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        };
        let p = pod("web-1", vec![claim_volume("data"), ephemeral], "Running");
        assert_eq!(claims_of(&p).collect::<Vec<_>>(), ["data", "web-1-cache"]);
        assert!(mounts_claim(&p, "web-1-cache"));
        assert!(!mounts_claim(&p, "other"));
        assert_eq!(node_of(&p), Some("node-1"));
        assert!(!is_terminated(&p));
        assert!(is_terminated(&pod("done", vec![], "Succeeded")));
    }

    #[test]
    fn helpers_are_recognised_by_their_label() {
        let mut p = pod("nkvm-backup-x", vec![claim_volume("data")], "Running");
        assert!(!is_nkvm_helper(&p));
        p.metadata.labels = Some(BTreeMap::from([(
            LABEL_MANAGED_BY.to_owned(),
            MANAGED_BY.to_owned(),
        )]));
        assert!(is_nkvm_helper(&p));
    }

    #[test]
    fn summary_prefers_status_capacity_over_the_request() {
        let mut pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".to_owned()),
                namespace: Some("shop".to_owned()),
                uid: Some("u-1".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity("1Gi".to_owned()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        };
        let pending = summarize(&pvc);
        assert_eq!(pending.phase, "Unknown");
        assert_eq!(pending.capacity.as_deref(), Some("1Gi"));
        assert_eq!(pending.capacity_bytes, Some(1 << 30));
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".to_owned()),
            capacity: Some(BTreeMap::from([(
                "storage".to_owned(),
                Quantity("2Gi".to_owned()),
            )])),
            ..PersistentVolumeClaimStatus::default()
        });
        let bound = summarize(&pvc);
        assert_eq!(bound.phase, "Bound");
        assert_eq!(bound.capacity.as_deref(), Some("2Gi"));
        assert_eq!(bound.uid, "u-1");
        assert_eq!(bound.namespace, "shop");
    }
}
