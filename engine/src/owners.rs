//! Pure owner-reference resolution: follows a pod's controller chain (ReplicaSet→Deployment,
//! Job→CronJob, …) to the workload that owns it, with the owner objects listed into an index.
//!
//! Semantics (kept from the predecessor, see `shared/notes/product.md`):
//! - A pod's owner reference to follow is its controller reference, else its first reference. A pod
//!   without references owns itself: kind `Pod`, name = the pod's name.
//! - The walk is generic: a reference whose kind was listed into the [`OwnerIndex`] (ReplicaSets, Jobs,
//!   Deployments, CronJobs, …) is looked up, and the object's own controller reference (else first
//!   reference) is followed; an object without references is the owner (an ownerless ReplicaSet or Job
//!   owns its pods). A reference to a kind that was not listed (StatefulSet, DaemonSet, custom
//!   resources, …) ends the walk: that reference is the owner.
//! - A listed kind whose object is absent from the index gives kind `Unknown`, name `<Kind>/<name>` of
//!   the missing object.
//! - At most [`MAX_OWNER_DEPTH`] references are followed from the pod. When the walk would need more
//!   (a very deep chain, or a reference cycle) the owner is kind `Unknown`, name `<Kind>/<name>` of the
//!   pod's own (first followed) reference, which is where an operator starts looking.
//! - Display: see [`crate::domain::pvc::display_owners`].

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub use crate::domain::pvc::Owner;

/// Maximum number of owner references followed from a pod before giving up with `Unknown`.
pub const MAX_OWNER_DEPTH: usize = 5;

/// The reference a walk follows from an object: its controller reference, else its first reference.
pub fn reference_to_follow(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
}

/// API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the empty core group).
fn api_group(api_version: &str) -> &str {
    api_version
        .split_once('/')
        .map_or("", |(group, _version)| group)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct KindKey {
    group: String,
    kind: String,
}

impl KindKey {
    fn new(api_version: &str, kind: &str) -> Self {
        Self {
            group: api_group(api_version).to_owned(),
            kind: kind.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    namespace: String,
    kind: KindKey,
    name: String,
}

/// Controller objects (from list calls) and their owner references, for resolving pods' owners without
/// any further API call.
#[derive(Debug, Clone, Default)]
pub struct OwnerIndex {
    listed: HashSet<KindKey>,
    objects: HashMap<ObjectKey, Vec<OwnerReference>>,
}

impl OwnerIndex {
    /// An empty index that knows no kinds: every reference ends the walk as it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that every object of this kind (in the scanned scope) was listed into the index, so a
    /// reference to an absent object of this kind means the object is missing.
    pub fn mark_listed(&mut self, api_version: &str, kind: &str) {
        self.listed.insert(KindKey::new(api_version, kind));
    }

    /// Adds a listed object with its owner references. Marks its kind as listed.
    pub fn insert(
        &mut self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        owner_references: Vec<OwnerReference>,
    ) {
        let kind = KindKey::new(api_version, kind);
        self.listed.insert(kind.clone());
        self.objects.insert(
            ObjectKey {
                namespace: namespace.to_owned(),
                kind,
                name: name.to_owned(),
            },
            owner_references,
        );
    }

    /// Number of objects in the index.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the index holds no object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Resolves the workload owning a pod (see the module documentation for the exact semantics).
    pub fn resolve_pod(
        &self,
        namespace: &str,
        pod_name: &str,
        pod_owner_references: &[OwnerReference],
    ) -> Owner {
        let Some(first) = reference_to_follow(pod_owner_references) else {
            return Owner::pod(pod_name);
        };
        let mut current = first;
        for _followed in 1..=MAX_OWNER_DEPTH {
            let kind = KindKey::new(&current.api_version, &current.kind);
            if !self.listed.contains(&kind) {
                return Owner::new(current.kind.clone(), current.name.clone());
            }
            let key = ObjectKey {
                namespace: namespace.to_owned(),
                kind,
                name: current.name.clone(),
            };
            let Some(refs) = self.objects.get(&key) else {
                return Owner::unknown(&current.kind, &current.name);
            };
            match reference_to_follow(refs) {
                None => return Owner::new(current.kind.clone(), current.name.clone()),
                Some(next) => current = next,
            }
        }
        Owner::unknown(&first.kind, &first.name)
    }
}

#[cfg(test)]
mod tests;
