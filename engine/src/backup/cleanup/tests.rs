//! Tests of `cleanup`: the partial-file sweep and the recovery of unfinished uploads.

use super::*;

#[test]
fn removes_only_partial_files_and_keeps_active_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("ns/pvc");
    std::fs::create_dir_all(&sub).unwrap();
    for name in [
        "a.tar.gz.partial",
        "b.tar.gz",
        "b.tar.gz.sha256.partial",
        "c.tar.gz.partial",
    ] {
        std::fs::write(sub.join(name), b"x").unwrap();
    }
    let keep = HashSet::from([sub.join("c.tar.gz.partial")]);
    let (removed, warnings) = remove_partials(dir.path(), &keep);
    assert!(warnings.is_empty());
    assert_eq!(
        removed,
        [
            sub.join("a.tar.gz.partial"),
            sub.join("b.tar.gz.sha256.partial")
        ]
    );
    assert!(sub.join("b.tar.gz").exists());
    assert!(sub.join("c.tar.gz.partial").exists());
}

/// A history row of `destination`/`key` with `status`.
async fn run_at(store: &Store, run_id: &str, key: &str, status: RunStatus) {
    let id = store
        .insert_run(&crate::store::NewRun {
            run_id: run_id.to_owned(),
            pvc_uid: "uid".into(),
            namespace: "ns".into(),
            pvc: "pvc".into(),
            started_by: "test".into(),
            started_at: jiff::Timestamp::now(),
            cluster: None,
        })
        .await
        .unwrap();
    let update = crate::store::RunUpdate {
        status: Some(status),
        destination: Some("local".into()),
        object_key: Some(key.into()),
        ..crate::store::RunUpdate::default()
    };
    store.update_run(id, &update).await.unwrap();
}

#[tokio::test]
async fn destination_recovery_removes_only_finished_runs_of_this_instance() {
    let dir = tempfile::tempdir().unwrap();
    let destinations = Destinations::local_only(dir.path());
    let local = destinations.default_destination();
    let store = Store::open_in_memory().await.unwrap();
    let root = dir.path().join("artifacts/ns/pvc");
    std::fs::create_dir_all(&root).unwrap();
    // failed: its archive and sidecar partials go; running (in the database) and active (in
    // this process) stay; an upload no run of this history knows (another instance) stays.
    for name in [
        "failed.tar.gz.partial",
        "failed.tar.gz.sha256.partial",
        "running.tar.gz.partial",
        "active.tar.gz.partial",
        "foreign.tar.gz.partial",
        "done.tar.gz",
    ] {
        std::fs::write(root.join(name), b"x").unwrap();
    }
    run_at(&store, "r1", "ns/pvc/failed.tar.gz", RunStatus::Failed).await;
    run_at(&store, "r2", "ns/pvc/running.tar.gz", RunStatus::Running).await;
    run_at(&store, "r3", "ns/pvc/active.tar.gz", RunStatus::Interrupted).await;
    let active = HashSet::from([("local".to_owned(), "ns/pvc/active.tar.gz".to_owned())]);
    let (aborted, warnings) = recover_destination(&store, local, &active).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut aborted = aborted;
    aborted.sort();
    assert_eq!(
        aborted,
        [
            local.uri("ns/pvc/failed.tar.gz"),
            local.uri("ns/pvc/failed.tar.gz.sha256"),
        ]
    );
    let mut left: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "active.tar.gz.partial",
            "done.tar.gz",
            "foreign.tar.gz.partial",
            "running.tar.gz.partial"
        ]
    );
    // The data directory's sweep keeps what active uploads write.
    let keep = active_partial_paths(&destinations, &active);
    assert!(
        keep.contains(&root.join("active.tar.gz.partial")),
        "{keep:?}"
    );
    assert!(
        keep.contains(&root.join("active.tar.gz.sha256.partial")),
        "{keep:?}"
    );
}

#[test]
fn a_missing_artifacts_dir_is_fine() {
    let (removed, warnings) = remove_partials(Path::new("/nonexistent/nkvm"), &HashSet::new());
    assert!(removed.is_empty() && warnings.is_empty());
}

fn helper_meta(namespace: &str, name: &str, uid: &str, run_id: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(uid.to_owned()),
        labels: Some(std::collections::BTreeMap::from([(
            LABEL_RUN_ID.to_owned(),
            run_id.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

async fn ours(store: &Store, meta: &ObjectMeta) -> bool {
    matches!(
        created_by_nkvm(store, meta, helper_pod_name).await.unwrap(),
        Ownership::Ours { .. }
    )
}

/// Labels prove nothing: only a recorded UID does, or, for runs recorded before UIDs were, the
/// run id of such a run with its namespace and its helper's name.
#[tokio::test]
async fn only_pods_nkvm_created_are_its_helpers() {
    let store = Store::open_in_memory().await.unwrap();
    run_at(&store, "r1", "ns/pvc/a.tar.gz", RunStatus::Running).await;
    store
        .record_helper(&crate::store::HelperPod {
            uid: "uid-1".into(),
            job_id: "r1".into(),
            namespace: "ns".into(),
            name: "nkvm-backup-r1".into(),
        })
        .await
        .unwrap();
    assert!(ours(&store, &helper_meta("ns", "nkvm-backup-r1", "uid-1", "r1")).await);
    // Same labels and name, another pod (another UID): not ours.
    assert!(!ours(&store, &helper_meta("ns", "nkvm-backup-r1", "uid-2", "r1")).await);
    let Ownership::NotOurs(warning) = created_by_nkvm(
        &store,
        &helper_meta("ns", "x", "uid-3", "r9"),
        helper_pod_name,
    )
    .await
    .unwrap() else {
        panic!("a foreign pod counted as nkvm's")
    };
    assert!(warning.contains("left pod ns/x"), "{warning}");

    // Rows from before UIDs were recorded: run id, namespace and helper name must all match.
    run_at(&store, "r2", "ns/pvc/b.tar.gz", RunStatus::Running).await;
    assert!(!ours(&store, &helper_meta("ns", "nkvm-backup-r2", "uid-4", "r2")).await);
    store.mark_all_before_helper_uids().await;
    assert!(ours(&store, &helper_meta("ns", "nkvm-backup-r2", "uid-4", "r2")).await);
    assert!(
        !ours(
            &store,
            &helper_meta("other", "nkvm-backup-r2", "uid-4", "r2")
        )
        .await
    );
    assert!(!ours(&store, &helper_meta("ns", "lookalike", "uid-4", "r2")).await);
    assert!(!ours(&store, &helper_meta("ns", "nkvm-backup-r3", "uid-5", "r3")).await);
}
