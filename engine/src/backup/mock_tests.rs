//! Stage errors of whole runs against a scripted apiserver (`tower_test::mock::pair`): which stage a
//! failure names, which calls are retried, and that cleanup and history follow every path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::domain::{RunStatus, Stage};
use crate::store::{RunFilter, Store};

/// What the fake apiserver does for each kind of call.
#[derive(Clone)]
struct Script {
    pvc: Option<Value>,
    /// Hang on the PVC GET (to keep a run busy).
    hang_pvc: bool,
    pods: Vec<Value>,
    /// Status codes answered to successive pod creations; `201` creates.
    creates: Vec<u16>,
    /// The helper as the watch's initial list shows it.
    helper_status: Value,
    /// Status code answered to helper deletions instead of deleting (e.g. 403).
    delete_status: Option<u16>,
}

#[derive(Debug, Default)]
struct Calls {
    log: Vec<(Method, String)>,
}

impl Calls {
    fn count(&self, method: &Method, path_part: &str) -> usize {
        self.log
            .iter()
            .filter(|(m, p)| m == method && p.contains(path_part))
            .count()
    }
}

fn pvc(modes: &[&str], capacity: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop", "uid": "uid-data",
                     "resourceVersion": "1"},
        "spec": {"accessModes": modes, "resources": {"requests": {"storage": capacity}},
                 "volumeName": "pv-1", "storageClassName": "local"},
        "status": {"phase": "Bound", "capacity": {"storage": capacity}},
    })
}

fn image_never_pull() -> Value {
    json!({"phase": "Pending", "containerStatuses": [{
        "name": "helper", "image": "nkvm.local/nope:1", "imageID": "", "ready": false,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}}]})
}

fn script() -> Script {
    Script {
        pvc: Some(pvc(&["ReadWriteOnce"], "16Mi")),
        hang_pvc: false,
        pods: Vec::new(),
        creates: vec![201],
        helper_status: image_never_pull(),
        delete_status: None,
    }
}

fn status(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "message": format!("scripted {code}"), "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "test builders take inline json! values"
)]
fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items})
}

