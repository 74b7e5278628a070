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
mod tests {
    use super::*;

    const NS: &str = "shop";

    fn api_version_of(kind: &str) -> &'static str {
        match kind {
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            "Node" | "Pod" => "v1",
            _ => "example.com/v1",
        }
    }

    /// A controller owner reference.
    fn ctrl(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version_of(kind).to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-{kind}-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// A non-controller owner reference.
    fn plain(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            controller: None,
            block_owner_deletion: None,
            ..ctrl(kind, name)
        }
    }

    /// An index with the four kinds the inventory lists, in namespace `NS`.
    struct IndexBuilder(OwnerIndex);

    impl IndexBuilder {
        fn new() -> Self {
            let mut index = OwnerIndex::new();
            for kind in ["ReplicaSet", "Deployment", "Job", "CronJob"] {
                index.mark_listed(api_version_of(kind), kind);
            }
            Self(index)
        }
        fn with(mut self, kind: &str, name: &str, refs: Vec<OwnerReference>) -> Self {
            self.0.insert(NS, api_version_of(kind), kind, name, refs);
            self
        }
        fn build(self) -> OwnerIndex {
            self.0
        }
    }

    fn resolve(index: &OwnerIndex, refs: &[OwnerReference]) -> Owner {
        index.resolve_pod(NS, "pod-0", refs)
    }

    fn owner(kind: &str, name: &str) -> Owner {
        Owner::new(kind, name)
    }

    #[test]
    fn bare_pod_owns_itself() {
        let index = IndexBuilder::new().build();
        assert_eq!(resolve(&index, &[]), owner("Pod", "pod-0"));
    }

    #[test]
    fn replicaset_is_followed_to_its_deployment() {
        let index = IndexBuilder::new()
            .with("ReplicaSet", "web-7d9f", vec![ctrl("Deployment", "web")])
            .with("Deployment", "web", vec![])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "web-7d9f")]),
            owner("Deployment", "web")
        );
    }

    #[test]
    fn job_is_followed_to_its_cronjob() {
        let index = IndexBuilder::new()
            .with("Job", "nightly-2900", vec![ctrl("CronJob", "nightly")])
            .with("CronJob", "nightly", vec![])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("Job", "nightly-2900")]),
            owner("CronJob", "nightly")
        );
    }

    #[test]
    fn statefulset_and_daemonset_are_kept_as_they_are() {
        let index = IndexBuilder::new().build();
        assert_eq!(
            resolve(&index, &[ctrl("StatefulSet", "db")]),
            owner("StatefulSet", "db")
        );
        assert_eq!(
            resolve(&index, &[ctrl("DaemonSet", "agent")]),
            owner("DaemonSet", "agent")
        );
    }

    #[test]
    fn unlisted_custom_kind_is_kept_as_it_is() {
        let index = IndexBuilder::new().build();
        assert_eq!(
            resolve(&index, &[ctrl("Workflow", "etl")]),
            owner("Workflow", "etl")
        );
    }

    #[test]
    fn ownerless_replicaset_owns_its_pods() {
        let index = IndexBuilder::new()
            .with("ReplicaSet", "standalone", vec![])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "standalone")]),
            owner("ReplicaSet", "standalone")
        );
    }

    #[test]
    fn ownerless_job_owns_its_pods() {
        let index = IndexBuilder::new().with("Job", "migrate", vec![]).build();
        assert_eq!(
            resolve(&index, &[ctrl("Job", "migrate")]),
            owner("Job", "migrate")
        );
    }

    #[test]
    fn missing_replicaset_gives_unknown_with_kind_and_name() {
        let index = IndexBuilder::new().build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "gone-5c4")]),
            owner("Unknown", "ReplicaSet/gone-5c4")
        );
    }

    #[test]
    fn missing_deployment_behind_existing_replicaset_gives_unknown() {
        let index = IndexBuilder::new()
            .with("ReplicaSet", "web-7d9f", vec![ctrl("Deployment", "web")])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "web-7d9f")]),
            owner("Unknown", "Deployment/web")
        );
    }

    #[test]
    fn missing_job_and_missing_cronjob_give_unknown() {
        let index = IndexBuilder::new()
            .with("Job", "nightly-1", vec![ctrl("CronJob", "nightly")])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("Job", "gone")]),
            owner("Unknown", "Job/gone")
        );
        assert_eq!(
            resolve(&index, &[ctrl("Job", "nightly-1")]),
            owner("Unknown", "CronJob/nightly")
        );
    }

    #[test]
    fn orphaned_replicaset_after_orphan_delete_owns_its_pods() {
        // `kubectl delete deployment --cascade=orphan` removes the ReplicaSet's owner reference.
        let index = IndexBuilder::new()
            .with("ReplicaSet", "legacy-6b8", vec![])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "legacy-6b8")]),
            owner("ReplicaSet", "legacy-6b8")
        );
    }

    #[test]
    fn controller_reference_wins_over_first_reference() {
        let index = IndexBuilder::new()
            .with("ReplicaSet", "web-1", vec![ctrl("Deployment", "web")])
            .with("Deployment", "web", vec![])
            .build();
        let refs = [plain("Workflow", "etl"), ctrl("ReplicaSet", "web-1")];
        assert_eq!(resolve(&index, &refs), owner("Deployment", "web"));
    }

    #[test]
    fn first_reference_is_used_without_controller() {
        let index = IndexBuilder::new().build();
        let refs = [plain("Workflow", "etl"), plain("StatefulSet", "db")];
        assert_eq!(resolve(&index, &refs), owner("Workflow", "etl"));
    }

    #[test]
    fn controller_reference_is_also_preferred_on_intermediate_objects() {
        let index = IndexBuilder::new()
            .with(
                "ReplicaSet",
                "web-1",
                vec![plain("Workflow", "etl"), ctrl("Deployment", "web")],
            )
            .with("Deployment", "web", vec![])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "web-1")]),
            owner("Deployment", "web")
        );
    }

    #[test]
    fn listed_object_owned_by_unlisted_kind_resolves_to_that_kind() {
        // An operator's custom resource owns a Deployment: the walk goes through the Deployment.
        let index = IndexBuilder::new()
            .with("ReplicaSet", "pg-1", vec![ctrl("Deployment", "pg")])
            .with("Deployment", "pg", vec![ctrl("PostgresCluster", "main")])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "pg-1")]),
            owner("PostgresCluster", "main")
        );
    }

    #[test]
    fn same_kind_name_in_other_group_is_not_looked_up() {
        // `example.com/v1 Job` is not the batch Job that was listed.
        let index = IndexBuilder::new().build();
        let mut foreign = ctrl("Job", "etl");
        foreign.api_version = "example.com/v1".to_owned();
        assert_eq!(resolve(&index, &[foreign]), owner("Job", "etl"));
    }

    #[test]
    fn objects_in_other_namespaces_are_not_used() {
        let mut index = IndexBuilder::new().build();
        index.insert("other", "apps/v1", "ReplicaSet", "web-1", vec![]);
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "web-1")]),
            owner("Unknown", "ReplicaSet/web-1")
        );
    }

    /// A chain of `len` listed custom objects `c1 → c2 → … → c<len>`, the last one ownerless.
    fn chain(len: usize) -> OwnerIndex {
        let mut index = OwnerIndex::new();
        for i in 1..=len {
            let refs = if i < len {
                vec![ctrl("Chain", &format!("c{}", i + 1))]
            } else {
                vec![]
            };
            index.insert(NS, "example.com/v1", "Chain", &format!("c{i}"), refs);
        }
        index
    }

    #[test]
    fn chain_of_max_depth_resolves() {
        let index = chain(MAX_OWNER_DEPTH);
        assert_eq!(
            resolve(&index, &[ctrl("Chain", "c1")]),
            owner("Chain", "c5")
        );
    }

    #[test]
    fn chain_deeper_than_max_depth_gives_unknown_named_after_first_reference() {
        let index = chain(MAX_OWNER_DEPTH + 1);
        assert_eq!(
            resolve(&index, &[ctrl("Chain", "c1")]),
            owner("Unknown", "Chain/c1")
        );
    }

    #[test]
    fn chain_ending_in_unlisted_kind_after_five_listed_objects_is_too_deep() {
        // c1..c5 are listed and c5 points at an unlisted kind: following it would be a 6th reference.
        let mut index = chain(MAX_OWNER_DEPTH);
        index.insert(NS, "example.com/v1", "Chain", "c5", vec![ctrl("Top", "t")]);
        assert_eq!(
            resolve(&index, &[ctrl("Chain", "c1")]),
            owner("Unknown", "Chain/c1")
        );
    }

    #[test]
    fn reference_cycle_gives_unknown() {
        let index = IndexBuilder::new()
            .with("ReplicaSet", "a", vec![ctrl("Deployment", "b")])
            .with("Deployment", "b", vec![ctrl("ReplicaSet", "a")])
            .build();
        assert_eq!(
            resolve(&index, &[ctrl("ReplicaSet", "a")]),
            owner("Unknown", "ReplicaSet/a")
        );
    }
}
