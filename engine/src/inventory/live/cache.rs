//! The objects a live inventory holds, one map per kind and trimmed to what the join reads, with
//! watch events applied to them (a re-list replaces a kind's objects at once when it completes).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    EphemeralVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod, PodSpec,
    PodStatus, Volume,
};
use kube::Resource;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::Event;

use crate::backup::pod::LABEL_MANAGED_BY;
use crate::schedule::declared::ANNOTATION_PREFIX;

/// Namespace and name: an object's identity within one kind.
type Key = (String, String);

fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The objects of one kind in one scope, as the watch last reported them.
#[derive(Debug)]
pub(crate) struct KindCache<K> {
    objects: HashMap<Key, K>,
    /// Objects of a re-list in progress; they replace `objects` when it completes.
    relist: Option<HashMap<Key, K>>,
    synced: bool,
}

impl<K> Default for KindCache<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<K: Resource> KindCache<K> {
    /// Applies one watch event; returns whether what the join reads changed.
    pub fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Apply(object) => {
                self.objects.insert(key_of(&object), object);
                true
            }
            Event::Delete(object) => self.objects.remove(&key_of(&object)).is_some(),
            Event::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            Event::InitApply(object) => {
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key_of(&object), object);
                false
            }
            Event::InitDone => {
                if let Some(objects) = self.relist.take() {
                    self.objects = objects;
                }
                self.synced = true;
                true
            }
        }
    }

    /// Whether a complete list has been read at least once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The objects, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// Keeps of a pod what the join reads: name, namespace, owner references, nkvm's managed-by
/// label, the claims it mounts, its node and phase. A pod of a large cluster shrinks from a few KB
/// to a few hundred bytes.
pub(crate) fn trim_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|key, _| key == LABEL_MANAGED_BY);
    }
    if let Some(spec) = &mut pod.spec {
        let volumes = spec.volumes.take().map(|volumes| {
            volumes
                .into_iter()
                .filter(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
                .map(|v| Volume {
                    name: v.name,
                    persistent_volume_claim: v.persistent_volume_claim,
                    ephemeral: v.ephemeral.map(|_| EphemeralVolumeSource::default()),
                    ..Volume::default()
                })
                .collect()
        });
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            volumes,
            ..PodSpec::default()
        };
    }
    if let Some(status) = &mut pod.status {
        *status = PodStatus {
            phase: status.phase.take(),
            ..PodStatus::default()
        };
    }
}

/// Keeps of a claim what the inventory shows: drops managed fields, finalizers and annotations
/// other than nkvm's schedule declarations, and of its status all but phase and capacity.
pub(crate) fn trim_pvc(pvc: &mut PersistentVolumeClaim) {
    let meta = &mut pvc.metadata;
    meta.managed_fields = None;
    meta.finalizers = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|key, _| key.starts_with(ANNOTATION_PREFIX));
    }
    if let Some(status) = &mut pvc.status {
        *status = PersistentVolumeClaimStatus {
            phase: status.phase.take(),
            capacity: status.capacity.take(),
            ..PersistentVolumeClaimStatus::default()
        };
    }
}

/// Keeps of a controller's metadata what the owner walk reads: name, namespace and owner references.
pub(crate) fn trim_meta<K>(object: &mut PartialObjectMeta<K>) {
    let meta = &mut object.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.finalizers = None;
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
