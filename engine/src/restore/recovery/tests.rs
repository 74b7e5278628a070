//! Tests of `recovery`: which listed incomplete restore PVCs are nkvm's to delete.

use std::collections::BTreeMap;

use super::*;
use crate::domain::{RestoreMode, RunStatus};
use crate::store::{NewRestore, RestoreUpdate};

/// A restore row `id` (`mode`) into `shop/restored` that recorded creating the PVC `pvc_uid`,
/// ended with `status` (`None`: still running).
async fn restore(
    store: &Store,
    id: &str,
    mode: RestoreMode,
    pvc_uid: &str,
    status: Option<RunStatus>,
) {
    let row = store
        .insert_restore(&NewRestore {
            restore_id: id.to_owned(),
            run_id: "run-1".to_owned(),
            mode,
            wipe: false,
            source_namespace: "shop".to_owned(),
            source_pvc: "data".to_owned(),
            target_namespace: "shop".to_owned(),
            target_pvc: "restored".to_owned(),
            started_by: "test".to_owned(),
            started_at: jiff::Timestamp::now(),
            cluster: None,
        })
        .await
        .unwrap();
    store.record_restore_pvc(id, pvc_uid).await.unwrap();
    if status.is_some() {
        let update = RestoreUpdate {
            status,
            ..RestoreUpdate::default()
        };
        store.update_restore(row, &update).await.unwrap();
    }
}

/// What the API lists: a PVC carrying nkvm's incomplete-restore labels (any labels do: the
/// selector already matched).
fn listed(namespace: &str, name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(uid.to_owned()),
        labels: Some(BTreeMap::from([(
            super::super::pod::LABEL_RESTORE_ID.to_owned(),
            "r-running".to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

fn ours(uid: &str, restore_id: &str) -> PvcOwnership {
    PvcOwnership::Ours {
        namespace: "shop".to_owned(),
        name: "restored".to_owned(),
        uid: uid.to_owned(),
        restore_id: restore_id.to_owned(),
    }
}

#[tokio::test]
async fn only_incomplete_pvcs_nkvm_recorded_creating_are_its_own() {
    let store = Store::open_in_memory().await.unwrap();
    restore(&store, "r-running", RestoreMode::NewPvc, "u-run", None).await;
    restore(
        &store,
        "r-done",
        RestoreMode::NewPvc,
        "u-done",
        Some(RunStatus::Succeeded),
    )
    .await;
    restore(
        &store,
        "r-drill",
        RestoreMode::Drill,
        "u-drill",
        Some(RunStatus::Succeeded),
    )
    .await;
    restore(
        &store,
        "r-failed",
        RestoreMode::NewPvc,
        "u-failed",
        Some(RunStatus::Failed),
    )
    .await;

    // nkvm's own: the running (soon interrupted) restore's PVC, a drill's and a failed
    // restore's leftover.
    for (uid, id) in [
        ("u-run", "r-running"),
        ("u-drill", "r-drill"),
        ("u-failed", "r-failed"),
    ] {
        let found = incomplete_pvc_of_nkvm(&store, &listed("shop", "restored", uid))
            .await
            .unwrap();
        assert_eq!(found, ours(uid, id));
    }

    // Look-alikes: the labels (restore id included) and even the name, but another UID; a
    // recorded UID under another name or namespace; no UID at all.
    let mut nameless = listed("shop", "restored", "u-run");
    nameless.uid = None;
    for meta in [
        listed("shop", "restored", "u-other"),
        listed("shop", "precious", "u-other"),
        listed("shop", "precious", "u-run"),
        listed("other", "restored", "u-run"),
        nameless,
    ] {
        let found = incomplete_pvc_of_nkvm(&store, &meta).await.unwrap();
        assert!(
            matches!(found, PvcOwnership::NotOurs(_)),
            "{meta:?}: {found:?}"
        );
    }

    // A PVC a new-PVC restore completed, labelled incomplete again by someone: kept.
    let found = incomplete_pvc_of_nkvm(&store, &listed("shop", "restored", "u-done"))
        .await
        .unwrap();
    let PvcOwnership::NotOurs(warning) = found else {
        panic!("{found:?}");
    };
    assert!(
        warning.contains("left PVC shop/restored") && warning.contains("r-done"),
        "{warning}"
    );
}

#[tokio::test]
async fn recording_a_pvc_needs_the_restore_row() {
    let store = Store::open_in_memory().await.unwrap();
    let err = store.record_restore_pvc("nope", "u-1").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchRestore { .. }), "{err}");
    assert_eq!(store.restore_pvc("u-1").await.unwrap(), None);
}
