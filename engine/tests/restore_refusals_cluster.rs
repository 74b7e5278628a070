//! What restoring refuse and how they fail, against the real test cluster: a tampered archive and
//! archives crafted with `../x`, `/etc/x`, a symlink to `/`, a device node and a setuid file are
//! refused before anything is created (the message names the entry); a PVC used by a bare pod,
//! a namespace outside the allowlist and a too small target are refused at pre-flight; a helper
//! deleted mid-restore and a cancel leave no helper, no half-restored new PVC and no workload
//! scaled down.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the test images and the `nkvm-local` storage class. Run with
//! `--include-ignored`.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use nkvm_engine::backup::{BackupOptions, Requester, ResultStatus};
use nkvm_engine::domain::{RestoreStage, RunStatus, VerifyStatus};
use nkvm_engine::restore::{RestoreTarget, Rules};
use support::cluster::*;
use support::restores::*;

fn requester() -> Requester {
    Requester::cli(Some("restore_refusals"))
}

#[tokio::test]
#[ignore = "needs the test cluster"]
#[allow(
    clippy::too_many_lines,
    reason = "one table of crafted archives, each checked the same way"
)]
async fn tampered_and_crafted_archives_are_refused_before_anything_is_written() {
    in_namespace("nkvm-rs-bad", |cluster, ns| async move {
        let client = cluster.client.clone();
        let Engines {
            data,
            backups,
            restoring,
        } = engines(&cluster, |options| options).await;
        let store = backups.store().clone();

        // Tampered: one byte of a valid archive changed after the backup.
        let good = raw_tar(&[Entry::dir("./"), Entry::file("./f", 0o644, b"payload")]);
        let (run_id, archive) = crafted_backup(&store, data.path(), &ns, "src", &good).await;
        let ok = restoring.verify(&run_id, &requester()).await.unwrap();
        assert_eq!(ok.status, VerifyStatus::Verified, "{ok:#?}");
        let mut bytes = std::fs::read(&archive).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&archive, &bytes).unwrap();
        let tampered = restoring.verify(&run_id, &requester()).await.unwrap();
        assert_eq!(tampered.status, VerifyStatus::Failed);
        assert!(
            tampered.message.contains("TAMPERED"),
            "{}",
            tampered.message
        );
        let row = store.run_by_run_id(&run_id).await.unwrap().unwrap();
        assert_eq!(row.verification.verify_status, Some(VerifyStatus::Failed));
        assert_eq!(row.verification.last_verified_at, None);
        let refused = restoring
            .restore(into_new(&run_id, "from-tampered", None), &requester())
            .await;
        assert_eq!(refused.stage, Some(RestoreStage::Verify), "{refused:#?}");
        assert!(refused.message.contains("TAMPERED"), "{}", refused.message);
        assert!(!pvc_exists(&client, &ns, "from-tampered").await);

        // Crafted archives: each refused at verify, naming the entry.
        let cases: Vec<(&str, Vec<Entry<'_>>, &str)> = vec![
            ("dotdot", vec![Entry::file("./../x", 0o644, b"x")], "./../x"),
            (
                "absolute",
                vec![Entry::file("/etc/x", 0o644, b"x")],
                "/etc/x",
            ),
            ("root-link", vec![Entry::special("./l", b'2', "/")], "./l"),
            ("device", vec![Entry::special("./dev", b'3', "")], "./dev"),
            (
                "setuid",
                vec![Entry::file("./suid", 0o4755, b"#!/bin/sh\n")],
                "./suid",
            ),
        ];
        for (name, entries, entry) in cases {
            let mut all = vec![Entry::dir("./")];
            all.extend(entries);
            let tar = raw_tar(&all);
            let (run_id, _) = crafted_backup(&store, data.path(), &ns, name, &tar).await;
            let target = format!("from-{name}");
            let result = restoring
                .restore(into_new(&run_id, &target, None), &requester())
                .await;
            assert_eq!(result.status, ResultStatus::Failed, "{name}: {result:#?}");
            assert_eq!(
                result.stage,
                Some(RestoreStage::Verify),
                "{name}: {result:#?}"
            );
            assert!(
                result
                    .message
                    .contains("refused before anything was written"),
                "{name}: {}",
                result.message
            );
            assert!(
                result.message.contains(&format!("{entry:?}")),
                "{name}: the message names {entry}: {}",
                result.message
            );
            assert!(!result.pvc_created, "{name}");
            assert!(
                !pvc_exists(&client, &ns, &target).await,
                "{name}: PVC created"
            );
            assert!(
                helpers_left(&client, &ns).await.is_empty(),
                "{name}: helper"
            );
        }

        // The setuid file restoring when explicitly allowed, its mode kept.
        let tar = raw_tar(&[
            Entry::dir("./"),
            Entry::file("./suid", 0o4755, b"#!/bin/sh\n"),
        ]);
        let (run_id, _) = crafted_backup(&store, data.path(), &ns, "allowed", &tar).await;
        let mut request = into_new(&run_id, "with-suid", None);
        request.rules = Rules {
            allow_setuid: true,
            ..Rules::default()
        };
        let allowed = restoring.restore(request, &requester()).await;
        assert_eq!(allowed.status, ResultStatus::Succeeded, "{allowed:#?}");
        let dir = volume_dir(&client, &ns, "with-suid").await;
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("suid")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o7777, 0o4755);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn bare_pods_foreign_namespaces_and_small_targets_are_refused() {
    in_namespace("nkvm-rs-refuse", |cluster, ns| async move {
        let client = cluster.client.clone();
        let dir = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
        std::fs::write(dir.join("big"), random_bytes(2 << 20, 9)).unwrap();
        create_consumer(&client, &ns, "debug", &["vol"], None).await;
        let allowlist = Some(vec![ns.clone()]);
        let Engines {
            data: _data,
            backups,
            restoring,
        } = engines(&cluster, |options| BackupOptions {
            allowlist,
            ..options
        })
        .await;
        let (_, run_id) = backed_up(&backups, &ns, "vol").await;

        // A bare pod cannot be scaled: the plan and the restore say what to do.
        let plan = restoring.plan_in_place(&run_id).await.unwrap();
        let refusal = plan.refusal.unwrap();
        assert!(refusal.contains("pod debug"), "{refusal}");
        assert!(refusal.contains("kubectl delete pod"), "{refusal}");
        let refused = restoring
            .restore(in_place(&run_id, true), &requester())
            .await;
        assert_eq!(refused.stage, Some(RestoreStage::Preflight), "{refused:#?}");
        assert!(refused.message.contains("pod debug"), "{}", refused.message);
        assert!(dir.join("big").exists(), "nothing was written");

        // Outside the allowlist.
        let foreign = restoring
            .restore(into_new(&run_id, "copy", Some("kube-system")), &requester())
            .await;
        assert_eq!(foreign.stage, Some(RestoreStage::Preflight), "{foreign:#?}");
        assert!(foreign.message.contains("allowlist"), "{}", foreign.message);

        // Too small.
        let mut small = into_new(&run_id, "tiny", None);
        if let RestoreTarget::NewPvc { size, .. } = &mut small.target {
            *size = Some("1Mi".to_owned());
        }
        let small = restoring.restore(small, &requester()).await;
        assert_eq!(small.stage, Some(RestoreStage::Preflight), "{small:#?}");
        assert!(small.message.contains("too small"), "{}", small.message);
        assert!(small.message.contains("2.0 MiB"), "{}", small.message);
        assert!(!pvc_exists(&client, &ns, "tiny").await);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_deleted_helper_or_a_cancel_leaves_nothing_behind() {
    in_namespace("nkvm-rs-fault", |cluster, ns| async move {
        let client = cluster.client.clone();
        create_claim(&client, &ns, "vol", "ReadWriteOnce", "2Gi").await;
        workload(&client, &ns, "Deployment", "app", "vol", 2).await;
        let dir = volume_dir(&client, &ns, "vol").await;
        for i in 0..4 {
            std::fs::write(dir.join(format!("big-{i}")), random_bytes(150 << 20, i)).unwrap();
        }
        let Engines {
            data: _data,
            backups,
            restoring,
        } = engines(&cluster, |options| options).await;
        let (_, run_id) = backed_up(&backups, &ns, "vol").await;

        // The helper pod is deleted while the archive streams into it.
        let job = restoring
            .start_restore(in_place(&run_id, false), &requester())
            .await
            .unwrap();
        let mut events = restoring.subscribe();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let helper = nkvm_engine::restore::pod::helper_pod_name(&job.id);
        loop {
            let event = events.recv().await.unwrap();
            if event.stage == RestoreStage::Stream && event.progress.bytes > 0 {
                break;
            }
            assert_eq!(event.status, RunStatus::Running, "{event:#?}");
        }
        let _ = pods
            .delete(
                &helper,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await;
        let failed = job.handle.await.unwrap();
        assert_eq!(failed.status, ResultStatus::Failed, "{failed:#?}");
        assert!(
            matches!(
                failed.stage,
                Some(RestoreStage::Stream | RestoreStage::Finalize)
            ),
            "{failed:#?}"
        );
        assert!(
            failed.message.contains("scaled Deployment/app back to 2"),
            "{}",
            failed.message
        );
        wait_ready(&client, &ns, "Deployment", "app", 2).await;
        assert!(helpers_left(&client, &ns).await.is_empty(), "helper left");

        // A cancelled restore into a new PVC removes the PVC and says so.
        let job = restoring
            .start_restore(into_new(&run_id, "copy", None), &requester())
            .await
            .unwrap();
        let mut events = restoring.subscribe();
        loop {
            let event = events.recv().await.unwrap();
            if event.stage == RestoreStage::Stream && event.progress.bytes > 0 {
                break;
            }
        }
        assert!(restoring.cancel_for(&job.id, &requester()).await);
        let cancelled = job.handle.await.unwrap();
        assert_eq!(cancelled.status, ResultStatus::Cancelled, "{cancelled:#?}");
        assert_eq!(cancelled.pvc_kept, Some(false));
        assert!(
            cancelled.message.contains("the new PVC") && cancelled.message.contains("was removed"),
            "{}",
            cancelled.message
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !pvc_exists(&client, &ns, "copy").await,
            "cancelled PVC left"
        );
        assert!(helpers_left(&client, &ns).await.is_empty(), "helper left");
    })
    .await;
}
