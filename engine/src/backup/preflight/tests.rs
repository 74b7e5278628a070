//! Tests of `preflight`.

use super::*;
use serde_json::{Value, json};

fn pvc(modes: &[&str], phase: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": "data", "namespace": "shop", "uid": "u-1"},
        "spec": {"accessModes": modes, "storageClassName": "fast", "volumeName": "pv-1",
                 "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": phase, "capacity": {"storage": "2Gi"}},
    }))
    .unwrap()
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "test builders take inline json! values"
)]
fn pod(name: &str, phase: &str, node: &str, extra: Value) -> Pod {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "c"}],
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
        "status": {"phase": phase},
    }))
    .unwrap()
}

fn other_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "unrelated"},
        "spec": {"nodeName": "n9", "containers": [{"name": "c"}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "other"}}]},
        "status": {"phase": "Running"},
    }))
    .unwrap()
}

#[test]
fn summary_prefers_status_capacity() {
    let plan = plan(&pvc(&["ReadWriteOnce"], "Bound"), &[]).unwrap();
    assert_eq!(
        plan.pvc,
        PvcSummary {
            uid: "u-1".into(),
            namespace: "shop".into(),
            name: "data".into(),
            phase: "Bound".into(),
            capacity: Some("2Gi".into()),
            capacity_bytes: Some(2 << 30),
            storage_class: Some("fast".into()),
            access_modes: vec!["ReadWriteOnce".into()],
            volume_name: Some("pv-1".into()),
        }
    );
    assert_eq!(plan.node, None);
    assert!(plan.consumers.is_empty());
}

#[test]
fn unbound_is_refused() {
    let err = plan(&pvc(&["ReadWriteOnce"], "Pending"), &[]).unwrap_err();
    assert!(err.to_string().contains("is Pending (not Bound)"), "{err}");
}

#[test]
fn rwop_in_use_is_refused_with_what_to_do() {
    let pods = [pod("web-0", "Running", "n1", json!({}))];
    let err = plan(&pvc(&["ReadWriteOncePod"], "Bound"), &pods).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ReadWriteOncePod and in use by pod(s) web-0"),
        "{message}"
    );
    assert!(
        message.contains("scale the owning workload down"),
        "{message}"
    );
}

#[test]
fn rwop_with_only_finished_pods_is_fine() {
    let pods = [pod("job-x", "Succeeded", "n1", json!({}))];
    let plan = plan(&pvc(&["ReadWriteOncePod"], "Bound"), &pods).unwrap();
    assert_eq!(plan.consumers, ["job-x"]);
    assert_eq!(plan.node, None);
}

#[test]
fn rwo_in_use_pins_to_the_running_consumer() {
    let pods = [
        pod("pending", "Pending", "", json!({})),
        pod("web-1", "Running", "n2", json!({})),
        other_pod(),
    ];
    let plan = plan(&pvc(&["ReadWriteOnce"], "Bound"), &pods).unwrap();
    assert_eq!(plan.node.as_deref(), Some("n2"));
    assert_eq!(plan.consumers, ["pending", "web-1"]);
}

#[test]
fn rwx_is_not_pinned() {
    let pods = [pod("web-1", "Running", "n2", json!({}))];
    let plan = plan(&pvc(&["ReadWriteMany"], "Bound"), &pods).unwrap();
    assert_eq!(plan.node, None);
}

#[test]
fn run_as_comes_from_the_running_consumer() {
    let pods = [
        pod(
            "a-old",
            "Failed",
            "n1",
            json!({"securityContext": {"runAsUser": 5}}),
        ),
        pod(
            "b-live",
            "Running",
            "n1",
            json!({"securityContext": {"runAsUser": 1000, "fsGroup": 2000}}),
        ),
    ];
    let plan = plan(&pvc(&["ReadWriteOnce"], "Bound"), &pods).unwrap();
    assert_eq!(
        plan.run_as,
        Some(RunAs {
            uid: Some(1000),
            gid: None,
            fs_group: Some(2000)
        })
    );
    assert_eq!(plan.run_as_from.as_deref(), Some("b-live"));
}

#[test]
fn helpers_are_not_consumers() {
    let mut helper = pod("nkvm-backup-x", "Running", "n3", json!({}));
    helper.metadata.labels = Some(
        [(pod::LABEL_MANAGED_BY.to_owned(), "nkvm".to_owned())]
            .into_iter()
            .collect(),
    );
    let plan = plan(
        &pvc(&["ReadWriteOnce"], "Bound"),
        std::slice::from_ref(&helper),
    )
    .unwrap();
    assert!(plan.consumers.is_empty());
    assert_eq!(plan.node, None);
    let err = super::plan(&pvc(&["ReadWriteOncePod"], "Bound"), &[helper]).unwrap_err();
    assert!(err.to_string().contains("another nkvm backup"), "{err}");
}

#[test]
fn generic_ephemeral_volumes_count() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c"}],
                 "volumes": [{"name": "scratch", "ephemeral": {}}]},
    }))
    .unwrap();
    assert!(mounts_claim(&pod, "web-scratch"));
    assert!(!mounts_claim(&pod, "scratch"));
}

#[test]
fn free_space_check_reports_numbers() {
    let dir = tempfile::tempdir().unwrap();
    assert!(check_free_space(dir.path(), 1, "the volume's capacity").is_ok());
    let err = check_free_space(dir.path(), u64::MAX, "the volume's capacity").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("not enough free space"), "{message}");
    assert!(message.contains("available"), "{message}");
    assert!(message.contains("18446744073709551615 bytes"), "{message}");
}