async fn body_json(request: Request<Body>) -> Value {
    use http_body_util::BodyExt;
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Serves the script; returns the client and the call log.
fn serve(script: Script) -> (Client, Arc<Mutex<Calls>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Calls>> = Arc::default();
    let log = calls.clone();
    tokio::spawn(async move {
        let mut creates = script.creates.clone().into_iter();
        let mut hung = Vec::new();
        let mut helper: Option<Value> = None;
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            log.lock()
                .unwrap()
                .log
                .push((method.clone(), format!("{path}?{query}")));
            let response = match (method.clone(), path.as_str()) {
                (Method::GET, "/api/v1/namespaces/shop/persistentvolumeclaims/data") => {
                    if script.hang_pvc {
                        hung.push(send);
                        continue;
                    }
                    match &script.pvc {
                        Some(pvc) => ok(200, pvc),
                        None => status(404, "NotFound"),
                    }
                }
                (Method::GET, "/api/v1/namespaces/shop/pods") if query.contains("watch=true") => {
                    hung.push(send);
                    continue;
                }
                (Method::GET, "/api/v1/namespaces/shop/pods")
                    if query.contains("fieldSelector") =>
                {
                    let items = helper.iter().cloned().collect();
                    ok(200, &list("PodList", items))
                }
                (Method::GET, "/api/v1/namespaces/shop/pods") => {
                    ok(200, &list("PodList", script.pods.clone()))
                }
                (Method::POST, "/api/v1/namespaces/shop/pods") => {
                    let code = creates.next().unwrap_or(500);
                    let mut pod = body_json(request).await;
                    if code == 201 {
                        pod["status"] = script.helper_status.clone();
                        pod["metadata"]["resourceVersion"] = json!("5");
                        pod["metadata"]["uid"] = json!("helper-uid-1");
                        helper = Some(pod.clone());
                        ok(201, &pod)
                    } else {
                        status(
                            code,
                            if code == 403 {
                                "Forbidden"
                            } else {
                                "InternalError"
                            },
                        )
                    }
                }
                (Method::DELETE, p) if p.starts_with("/api/v1/namespaces/shop/pods/") => {
                    let precondition = body_json(request).await["preconditions"]["uid"].clone();
                    if let Some(code) = script.delete_status {
                        send.send_response(status(code, "Forbidden"));
                        continue;
                    }
                    // nkvm deletes only the pod it created: the UID must be a precondition.
                    match helper.take() {
                        Some(pod) if precondition == pod["metadata"]["uid"] => ok(200, &pod),
                        Some(pod) => {
                            helper = Some(pod);
                            status(409, "Conflict")
                        }
                        None => status(404, "NotFound"),
                    }
                }
                (Method::GET, p) if p.starts_with("/api/v1/namespaces/shop/pods/") => match &helper
                {
                    Some(pod) => ok(200, pod),
                    None => status(404, "NotFound"),
                },
                _ => status(404, "NotFound"),
            };
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), calls)
}

struct Fixture {
    engine: BackupEngine,
    calls: Arc<Mutex<Calls>>,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture(script: Script) -> Fixture {
    let (client, calls) = serve(script);
    let store = Store::open_in_memory().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = BackupOptions {
        data_dir: dir.path().to_owned(),
        helper_image: "nkvm.local/nope:1".to_owned(),
        retry_base_delay: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        schedule_timeout: Duration::from_secs(10),
        prescan: false,
        ..BackupOptions::default()
    };
    Fixture {
        engine: BackupEngine::new(client, store.clone(), options),
        calls,
        store,
        _dir: dir,
    }
}

fn requester(name: &str) -> Requester {
    Requester::cli(Some(name))
}

fn target() -> PvcRef {
    PvcRef::new("shop", "data")
}

async fn one(fixture: &Fixture) -> BackupResult {
    let mut results = tokio::time::timeout(
        Duration::from_secs(30),
        fixture.engine.run_batch(vec![target()], &requester("test")),
    )
    .await
    .expect("run finishes");
    assert_eq!(results.len(), 1);
    results.remove(0)
}

async fn rows(store: &Store) -> Vec<crate::store::RunRecord> {
    store
        .recent_runs(&RunFilter {
            limit: 100,
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn missing_pvc_fails_preflight_without_creating_anything() {
    let f = fixture(Script {
        pvc: None,
        ..script()
    })
    .await;
    let result = one(&f).await;
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(result.stage, Some(Stage::Preflight));
    assert!(
        result.message.contains("PVC not found"),
        "{}",
        result.message
    );
    assert!(result.message.contains("shop/data"), "{}", result.message);
    {
        let calls = f.calls.lock().unwrap();
        assert_eq!(calls.count(&Method::POST, "/pods"), 0);
        assert_eq!(calls.count(&Method::DELETE, "/pods"), 0);
    }
    // No UID, no history row.
    assert!(rows(&f.store).await.is_empty());
    assert!(f.engine.active_runs().is_empty());
}

#[tokio::test]
async fn create_forbidden_is_not_retried_and_is_recorded() {
    let f = fixture(Script {
        creates: vec![403, 201],
        ..script()
    })
    .await;
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Create), "{}", result.message);
    assert!(result.message.contains("HTTP 403"), "{}", result.message);
    assert!(
        result
            .message
            .contains("grant create on pods in namespace shop"),
        "{}",
        result.message
    );
    assert_eq!(f.calls.lock().unwrap().count(&Method::POST, "/pods"), 1);
    let rows = rows(&f.store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, RunStatus::Failed);
    assert_eq!(rows[0].stage, Some(Stage::Create));
    assert_eq!(rows[0].pvc_uid, "uid-data");
    assert_eq!(rows[0].started_by, "cli:test");
    assert!(rows[0].finished_at.is_some());
}

#[tokio::test]
async fn transient_create_failures_are_retried_then_schedule_fails_fast() {
    let f = fixture(Script {
        creates: vec![500, 503, 201],
        ..script()
    })
    .await;
    let mut events = f.engine.subscribe();
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Schedule), "{}", result.message);
    assert!(
        result.message.contains("ErrImageNeverPull"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains("nkvm.local/nope:1"),
        "{}",
        result.message
    );
    {
        let calls = f.calls.lock().unwrap();
        assert_eq!(calls.count(&Method::POST, "/pods"), 3);
        // The helper is deleted after the failure.
        assert_eq!(calls.count(&Method::DELETE, "/pods/nkvm-backup-"), 1);
    }
    assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    assert!(f.engine.sweeper().pending().is_empty());

    let mut stages = Vec::new();
    while let Ok(event) = events.try_recv() {
        if stages.last() != Some(&(event.stage, event.status)) {
            stages.push((event.stage, event.status));
        }
    }
    assert_eq!(
        stages,
        [
            (Stage::Preflight, RunStatus::Running),
            (Stage::Create, RunStatus::Running),
            (Stage::Schedule, RunStatus::Running),
            (Stage::Cleanup, RunStatus::Running),
            (Stage::Schedule, RunStatus::Failed),
        ]
    );
    let row = &rows(&f.store).await[0];
    assert_eq!(row.stage, Some(Stage::Schedule));
    assert_eq!(row.helper_uid.as_deref(), Some("helper-uid-1"));
    assert!(
        row.helper_pod
            .as_deref()
            .unwrap()
            .starts_with("nkvm-backup-")
    );
}

#[tokio::test]
async fn a_forbidden_helper_deletion_is_a_warning_everyone_sees() {
    let f = fixture(Script {
        creates: vec![201],
        delete_status: Some(403),
        ..script()
    })
    .await;
    let mut events = f.engine.subscribe();
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Schedule), "{}", result.message);
    assert_eq!(result.warnings.len(), 1, "{:?}", result.warnings);
    assert!(
        result.warnings[0].contains("grant delete on pods in namespace shop"),
        "{}",
        result.warnings[0]
    );
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        last = Some(event);
    }
    let shown = last.unwrap().message.unwrap();
    assert!(shown.starts_with(&result.message), "{shown}");
    assert!(
        shown.contains("; warning: deleting helper pod shop/nkvm-backup-"),
        "{shown}"
    );
    let row = &rows(&f.store).await[0];
    assert_eq!(row.message.as_deref(), Some(shown.as_str()));
    let pending = f.engine.sweeper().pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].uid.as_deref(), Some("helper-uid-1"));
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_the_attempts() {
    let f = fixture(Script {
        creates: vec![500, 500, 500, 201],
        ..script()
    })
    .await;
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Create));
    assert!(
        result.message.contains("gave up after 3 attempts"),
        "{}",
        result.message
    );
    assert_eq!(f.calls.lock().unwrap().count(&Method::POST, "/pods"), 3);
}

