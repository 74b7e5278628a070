//! The "shocker" escape probe on the real test cluster: a static C program (`support/escape_probe.c`,
//! built with `gcc -static` into the volume) runs in pods with exactly the security settings nkvm
//! gives its helpers — the backup helper of a root or unknown consumer (root, the one capability
//! nkvm adds) and the restore helper — and tries `open_by_handle_at` on the node's filesystem
//! through `/etc/hosts` and the mounted volume. The helpers must not be able to open the node's
//! root directory. A control pod, the same backup helper with `CAP_DAC_READ_SEARCH` added back,
//! proves that the probe sees the escape on this cluster when the capability is there.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, gcc with static libc on this machine (the cluster's own image build
//! needs it too), the image `nkvm.local/helper:1` and the storage class `nkvm-local`. Run with
//! `--include-ignored`.

mod support;

use support::cluster::*;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Capabilities, Pod};
use kube::Api;
use kube::api::{LogParams, PostParams};
use nkvm_engine::backup::pod::{self as helper_pod, HelperPodParams, HelperResources};
use nkvm_engine::restore::pod::{RestoreHelperParams, restore_helper_pod};
use support::wait_for;

const PROBE_ARGS: [&str; 3] = ["/data/probe", "/etc/hosts", "/data/probe"];

/// Builds the probe into `dir/probe`.
fn build_probe(dir: &Path) {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/escape_probe.c");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(dir.join("probe"))
        .arg(source)
        .output()
        .expect("run gcc");
    assert!(out.status.success(), "gcc failed: {out:?}");
}

/// The backup helper nkvm builds for a consumer that runs as root or names no user.
fn backup_helper(ns: &str, name: &str, instance: &str) -> Pod {
    helper_pod::helper_pod(&HelperPodParams {
        run_id: name.to_owned(),
        namespace: ns.to_owned(),
        pvc_name: "vol".to_owned(),
        pvc_uid: "probe".to_owned(),
        image: HELPER_IMAGE.to_owned(),
        node: None,
        run_as: None,
        active_deadline: Duration::from_mins(5),
        resources: HelperResources::default(),
        instance: Some(instance.to_owned()),
    })
}

/// Runs the probe instead of the helper's `sleep` (nothing else changed) and returns its output.
async fn probe_in(client: &kube::Client, ns: &str, mut pod: Pod) -> String {
    let name = pod.metadata.name.clone().expect("pod name");
    let spec = pod.spec.as_mut().expect("pod spec");
    spec.containers[0].command = Some(PROBE_ARGS.map(str::to_owned).to_vec());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create probe pod");
    let phase = wait_for(
        &format!("probe pod {name} finished"),
        Duration::from_millis(500),
        || {
            let pods = pods.clone();
            let name = name.clone();
            async move {
                let phase = pods.get(&name).await.ok()?.status?.phase?;
                matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
            }
        },
    )
    .await;
    let logs = pods
        .logs(&name, &LogParams::default())
        .await
        .expect("probe logs");
    eprintln!("--- {name} ({phase}) ---\n{logs}");
    assert_eq!(phase, "Succeeded", "{logs}");
    logs
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn helpers_cannot_open_the_nodes_filesystem_by_handle() {
    in_namespace("nkvm-escape", |cluster, ns| async move {
        let client = cluster.client.clone();
        let dir = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        build_probe(&dir);
        let instance = unique("i");

        // Control: with CAP_DAC_READ_SEARCH the probe reaches the node's root directory.
        let mut control = backup_helper(&ns, "control", &instance);
        let security = control.spec.as_mut().unwrap().containers[0]
            .security_context
            .as_mut()
            .unwrap();
        security.capabilities = Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: Some(vec!["DAC_READ_SEARCH".to_owned()]),
        });
        let logs = probe_in(&client, &ns, control).await;
        assert!(
            logs.contains("escape=yes"),
            "the control must escape: {logs}"
        );

        // The backup helper of a root or unknown consumer.
        let logs = probe_in(&client, &ns, backup_helper(&ns, "backup", &instance)).await;
        assert!(logs.contains("escape=no"), "{logs}");
        for path in ["/etc/hosts", "/data/probe"] {
            assert!(
                logs.contains(&format!("open_by_handle_at(root) {path}: EPERM")),
                "{logs}"
            );
        }

        // The restore helper (root, volume read-write).
        let restore = restore_helper_pod(&RestoreHelperParams {
            restore_id: "probe-restore".to_owned(),
            run_id: "probe".to_owned(),
            namespace: ns.clone(),
            pvc_name: "vol".to_owned(),
            pvc_uid: "probe".to_owned(),
            image: HELPER_IMAGE.to_owned(),
            active_deadline: Duration::from_mins(5),
            resources: HelperResources::default(),
            instance: Some(instance.clone()),
        });
        let logs = probe_in(&client, &ns, restore).await;
        assert!(logs.contains("escape=no"), "{logs}");
        assert!(
            logs.contains("open_by_handle_at(root) /etc/hosts: EPERM"),
            "{logs}"
        );
    })
    .await;
}
