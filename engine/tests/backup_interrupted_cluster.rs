//! Backups interrupted on the real test cluster: the helper deleted mid-stream, a cancel mid-stream
//! and a task dropped mid-stream each leave no helper pod and no `.partial` file, and start-up
//! recovery after a killed process marks its run interrupted, deletes its recorded helper (not
//! another instance's) and its partial archive.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the image `nkvm.local/helper:1` on the node and the default storage
//! class `nkvm-local` (hostPath volumes on this machine: fixtures are written straight into the
//! volume's directory). Each test works in its own namespace, deleted afterwards.

mod support;

use support::cluster::*;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use nkvm_engine::backup::pod::{self as helper_pod, HelperPodParams};
use nkvm_engine::backup::{BackupEngine, BackupOptions, PvcRef, Requester, ResultStatus};
use nkvm_engine::domain::{RunStatus, Stage};
use nkvm_engine::store::{HelperPod, NewRun, RunFilter, Store};
use support::wait_for;

/// Starts a backup of a large random volume and returns once it streams.
async fn streaming_run(
    cluster: &Cluster,
    ns: &str,
    data: &Path,
    size_mib: usize,
) -> (BackupEngine, nkvm_engine::backup::StartedRun, String) {
    let client = &cluster.client;
    let source = bound_claim(client, ns, "big", "ReadWriteOnce", "2Gi").await;
    for i in 0..size_mib / 64 {
        std::fs::write(
            source.join(format!("chunk-{i}")),
            random_bytes(64 << 20, i as u64 + 3),
        )
        .unwrap();
    }
    let options = BackupOptions {
        gzip_level: 9,
        prescan: false,
        ..engine_options(data, &unique("i"))
    };
    let engine = engine(cluster, data, options).await;
    let mut events = engine.subscribe();
    let run = engine
        .start(PvcRef::new(ns, "big"), &Requester::cli(Some("test")))
        .await
        .expect("admitted");
    let event = support::next_event(&mut events, |e| {
        assert_eq!(e.status, RunStatus::Running, "{e:?}");
        e.stage == Stage::Stream && e.bytes_read > 20 << 20
    })
    .await;
    let helper = helper_pod::helper_pod_name(&event.run_id);
    (engine, run, helper)
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn helper_deleted_mid_stream_fails_the_stream() {
    in_namespace("nkvm-bk-del", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, helper) = streaming_run(&cluster, &ns, data.path(), 512).await;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        pods.delete(&helper, &params).await.expect("delete helper");
        let result = tokio::time::timeout(Duration::from_mins(3), run.handle)
            .await
            .expect("run ends")
            .expect("task");
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Stream).await;
        assert!(result.message.contains("deleted"), "{}", result.message);
        assert!(engine.active_runs().is_empty());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn cancel_mid_stream_cleans_up() {
    in_namespace("nkvm-bk-cancel", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, _helper) = streaming_run(&cluster, &ns, data.path(), 256).await;
        assert!(engine.cancel(&run.run_id));
        let result = tokio::time::timeout(Duration::from_mins(1), run.handle)
            .await
            .expect("run ends")
            .expect("task");
        assert!(result.cancelled, "{result:#?}");
        assert_failed_clean(&cluster.client, &ns, data.path(), &result, Stage::Stream).await;
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Cancelled);
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn recovery_after_a_killed_process() {
    in_namespace("nkvm-bk-recover", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("f"), b"x").unwrap();
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get("vol")
            .await
            .unwrap();
        let uid = pvc.metadata.uid.unwrap();
        let data = tempfile::tempdir().unwrap();
        let instance = unique("i");

        // What a killed process leaves: a running row, a helper pod, a partial archive.
        {
            let store = Store::open(&data.path().join("nkvm.db")).await.unwrap();
            store
                .insert_run(&NewRun {
                    run_id: "20260101t000000-abcdef".to_owned(),
                    pvc_uid: uid.clone(),
                    namespace: ns.clone(),
                    pvc: "vol".to_owned(),
                    started_by: "killed".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: None,
                })
                .await
                .unwrap();
        }
        let orphan_params = HelperPodParams {
            run_id: "20260101t000000-abcdef".to_owned(),
            namespace: ns.clone(),
            pvc_name: "vol".to_owned(),
            pvc_uid: uid,
            image: HELPER_IMAGE.to_owned(),
            node: None,
            run_as: None,
            active_deadline: Duration::from_mins(10),
            resources: helper_pod::HelperResources::default(),
            instance: Some(instance.clone()),
        };
        let orphan = helper_pod::helper_pod(&orphan_params);
        let created = Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &orphan)
            .await
            .unwrap();
        // The killed process had recorded its helper, as every run does once the create answers.
        Store::open(&data.path().join("nkvm.db"))
            .await
            .unwrap()
            .record_helper(&HelperPod {
                uid: created.metadata.uid.unwrap(),
                job_id: orphan_params.run_id.clone(),
                namespace: ns.clone(),
                name: helper_pod::helper_pod_name(&orphan_params.run_id),
            })
            .await
            .unwrap();
        // Another instance's helper must survive.
        let other = helper_pod::helper_pod(&HelperPodParams {
            run_id: "20260101t000000-999999".to_owned(),
            instance: Some("someone-else".to_owned()),
            ..orphan_params.clone()
        });
        Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &other)
            .await
            .unwrap();
        let partial_dir = data.path().join("artifacts").join(&ns).join("vol");
        std::fs::create_dir_all(&partial_dir).unwrap();
        let partial = partial_dir.join("20260101T000000.000Z.tar.gz.partial");
        std::fs::write(&partial, b"half an archive").unwrap();
        let finished = partial_dir.join("20251231T000000.000Z.tar.gz");
        std::fs::write(&finished, b"kept").unwrap();

        // The restarted process.
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &instance),
        )
        .await;
        let report = engine
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .expect("recovery");
        assert_eq!(report.interrupted, ["20260101t000000-abcdef"]);
        assert_eq!(
            report.helpers_deleted,
            [format!("{ns}/nkvm-backup-20260101t000000-abcdef")]
        );
        assert_eq!(report.partials_removed, std::slice::from_ref(&partial));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(!partial.exists());
        assert!(finished.exists());
        assert_eq!(
            helpers_left(&client, &ns).await,
            ["nkvm-backup-20260101t000000-999999"]
        );
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Interrupted);

        // Then a backup works as usual.
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn aborted_task_cleans_up_and_recovery_marks_it_interrupted() {
    in_namespace("nkvm-bk-abort", |cluster, ns| async move {
        let data = tempfile::tempdir().unwrap();
        let (engine, run, helper) = streaming_run(&cluster, &ns, data.path(), 256).await;
        // A task dropped mid-stream (as when its process is killed, minus the kill).
        run.handle.abort();
        let _ = run.handle.await;
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
        wait_for(
            "the helper deleted by the drop guard",
            Duration::from_millis(500),
            || {
                let pods = pods.clone();
                let helper = helper.clone();
                async move { pods.get_opt(&helper).await.ok()?.is_none().then_some(()) }
            },
        )
        .await;
        assert!(files_under(data.path(), ".partial").is_empty());
        assert!(engine.active_runs().is_empty());
        let report = engine
            .recover(Some(std::slice::from_ref(&ns)))
            .await
            .unwrap();
        assert_eq!(report.interrupted, std::slice::from_ref(&run.run_id));
        let rows = engine
            .store()
            .recent_runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].status, RunStatus::Interrupted);
    })
    .await;
}
