//! Verification and restoring against the real test cluster: an awkward volume backed up, verified
//! and restored into new PVCs (same and another namespace) byte for byte with modes, owners,
//! symlinks, hard links and empty directories; in-place restoring of a Deployment and a StatefulSet
//! (scaled to 0 and back to their counts; merged, or replaced with `wipe`); a drill.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the test images and the `nkvm-local` storage class (hostPath
//! volumes: fixtures are written and compared through the volumes' directories). Each test works
//! in its own namespaces, deleted afterwards. Run with `--include-ignored`.

mod support;

use std::time::Duration;

use nkvm_engine::backup::{Requester, ResultStatus};
use nkvm_engine::domain::{DrillStatus, RestoreMode, RestoreStage, RunStatus, VerifyStatus};
use nkvm_engine::restore::RestoreEvent;
use nkvm_engine::store::RestoreFilter;
use support::cluster::*;
use support::restores::*;

fn requester() -> Requester {
    Requester::cli(Some("restore_cluster"))
}

/// Owner changes the fixture makes on top of the awkward volume (the helper restoring them as root).
fn chown_some(root: &std::path::Path) {
    use std::os::unix::fs::chown;
    chown(root.join("secret"), Some(1234), Some(5678)).unwrap();
    chown(root.join("private"), Some(42), Some(43)).unwrap();
    chown(root.join("private/inside"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(root.join("rel-link"), Some(7), Some(8)).unwrap();
}

#[tokio::test]
#[ignore = "needs the test cluster"]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, checked step by step"
)]
async fn round_trips_into_new_pvcs_keep_every_byte_mode_owner_and_link() {
    in_namespace("nkvm-rs-rt", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
        write_fixture(&source);
        chown_some(&source);
        let Engines {
            data: _data,
            backups,
            restoring,
        } = engines(&cluster, |options| options).await;
        let (backup, run_id) = backed_up(&backups, &ns, "vol").await;

        // Verify: recorded with who and when, shown as last_verified_at.
        let verified = restoring.verify(&run_id, &requester()).await.unwrap();
        assert_eq!(verified.status, VerifyStatus::Verified, "{verified:#?}");
        assert_eq!(verified.sha256, backup.sha256);
        let row = backups
            .store()
            .run_by_run_id(&run_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.verification.verify_status, Some(VerifyStatus::Verified));
        assert_eq!(
            row.verification.verified_by.as_deref(),
            Some("cli:restore_cluster")
        );
        assert!(row.verification.last_verified_at.is_some());

        // The volume holds an absolute symlink (`dangling-abs`): refused by default, restored
        // when allowed.
        let refused = restoring
            .restore(into_new(&run_id, "copy", None), &requester())
            .await;
        assert_eq!(refused.stage, Some(RestoreStage::Verify), "{refused:#?}");
        assert!(
            refused.message.contains("\"./dangling-abs\""),
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("no PVC was created"),
            "{}",
            refused.message
        );
        let trusted = |name: &str, namespace: Option<&str>| {
            let mut request = into_new(&run_id, name, namespace);
            request.rules.allow_escaping_symlinks = true;
            request
        };

        // Into a new PVC here, with progress observed.
        let mut events = restoring.subscribe();
        let collect = tokio::spawn(async move {
            let mut seen: Vec<RestoreEvent> = Vec::new();
            while let Ok(event) = events.recv().await {
                let last = event.status != RunStatus::Running;
                seen.push(event);
                if last {
                    break;
                }
            }
            seen
        });
        let restored = restoring.restore(trusted("copy", None), &requester()).await;
        assert_eq!(restored.status, ResultStatus::Succeeded, "{restored:#?}");
        assert_eq!(restored.mode, RestoreMode::NewPvc);
        assert_eq!(
            (restored.pvc_created, restored.pvc_kept),
            (true, Some(true))
        );
        assert_eq!(restored.files, backup.files);
        assert_eq!(restored.bytes, backup.source_bytes);
        assert!(
            restored
                .spot_check
                .as_deref()
                .is_some_and(|s| s.contains("match the archive")),
            "{restored:#?}"
        );
        let seen = collect.await.unwrap();
        let stages: Vec<RestoreStage> = seen.iter().map(|e| e.stage).collect();
        for stage in [
            RestoreStage::Verify,
            RestoreStage::Create,
            RestoreStage::Stream,
            RestoreStage::Finalize,
        ] {
            assert!(stages.contains(&stage), "{stages:?}");
        }
        assert!(
            seen.iter()
                .any(|e| e.stage == RestoreStage::Stream && e.progress.total_bytes.is_some()),
            "progress with a known total"
        );
        let copy = volume_dir(&client, &ns, "copy").await;
        assert_eq!(snapshot(&copy), snapshot(&source));
        assert_eq!(ownership(&copy), ownership(&source));
        let links = hard_link_groups(&copy);
        assert_eq!(links, hard_link_groups(&source));
        assert!(
            links.contains(&vec!["empty".to_owned(), "hard-to-empty".to_owned()]),
            "{links:?}"
        );
        assert!(copy.join("empty-dir").is_dir());
        assert!(helpers_left(&client, &ns).await.is_empty(), "helper left");
        let history = backups
            .store()
            .recent_restores(&RestoreFilter::default())
            .await
            .unwrap();
        assert_eq!(history[0].status, RunStatus::Succeeded);
        assert_eq!(history[0].started_by, "cli:restore_cluster");
        assert_eq!(
            (
                history[0].target_namespace.as_str(),
                history[0].target_pvc.as_str()
            ),
            (ns.as_str(), "copy")
        );

        // A second restore into the same name is refused before anything is written.
        let again = restoring.restore(trusted("copy", None), &requester()).await;
        assert_eq!(again.stage, Some(RestoreStage::Preflight), "{again:#?}");
        assert!(
            again.message.contains("already exists"),
            "{}",
            again.message
        );

        // Into another namespace.
        let source_snapshot = (snapshot(&source), ownership(&source));
        let elsewhere = trusted("elsewhere", None);
        in_namespace("nkvm-rs-other", move |cluster_b, other| async move {
            let mut request = elsewhere;
            if let nkvm_engine::restore::RestoreTarget::NewPvc { namespace, .. } =
                &mut request.target
            {
                *namespace = Some(other.clone());
            }
            let restored = restoring.restore(request, &requester()).await;
            assert_eq!(restored.status, ResultStatus::Succeeded, "{restored:#?}");
            assert_eq!(restored.namespace, other);
            let there = volume_dir(&cluster_b.client, &other, "elsewhere").await;
            assert_eq!((snapshot(&there), ownership(&there)), source_snapshot);
            assert!(helpers_left(&cluster_b.client, &other).await.is_empty());
        })
        .await;
    })
    .await;
}

