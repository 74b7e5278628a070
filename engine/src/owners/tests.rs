//! Tests of `owners`.

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
