//! Tests of `helper`.

use super::*;
use serde_json::json;

#[test]
fn a_forbidden_watch_names_the_grant() {
    use kube::runtime::wait::Error as Wait;
    use kube::runtime::watcher::Error as Watch;
    let forbidden = || {
        kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            message: "forbidden".into(),
            ..kube::core::Status::default()
        }))
    };
    let watch = watch_failure(
        &Wait::ProbeFailed(Watch::WatchStartFailed(forbidden())),
        "shop",
    );
    assert!(
        watch.contains("HTTP 403 Forbidden: grant watch on pods in namespace shop"),
        "{watch}"
    );
    let list = watch_failure(
        &Wait::ProbeFailed(Watch::InitialListFailed(forbidden())),
        "shop",
    );
    assert!(
        list.contains("grant list on pods in namespace shop"),
        "{list}"
    );
    let other = watch_failure(&Wait::ProbeFailed(Watch::NoResourceVersion), "shop");
    assert!(other.contains("retry"), "{other}");
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "test builders take inline json! values"
)]
fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
            "metadata": {"name": "nkvm-backup-x"},
            "spec": {"nodeName": "n1", "containers": [{"name": "helper", "image": "nkvm.local/nope:1"}]},
            "status": status,
        }))
        .unwrap()
}

#[test]
fn image_problems_fail_fast_naming_image_and_node() {
    for reason in ["ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull"] {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
                "name": "helper", "image": "nkvm.local/nope:1", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}]}));
        let message = startup_failure(&p).unwrap();
        assert!(message.starts_with(reason), "{message}");
        assert!(message.contains("nkvm.local/nope:1"), "{message}");
        assert!(message.contains("node n1"), "{message}");
        assert!(message.contains("--helper-image"), "{message}");
    }
}

#[test]
fn container_creating_is_not_a_failure() {
    let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "helper", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
    assert_eq!(startup_failure(&p), None);
    assert!(!is_running(&p));
}

#[test]
fn unschedulable_fails_fast() {
    let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu."}]}));
    let message = startup_failure(&p).unwrap();
    assert!(message.contains("Insufficient cpu"), "{message}");
}

#[test]
fn a_claim_the_scheduler_has_not_seen_yet_is_waited_for() {
    // Seen on the test cluster: a restore creates its PVC, then the helper at once; the scheduler's
    // first attempt does not know the claim yet and retries moments later.
    let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: persistentvolumeclaim \"copy\" not found. not found"}]}));
    assert_eq!(startup_failure(&p), None);
    assert!(!is_running(&p));
}

#[test]
fn failed_pod_fails() {
    let p = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
    assert!(startup_failure(&p).unwrap().contains("DeadlineExceeded"));
}

#[test]
fn running_needs_a_running_container() {
    let p = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "helper", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}));
    assert!(is_running(&p));
    assert_eq!(startup_failure(&p), None);
}

#[test]
fn backoff_doubles() {
    let retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_secs(1),
    };
    assert_eq!(retry.delay(1), Duration::from_secs(1));
    assert_eq!(retry.delay(2), Duration::from_secs(2));
}