/// An in-place restore of `kind` (Deployment or StatefulSet) with `replicas`: merged, then
/// replaced; the workload is observed at 0 and back at its count each time.
async fn in_place_round(kind: &'static str, replicas_wanted: i32) {
    in_namespace("nkvm-rs-inplace", move |cluster, ns| async move {
        let client = cluster.client.clone();
        let claim = if kind == "Deployment" {
            create_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
            "vol".to_owned()
        } else {
            "vol-app-0".to_owned()
        };
        workload(&client, &ns, kind, "app", "vol", replicas_wanted).await;
        let dir = volume_dir(&client, &ns, &claim).await;
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"original\n").unwrap();
        std::fs::write(dir.join("sub/b.bin"), random_bytes(3 << 20, 5)).unwrap();
        let Engines {
            data: _data,
            backups,
            restoring,
        } = engines(&cluster, |options| options).await;
        let (_, run_id) = backed_up(&backups, &ns, &claim).await;
        let original = snapshot(&dir);

        // The plan names the workload and its replicas.
        let plan = restoring.plan_in_place(&run_id).await.unwrap();
        assert_eq!(plan.refusal, None, "{plan:#?}");
        assert_eq!(plan.workloads.len(), 1, "{plan:#?}");
        assert_eq!(
            plan.workloads[0].workload.to_string(),
            format!("{kind}/app")
        );
        assert_eq!(plan.workloads[0].replicas, replicas_wanted);
        assert_eq!(plan.users.len(), usize::try_from(replicas_wanted).unwrap());

        // Merge: the changed file comes back, the new one stays.
        std::fs::write(dir.join("a.txt"), b"changed\n").unwrap();
        std::fs::write(dir.join("extra.txt"), b"not in the backup\n").unwrap();
        let (stop, watched) = watch_replicas(client.clone(), ns.clone(), kind, "app".to_owned());
        let merged = restoring
            .restore(in_place(&run_id, false), &requester())
            .await;
        wait_ready(&client, &ns, kind, "app", replicas_wanted).await;
        drop(stop);
        let seen = watched.await.unwrap();
        assert_eq!(merged.status, ResultStatus::Succeeded, "{merged:#?}");
        assert_eq!(merged.scaled.len(), 1);
        assert_eq!(merged.scaled[0].replicas, replicas_wanted);
        assert!(seen.contains(&0), "scale-down observed: {seen:?}");
        assert_eq!(seen.last(), Some(&replicas_wanted), "{seen:?}");
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"original\n");
        assert!(dir.join("extra.txt").exists(), "a merge keeps other files");

        // Replace: only the backup's files remain.
        let (stop, watched) = watch_replicas(client.clone(), ns.clone(), kind, "app".to_owned());
        let replaced = restoring
            .restore(in_place(&run_id, true), &requester())
            .await;
        wait_ready(&client, &ns, kind, "app", replicas_wanted).await;
        drop(stop);
        let seen = watched.await.unwrap();
        assert_eq!(replaced.status, ResultStatus::Succeeded, "{replaced:#?}");
        assert!(replaced.wipe);
        assert!(seen.contains(&0), "{seen:?}");
        assert_eq!(snapshot(&dir), original, "wipe replaces the contents");
        assert!(helpers_left(&client, &ns).await.is_empty(), "helper left");
        let (spec, _) = replicas(&client, &ns, kind, "app").await;
        assert_eq!(spec, replicas_wanted);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn in_place_restores_of_a_deployment_merge_or_replace() {
    in_place_round("Deployment", 2).await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn in_place_restores_of_a_statefulset_merge_or_replace() {
    in_place_round("StatefulSet", 1).await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_drill_restores_checks_and_removes_its_throwaway_pvc() {
    in_namespace("nkvm-rs-drill", |cluster, ns| async move {
        let client = cluster.client.clone();
        let dir = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "1Gi").await;
        std::fs::create_dir(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), b"drill me\n").unwrap();
        std::os::unix::fs::symlink("d/f", dir.join("l")).unwrap();
        let Engines {
            data: _data,
            backups,
            restoring,
        } = engines(&cluster, |options| options).await;
        let (backup, _) = backed_up(&backups, &ns, "vol").await;
        let drill = restoring
            .drill(&nkvm_engine::backup::PvcRef::new(&ns, "vol"), &requester())
            .await;
        assert_eq!(drill.status, DrillStatus::Passed, "{drill:#?}");
        assert_eq!(drill.run_id, backup.run_id);
        assert!(drill.removed);
        let throwaway = drill.throwaway_pvc.clone().unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !pvc_exists(&client, &ns, &throwaway).await,
            "throwaway PVC left"
        );
        assert!(helpers_left(&client, &ns).await.is_empty());
        let history = backups
            .store()
            .recent_restores(&RestoreFilter::default())
            .await
            .unwrap();
        assert_eq!(history[0].mode, RestoreMode::Drill);
        assert_eq!(history[0].pvc_kept, Some(false));
        // A PVC without any backup fails with what to do.
        let none = restoring
            .drill(
                &nkvm_engine::backup::PvcRef::new(&ns, "nothing"),
                &requester(),
            )
            .await;
        assert_eq!(none.status, DrillStatus::Failed);
        assert!(
            none.message.contains("back it up first"),
            "{}",
            none.message
        );
    })
    .await;
}
