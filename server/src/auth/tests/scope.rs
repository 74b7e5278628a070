//! Tenant isolation through the real router: a session sees, in the history, in the live panel's
//! runs and in downloads, only the runs of its connection's cluster (and runs recorded before
//! identities were, which belong to the default connection). Before, every run of the data
//! directory was listed and downloadable whatever cluster it came from.

use nkvm_engine::domain::RunStatus;
use nkvm_engine::store::{NewRun, RunUpdate};

use super::*;

/// Records a succeeded backup `run_id` of `cluster` with its three files in the artifacts
/// directory (a local path, as rows without a destination have); returns its row id.
async fn succeeded_run(server: &Server, run_id: &str, cluster: Option<&str>) -> i64 {
    let connection = server.workspace.default_connection();
    let pvc_dir = connection
        .backups
        .options()
        .artifacts_dir()
        .join("shop")
        .join(run_id);
    std::fs::create_dir_all(&pvc_dir).unwrap();
    let archive = pvc_dir.join("20261129T010203.456Z.tar.gz");
    std::fs::write(&archive, b"gz").unwrap();
    std::fs::write(pvc_dir.join("20261129T010203.456Z.tar.gz.sha256"), b"sum").unwrap();
    std::fs::write(pvc_dir.join("20261129T010203.456Z.manifest.json"), b"{}").unwrap();
    let store = server.workspace.store();
    let id = store
        .insert_run(&NewRun {
            run_id: run_id.to_owned(),
            pvc_uid: format!("uid-{run_id}"),
            namespace: "shop".to_owned(),
            pvc: run_id.to_owned(),
            started_by: "test".to_owned(),
            started_at: jiff::Timestamp::now(),
            cluster: cluster.map(str::to_owned),
        })
        .await
        .unwrap();
    let update = RunUpdate {
        status: Some(RunStatus::Succeeded),
        finished_at: Some(jiff::Timestamp::now()),
        artifact: Some(archive.display().to_string()),
        ..RunUpdate::default()
    };
    store.update_run(id, &update).await.unwrap();
    id
}

async fn logged_in() -> (Server, String) {
    let server = server(false).await;
    let login = send(
        &server,
        request("POST", "/auth/login", &login_body("ada", PASSWORD)),
    )
    .await;
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (server, cookie)
}

async fn call(
    server: &Server,
    cookie: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let mut request = request(method, path, body);
    request
        .headers_mut()
        .insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
    let response = send(server, request).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_session_sees_and_downloads_only_the_runs_of_its_cluster() {
    let (server, cookie) = logged_in().await;
    let identity = server
        .workspace
        .default_connection()
        .info()
        .identity
        .clone();
    let mine = succeeded_run(&server, "run-mine", Some(&identity)).await;
    let old = succeeded_run(&server, "run-old", None).await;
    let theirs = succeeded_run(
        &server,
        "run-theirs",
        Some("https://elsewhere:6443 ca:system"),
    )
    .await;

    // Downloads: this cluster's runs and the runs recorded without an identity are served; the
    // other cluster's run is answered like an id that does not exist.
    for id in [mine, old] {
        let (status, body) = call(
            &server,
            &cookie,
            "GET",
            &format!("/download/{id}/archive"),
            "",
        )
        .await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "gz"), "run {id}");
    }
    for kind in ["archive", "sha256", "manifest"] {
        let (status, body) = call(
            &server,
            &cookie,
            "GET",
            &format!("/download/{theirs}/{kind}"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{kind}: {body}");
        let (unknown_status, unknown) = call(
            &server,
            &cookie,
            "GET",
            &format!("/download/999999/{kind}"),
            "",
        )
        .await;
        assert_eq!(unknown_status, StatusCode::NOT_FOUND);
        assert_eq!(body.replace(&theirs.to_string(), "999999"), unknown);
    }

    // The history page's rows.
    let (status, history) = call(&server, &cookie, "POST", "/api/history", "query[page]=1").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert!(
        history.contains("run-mine") && history.contains("run-old"),
        "{history}"
    );
    assert!(!history.contains("run-theirs"), "{history}");

    // The live panel's runs (finished in the last hour).
    let (status, runs) = call(&server, &cookie, "POST", "/api/backups/runs", "").await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert!(
        runs.contains("run-mine") && runs.contains("run-old"),
        "{runs}"
    );
    assert!(!runs.contains("run-theirs"), "{runs}");

    // The restore page's source backup.
    let (_, source) = call(
        &server,
        &cookie,
        "POST",
        "/api/restores/source",
        "run_id=run-theirs",
    )
    .await;
    assert!(source.contains("no backup run has id"), "{source}");
    let (status, source) = call(
        &server,
        &cookie,
        "POST",
        "/api/restores/source",
        "run_id=run-mine",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{source}");
    assert!(source.contains("run-mine"), "{source}");
}
