//! Start-up recovery of restores on the real test cluster: the incomplete PVC an interrupted
//! restore created is deleted, while PVCs that only carry nkvm's incomplete-restore labels (anyone
//! who may label PVCs can add them), or that a restore completed, are left with a warning.
//!
//! Needs `NKVM_TEST_KUBECONFIG` and the `nkvm-local` storage class. Run with `--include-ignored`.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use nkvm_engine::domain::{RestoreMode, RunStatus};
use nkvm_engine::restore::pod::{self as restore_pod, NewPvcParams};
use nkvm_engine::store::{NewRestore, RestoreUpdate, Store};
use serde_json::json;
use support::cluster::*;
use support::restores::*;
use support::wait_for;

/// A restore row `id` into `ns/target`, as the restore recorded it at its start.
fn new_restore(id: &str, ns: &str, target: &str) -> NewRestore {
    NewRestore {
        restore_id: id.to_owned(),
        run_id: "20260101t000000-000000".to_owned(),
        mode: RestoreMode::NewPvc,
        wipe: false,
        source_namespace: ns.to_owned(),
        source_pvc: "vol".to_owned(),
        target_namespace: ns.to_owned(),
        target_pvc: target.to_owned(),
        started_by: "killed".to_owned(),
        started_at: jiff::Timestamp::now(),
        cluster: None,
    }
}

/// Creates the PVC `name` as restore `restore_id` of `instance` does (labelled incomplete);
/// returns its UID.
async fn incomplete_pvc(
    api: &Api<PersistentVolumeClaim>,
    ns: &str,
    name: &str,
    restore_id: &str,
    instance: &str,
) -> String {
    let pvc = restore_pod::new_pvc(&NewPvcParams {
        restore_id: restore_id.to_owned(),
        run_id: "20260101t000000-000000".to_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        storage_class: Some("nkvm-local".to_owned()),
        size: "64Mi".to_owned(),
        access_modes: Vec::new(),
        source: format!("{ns}/vol"),
        instance: Some(instance.to_owned()),
    });
    let created = api.create(&PostParams::default(), &pvc).await.unwrap();
    created.metadata.uid.unwrap()
}

/// nkvm's own incomplete PVC (UID recorded) of a restore a killed process left `running` is
/// deleted; a look-alike with that restore's labels under another name, and the PVC a new-PVC
/// restore completed with the incomplete label put back, both survive and are named in warnings.
/// (The old recovery deleted every PVC carrying the labels.)
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn recovery_deletes_only_incomplete_pvcs_nkvm_recorded_creating() {
    in_namespace("nkvm-rs-recover", |cluster, ns| async move {
        let client = cluster.client.clone();
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let data = tempfile::tempdir().unwrap();
        let instance = unique("i");
        let (killed, completed) = ("20260101t000000-aaaaaa", "20260101t000000-bbbbbb");
        {
            let store = Store::open(&data.path().join("nkvm.db")).await.unwrap();
            // A restore a killed process left running, after its PVC was created and recorded.
            store
                .insert_restore(&new_restore(killed, &ns, "restored"))
                .await
                .unwrap();
            let uid = incomplete_pvc(&pvcs, &ns, "restored", killed, &instance).await;
            store.record_restore_pvc(killed, &uid).await.unwrap();
            // A restore that succeeded: its PVC lost the label, then someone put it back.
            let row = store
                .insert_restore(&new_restore(completed, &ns, "done"))
                .await
                .unwrap();
            let uid = incomplete_pvc(&pvcs, &ns, "done", completed, &instance).await;
            store.record_restore_pvc(completed, &uid).await.unwrap();
            let update = RestoreUpdate {
                status: Some(RunStatus::Succeeded),
                ..RestoreUpdate::default()
            };
            store.update_restore(row, &update).await.unwrap();
        }
        // A look-alike: this instance's labels and the killed restore's id, but nkvm never
        // created it (someone else's PVC, labelled).
        incomplete_pvc(&pvcs, &ns, "precious", killed, &instance).await;
        let relabel = json!({"metadata": {"labels": {"nkvm.io/restore-state": "incomplete"}}});
        pvcs.patch("done", &PatchParams::default(), &Patch::Merge(&relabel))
            .await
            .unwrap();

        let backups = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &instance),
        )
        .await;
        let report = restore_engine(backups)
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .expect("recovery");
        assert_eq!(report.interrupted, [killed], "{report:#?}");
        assert_eq!(
            report.pvcs_deleted,
            [format!("{ns}/restored")],
            "{report:#?}"
        );
        for name in ["precious", "done"] {
            assert!(
                report
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("left PVC {ns}/{name}"))),
                "{report:#?}"
            );
            assert!(pvc_exists(&client, &ns, name).await, "{name} was deleted");
        }
        wait_for(
            "the incomplete PVC to go",
            Duration::from_millis(500),
            || {
                let client = client.clone();
                let ns = ns.clone();
                async move { (!pvc_exists(&client, &ns, "restored").await).then_some(()) }
            },
        )
        .await;
    })
    .await;
}
