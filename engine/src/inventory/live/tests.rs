//! The live inventory's hub without a cluster: when a snapshot is ready, how failures before and
//! after a kind's first list are reported, and how bursts of changes are published.

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, Pod,
    PodSpec, PodStatus, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(format!("uid-{name}")),
        ..ObjectMeta::default()
    }
}

fn claim(namespace: &str, name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(namespace, name),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".to_owned()),
            ..PersistentVolumeClaimStatus::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn consumer(namespace: &str, name: &str, claim: &str, replica_set: &str) -> Pod {
    let mut metadata = meta(namespace, name);
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "ReplicaSet".to_owned(),
        name: replica_set.to_owned(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    Pod {
        metadata,
        spec: Some(PodSpec {
            volumes: Some(vec![Volume {
                name: "data".to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_owned(),
                    read_only: None,
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            ..PodStatus::default()
        }),
    }
}

fn replica_set(namespace: &str, name: &str, deployment: &str) -> PartialObjectMeta<ReplicaSet> {
    let mut metadata = meta(namespace, name);
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "Deployment".to_owned(),
        name: deployment.to_owned(),
        controller: Some(true),
        ..OwnerReference::default()
    }]);
    PartialObjectMeta {
        types: None,
        metadata,
        _phantom: std::marker::PhantomData,
    }
}

fn listed<K>(objects: Vec<K>, wrap: fn(Event<K>) -> Change) -> Vec<Change> {
    let mut changes = vec![wrap(Event::Init)];
    changes.extend(objects.into_iter().map(|o| wrap(Event::InitApply(o))));
    changes.push(wrap(Event::InitDone));
    changes
}

fn failed(listing: Listing, status: Option<u16>) -> Change {
    Change::Failed {
        listing,
        status,
        message: format!("HTTP {status:?}"),
    }
}

/// Every kind of `target` listed, with one claim used by a pod of a ReplicaSet of Deployment `web`.
fn list_everything(hub: &mut Hub, target: usize, namespace: &str, skip: &[Listing]) {
    let mut changes = Vec::new();
    if !skip.contains(&Listing::Pvcs) {
        changes.extend(listed(vec![claim(namespace, "data")], Change::pvc));
    }
    if !skip.contains(&Listing::Pods) {
        changes.extend(listed(
            vec![consumer(namespace, "web-1", "data", "web-5d")],
            Change::pod,
        ));
    }
    if !skip.contains(&Listing::ReplicaSets) {
        changes.extend(listed(
            vec![replica_set(namespace, "web-5d", "web")],
            Change::replica_set,
        ));
    }
    if !skip.contains(&Listing::Jobs) {
        changes.extend(listed(Vec::new(), Change::job));
    }
    if !skip.contains(&Listing::Deployments) {
        let web = PartialObjectMeta {
            types: None,
            metadata: meta(namespace, "web"),
            _phantom: std::marker::PhantomData,
        };
        changes.extend(listed(vec![web], Change::deployment));
    }
    if !skip.contains(&Listing::CronJobs) {
        changes.extend(listed(Vec::new(), Change::cron_job));
    }
    apply(hub, target, changes);
}

fn apply(hub: &mut Hub, target: usize, changes: Vec<Change>) {
    let namespace = hub.namespaces[target].clone();
    for change in changes {
        hub.targets[target].apply(change, namespace.as_deref());
    }
}

#[test]
fn a_snapshot_is_ready_once_every_kind_was_listed_and_joins_owners() {
    let mut hub = Hub::new(vec![None]);
    assert!(!hub.snapshot().ready, "nothing listed yet");
    list_everything(&mut hub, 0, "shop", &[Listing::CronJobs]);
    assert!(!hub.snapshot().ready, "cron jobs not listed yet");
    apply(&mut hub, 0, listed(Vec::new(), Change::cron_job));
    let snapshot = hub.snapshot();
    assert!(snapshot.ready);
    assert!(snapshot.failure.is_none() && snapshot.stale.is_empty());
    assert_eq!(snapshot.pvcs.len(), 1);
    let record = &snapshot.pvcs[0];
    assert_eq!(
        (record.owner_kind.as_str(), record.owner_name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(record.consumers, ["web-1"]);
}

#[test]
fn pvcs_or_pods_that_cannot_be_listed_are_the_snapshots_failure() {
    let mut hub = Hub::new(vec![None]);
    list_everything(&mut hub, 0, "shop", &[Listing::Pods]);
    apply(&mut hub, 0, vec![failed(Listing::Pods, Some(403))]);
    let snapshot = hub.snapshot();
    let failure = snapshot
        .failure
        .expect("pods failed before their first list");
    assert_eq!(
        (failure.listing, failure.status),
        (Listing::Pods, Some(403))
    );
    assert_eq!(failure.namespace, None);
}

#[test]
fn a_forbidden_namespace_is_refused_and_the_others_are_shown() {
    let mut hub = Hub::new(vec![Some("shop".to_owned()), Some("ops".to_owned())]);
    list_everything(&mut hub, 0, "shop", &[]);
    list_everything(&mut hub, 1, "ops", &[Listing::Jobs]);
    apply(&mut hub, 1, vec![failed(Listing::Jobs, Some(403))]);
    let snapshot = hub.snapshot();
    assert!(snapshot.ready);
    assert!(snapshot.failure.is_none());
    assert_eq!(snapshot.refused.len(), 1);
    let refusal = &snapshot.refused[0];
    assert_eq!(
        (refusal.namespace.as_str(), refusal.status),
        ("ops", Some(403))
    );
    assert!(
        refusal
            .message
            .contains("grant list and watch on jobs.batch in namespace ops"),
        "{}",
        refusal.message
    );
    let namespaces: Vec<&str> = snapshot
        .pvcs
        .iter()
        .map(|r| r.pvc.namespace.as_str())
        .collect();
    assert_eq!(namespaces, ["shop"]);
}

#[test]
fn a_forbidden_controller_kind_ends_the_owner_walk_and_is_reported_stale() {
    let mut hub = Hub::new(vec![None]);
    list_everything(&mut hub, 0, "shop", &[Listing::ReplicaSets]);
    apply(&mut hub, 0, vec![failed(Listing::ReplicaSets, Some(403))]);
    let snapshot = hub.snapshot();
    assert!(snapshot.ready && snapshot.failure.is_none());
    assert_eq!(snapshot.stale.len(), 1);
    assert_eq!(snapshot.stale[0].listing, Listing::ReplicaSets);
    let record = &snapshot.pvcs[0];
    assert_eq!(
        (record.owner_kind.as_str(), record.owner_name.as_str()),
        ("ReplicaSet", "web-5d")
    );
}

#[test]
fn a_watch_failing_after_its_list_keeps_the_data_until_the_next_list_completes() {
    let mut hub = Hub::new(vec![None]);
    list_everything(&mut hub, 0, "shop", &[]);
    assert!(hub.targets[0].apply(failed(Listing::Pvcs, None), None));
    let snapshot = hub.snapshot();
    assert!(snapshot.ready && snapshot.failure.is_none());
    assert_eq!(snapshot.pvcs.len(), 1, "the last state is kept");
    let stale = &snapshot.stale[0];
    assert_eq!(stale.listing, Listing::Pvcs);
    assert!(
        stale.since.parse::<jiff::Timestamp>().is_ok(),
        "{}",
        stale.since
    );
    // Failing again (each restart) keeps the time it first failed, with the latest message.
    std::thread::sleep(Duration::from_millis(5));
    apply(&mut hub, 0, vec![failed(Listing::Pvcs, Some(503))]);
    let again = hub.snapshot().stale[0].clone();
    assert_eq!(again.since, stale.since);
    assert_eq!(again.status, Some(503));
    // The next list starts: still stale until it completes, then current.
    apply(&mut hub, 0, vec![Change::pvc(Event::Init)]);
    assert_eq!(hub.snapshot().stale.len(), 1);
    apply(&mut hub, 0, vec![Change::pvc(Event::InitDone)]);
    let snapshot = hub.snapshot();
    assert!(snapshot.stale.is_empty());
    assert!(
        snapshot.pvcs.is_empty(),
        "the claim was deleted while the watch was down"
    );
}

#[tokio::test(start_paused = true)]
async fn bursts_of_changes_are_published_once_with_a_new_revision() {
    let (updates, inbox) = mpsc::channel(16);
    let (publish, mut snapshots) = watch::channel(Arc::new(LiveSnapshot::default()));
    tokio::spawn(Hub::new(vec![None]).run(inbox, publish));
    let mut changes = listed(vec![claim("shop", "a"), claim("shop", "b")], Change::pvc);
    changes.extend(listed(Vec::new(), Change::pod));
    changes.extend(listed(Vec::new(), Change::replica_set));
    changes.extend(listed(Vec::new(), Change::job));
    changes.extend(listed(Vec::new(), Change::deployment));
    changes.extend(listed(Vec::new(), Change::cron_job));
    for change in changes {
        updates.send(Update { target: 0, change }).await.unwrap();
    }
    snapshots.changed().await.unwrap();
    let first = snapshots.borrow_and_update().clone();
    assert_eq!(first.revision, 1, "one publication for the whole burst");
    assert!(first.ready);
    assert_eq!(first.pvcs.len(), 2);
    // A change that the join does not see (a delete of something unknown) publishes nothing.
    let unknown = claim("shop", "never-listed");
    updates
        .send(Update {
            target: 0,
            change: Change::pvc(Event::Delete(unknown)),
        })
        .await
        .unwrap();
    tokio::time::sleep(MAX_DELAY * 2).await;
    assert!(!snapshots.has_changed().unwrap());
    updates
        .send(Update {
            target: 0,
            change: Change::pvc(Event::Delete(claim("shop", "a"))),
        })
        .await
        .unwrap();
    snapshots.changed().await.unwrap();
    let second = snapshots.borrow_and_update().clone();
    assert_eq!(second.revision, 2);
    assert_eq!(second.pvcs.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_steady_stream_of_changes_is_still_published_within_the_maximum_delay() {
    let (updates, inbox) = mpsc::channel(16);
    let (publish, snapshots) = watch::channel(Arc::new(LiveSnapshot::default()));
    tokio::spawn(Hub::new(vec![None]).run(inbox, publish));
    updates
        .send(Update {
            target: 0,
            change: Change::pvc(Event::InitDone),
        })
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    // A change every 100 ms never leaves a quiet gap of 150 ms.
    let mut published_at = None;
    for i in 0..20 {
        let change = Change::pvc(Event::Apply(claim("shop", &format!("c{i}"))));
        updates.send(Update { target: 0, change }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if published_at.is_none() && snapshots.borrow().revision > 0 {
            published_at = Some(start.elapsed());
        }
    }
    let published_at = published_at.expect("published during the stream");
    assert!(
        published_at <= MAX_DELAY + Duration::from_millis(100),
        "{published_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ready_reports_the_failure_or_gives_up_after_the_timeout() {
    let (publish, snapshot) = watch::channel(Arc::new(LiveSnapshot::default()));
    let live = LiveInventory {
        reader: LiveReader {
            snapshot,
            ready_timeout: Duration::from_secs(5),
        },
        tasks: Vec::new(),
    };
    let err = live.ready().await.unwrap_err();
    assert!(matches!(err, InventoryError::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("after 5s"), "{err}");

    let mut hub = Hub::new(vec![None]);
    apply(&mut hub, 0, vec![failed(Listing::Pvcs, Some(401))]);
    publish.send_replace(Arc::new(hub.snapshot()));
    let err = live.ready().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(
        err.to_string()
            .starts_with("failed to watch persistentvolumeclaims in all namespaces"),
        "{err}"
    );

    list_everything(&mut hub, 0, "shop", &[]);
    publish.send_replace(Arc::new(hub.snapshot()));
    let ready = live.ready().await.unwrap();
    assert_eq!(ready.inventory().pvcs.len(), 1);
    assert_eq!(ready.inventory().api_requests, 0);
}

#[test]
fn watch_errors_are_worded_for_the_operator() {
    let status = kube::core::Status::failure("watch is forbidden", "Forbidden").with_code(403);
    let (code, message) = describe(
        &watcher::Error::WatchError(Box::new(status)),
        Listing::Pods,
        Some("shop"),
    );
    assert_eq!(code, Some(403));
    assert!(message.contains("watch is forbidden"), "{message}");
    assert!(
        message.contains("grant watch on pods in namespace shop"),
        "{message}"
    );
    let (code, message) = describe(&watcher::Error::NoResourceVersion, Listing::Pvcs, None);
    assert_eq!(code, None);
    assert!(message.contains("resourceVersion"), "{message}");
}
