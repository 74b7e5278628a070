//! What the inventory's join reads of each listed or watched object, kept instead of the
//! Kubernetes objects themselves: a claim's summary, labels and schedule annotations; a pod's
//! claims, owners, node and phase; a controller's owner references. A pod of a large cluster
//! shrinks from kilobytes (the API types reserve room for every field) to a few hundred bytes, so a
//! scan or a live inventory of 20,000 pods holds megabytes, not hundreds of them.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::PartialObjectMeta;

use crate::domain::pvc::PvcSummary;
use crate::objects;
use crate::schedule::declared::ANNOTATION_PREFIX;

/// Namespace and name: an object's identity within one kind.
pub(crate) type Key = (String, String);

/// Facts that know the object they were taken from.
pub(crate) trait Keyed {
    fn key(&self) -> Key;
}

/// A claim as the inventory shows it.
#[derive(Debug, Clone)]
pub(crate) struct ClaimFacts {
    pub summary: PvcSummary,
    pub labels: BTreeMap<String, String>,
    /// Only nkvm's own (`nkvm.io/…`: schedules declared on the claim).
    pub annotations: BTreeMap<String, String>,
}

impl From<PersistentVolumeClaim> for ClaimFacts {
    fn from(pvc: PersistentVolumeClaim) -> Self {
        let summary = objects::summarize(&pvc);
        let ObjectMeta {
            labels,
            annotations,
            ..
        } = pvc.metadata;
        Self {
            summary,
            labels: labels.unwrap_or_default(),
            annotations: annotations
                .unwrap_or_default()
                .into_iter()
                .filter(|(key, _)| key.starts_with(ANNOTATION_PREFIX))
                .collect(),
        }
    }
}

impl Keyed for ClaimFacts {
    fn key(&self) -> Key {
        (self.summary.namespace.clone(), self.summary.name.clone())
    }
}

/// A pod as the consumer and owner joins read it.
#[derive(Debug, Clone)]
pub(crate) struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub owner_references: Vec<OwnerReference>,
    /// One of nkvm's own helpers (never a consumer).
    pub helper: bool,
    /// The claims its spec mounts (generic ephemeral volumes by their claim's name), sorted.
    pub claims: Vec<String>,
    pub node: Option<String>,
    /// `Running`, `Pending`, …; empty when unset.
    pub phase: String,
}

impl PodFacts {
    /// Whether the pod has ended (`Succeeded` or `Failed`) and so no longer holds its volumes.
    pub fn is_terminated(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }
}

impl From<Pod> for PodFacts {
    fn from(pod: Pod) -> Self {
        let claims: BTreeSet<String> = objects::claims_of(&pod).collect();
        let helper = objects::is_nkvm_helper(&pod);
        let phase = objects::pod_phase(&pod).to_owned();
        let node = pod.spec.and_then(|spec| spec.node_name);
        let ObjectMeta {
            namespace,
            name,
            owner_references,
            ..
        } = pod.metadata;
        Self {
            namespace: namespace.unwrap_or_default(),
            name: name.unwrap_or_default(),
            owner_references: owner_references.unwrap_or_default(),
            helper,
            claims: claims.into_iter().collect(),
            node,
            phase,
        }
    }
}

impl Keyed for PodFacts {
    fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }
}

/// A controller of kind `K` (ReplicaSet, Job, …) as the owner walk reads it.
#[derive(Debug)]
pub(crate) struct ControllerFacts<K> {
    pub namespace: String,
    pub name: String,
    pub owner_references: Vec<OwnerReference>,
    kind: PhantomData<fn() -> K>,
}

// By hand: a derived `Clone` would require `K: Clone` for the marker alone.
impl<K> Clone for ControllerFacts<K> {
    fn clone(&self) -> Self {
        Self {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            owner_references: self.owner_references.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> From<PartialObjectMeta<K>> for ControllerFacts<K> {
    fn from(object: PartialObjectMeta<K>) -> Self {
        let ObjectMeta {
            namespace,
            name,
            owner_references,
            ..
        } = object.metadata;
        Self {
            namespace: namespace.unwrap_or_default(),
            name: name.unwrap_or_default(),
            owner_references: owner_references.unwrap_or_default(),
            kind: PhantomData,
        }
    }
}

impl<K> Keyed for ControllerFacts<K> {
    fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }
}