#[tokio::test]
async fn rwop_in_use_is_refused_in_preflight() {
    let consumer = json!({
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
        "status": {"phase": "Running"},
    });
    let f = fixture(Script {
        pvc: Some(pvc(&["ReadWriteOncePod"], "16Mi")),
        pods: vec![consumer],
        ..script()
    })
    .await;
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Preflight));
    assert!(
        result.message.contains("ReadWriteOncePod"),
        "{}",
        result.message
    );
    assert!(result.message.contains("web-0"), "{}", result.message);
    assert_eq!(f.calls.lock().unwrap().count(&Method::POST, "/pods"), 0);
}

#[tokio::test]
async fn too_little_free_space_is_refused_with_numbers() {
    let f = fixture(Script {
        pvc: Some(pvc(&["ReadWriteOnce"], "8Ei")),
        ..script()
    })
    .await;
    let result = one(&f).await;
    assert_eq!(result.stage, Some(Stage::Preflight));
    assert!(
        result.message.contains("not enough free space"),
        "{}",
        result.message
    );
    assert!(result.message.contains("8Ei"), "{}", result.message);
    assert_eq!(f.calls.lock().unwrap().count(&Method::POST, "/pods"), 0);
}

#[tokio::test]
async fn a_second_run_of_a_running_pvc_is_refused_and_cancel_works() {
    let f = fixture(Script {
        hang_pvc: true,
        ..script()
    })
    .await;
    let first = f.engine.start(target(), &requester("a")).await.unwrap();
    let second = f.engine.start(target(), &requester("b")).await.unwrap_err();
    assert_eq!(second.stage, Some(Stage::Preflight));
    assert!(
        second.message.contains("already running"),
        "{}",
        second.message
    );
    assert!(second.message.contains(&first.run_id), "{}", second.message);
    assert_eq!(f.engine.active_runs().len(), 1);
    assert!(!f.engine.cancel("no-such-run"));
    assert!(f.engine.cancel(&first.run_id));
    let result = tokio::time::timeout(Duration::from_secs(10), first.handle)
        .await
        .unwrap()
        .unwrap();
    assert!(result.cancelled);
    assert_eq!(result.status, ResultStatus::Cancelled);
    assert_eq!(result.stage, Some(Stage::Preflight));
    assert_eq!(result.message, "cancelled during preflight");
    assert!(f.engine.active_runs().is_empty());
    // The PVC can be backed up again.
    assert!(f.engine.start(target(), &requester("c")).await.is_ok());
    f.engine.cancel_all();
}

#[tokio::test]
async fn batch_results_are_independent_and_in_order() {
    let f = fixture(script()).await;
    let results = f
        .engine
        .run_batch(
            vec![
                PvcRef::new("shop", "data"),
                PvcRef::new("shop", "missing"),
                PvcRef::new("shop", "data"),
            ],
            &requester("t"),
        )
        .await;
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].pvc, "data");
    assert_eq!(results[0].stage, Some(Stage::Schedule));
    assert_eq!(results[1].pvc, "missing");
    assert!(results[1].message.contains("PVC not found"));
    assert!(results[2].message.contains("already running"));
}
