//! Tests of session → connection switching against a minimal local HTTP apiserver that answers
//! `GET /version` (enough for the probe every new connection makes).

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const VERSION: &str = r#"{"major":"1","minor":"35","gitVersion":"v1.35.4","gitCommit":"x","gitTreeState":"clean","buildDate":"2026-01-01T00:00:00Z","goVersion":"go1.25","compiler":"gc","platform":"linux/amd64"}"#;

/// Serves `/version` on a loopback port until the test ends; returns the URL.
async fn fake_apiserver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \
                             {}\r\n\r\n{VERSION}",
                            VERSION.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

fn kubeconfig(contexts: &[(&str, &str)], current: &str) -> String {
    let mut clusters = String::new();
    let mut entries = String::new();
    for (name, server) in contexts {
        clusters.push_str(&format!(
            "- name: {name}\n  cluster:\n    server: {server}\n"
        ));
        entries.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: u\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{entries}\
         current-context: {current}\nusers:\n- name: u\n  user:\n    token: secret-token\n"
    )
}

fn options(kubeconfig: Option<&Path>, data_dir: &Path) -> WorkspaceOptions {
    WorkspaceOptions {
        kubeconfig: kubeconfig.map(Path::to_path_buf),
        connect: ConnectOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        },
        backup: BackupOptions {
            data_dir: data_dir.to_path_buf(),
            ..BackupOptions::default()
        },
        allow_pasted: true,
        pasted: crate::connection::PastedPolicy::default(),
        in_cluster_available: false,
        session_idle: Duration::from_hours(1),
        max_sessions: DEFAULT_MAX_SESSIONS,
    }
}

struct Fixture {
    workspace: Workspace,
    good: String,
    _dir: tempfile::TempDir,
}

/// A workspace started on context `a` of a kubeconfig file with contexts `a`, `b` (both the fake
/// apiserver) and `dead` (a closed port).
async fn fixture(adjust: impl FnOnce(&mut WorkspaceOptions)) -> Fixture {
    let good = fake_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        kubeconfig(
            &[("a", &good), ("b", &good), ("dead", "http://127.0.0.1:9")],
            "a",
        ),
    )
    .unwrap();
    let source = ConnectionSource::KubeconfigFile {
        path: Some(path.clone()),
        context: None,
    };
    let mut options = options(Some(&path), dir.path());
    adjust(&mut options);
    let cluster = connection::connect(&source, &options.connect)
        .await
        .unwrap();
    let store = Store::open_in_memory().await.unwrap();
    let workspace = Workspace::new(cluster, source, store, options).unwrap();
    Fixture {
        workspace,
        good,
        _dir: dir,
    }
}

#[tokio::test]
async fn sessions_start_on_the_default_and_share_contexts() {
    let f = fixture(|_| {}).await;
    let ws = &f.workspace;
    assert_eq!(ws.connection("s1").info().context.as_deref(), Some("a"));
    assert_eq!(ws.contexts().unwrap().current.as_deref(), Some("a"));

    let info = ws.use_context("s1", "b").await.unwrap();
    assert_eq!(info.context.as_deref(), Some("b"));
    assert_eq!(info.source, "kubeconfig");
    assert_eq!(ws.connection("s1").info().context.as_deref(), Some("b"));
    // Other sessions are not moved; a second session on `b` shares the same engine.
    assert_eq!(ws.connection("s2").info().context.as_deref(), Some("a"));
    ws.use_context("s2", "b").await.unwrap();
    assert!(Arc::ptr_eq(&ws.connection("s1"), &ws.connection("s2")));
    assert_eq!(ws.connections().await.len(), 2);

    // Choosing the default's context again is the default connection itself.
    ws.use_context("s1", "a").await.unwrap();
    assert!(Arc::ptr_eq(&ws.connection("s1"), &ws.default_connection()));
    assert_eq!(ws.session_count(), 1);
}

#[tokio::test]
async fn failed_switches_leave_the_session_where_it_was() {
    let f = fixture(|_| {}).await;
    let ws = &f.workspace;
    ws.use_context("s", "b").await.unwrap();

    let err = ws.use_context("s", "nope").await.unwrap_err();
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("a, b, dead"),
        "{err}"
    );
    let err = ws.use_context("s", "dead").await.unwrap_err();
    assert!(matches!(err, WorkspaceError::Connect(_)), "{err:?}");
    let err = ws.use_in_cluster("s").await.unwrap_err();
    assert!(matches!(err, WorkspaceError::InClusterUnavailable));
    let err = ws
        .use_pasted(
            "s",
            "users:\n- name: x\n  user:\n    exec:\n      command: sh\n".into(),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exec"), "{err}");
    assert!(!err.to_string().contains("command: sh"), "{err}");

    assert_eq!(ws.connection("s").info().context.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_pasted_kubeconfig_belongs_to_one_session() {
    let f = fixture(|_| {}).await;
    let ws = &f.workspace;
    let text = kubeconfig(&[("pasted-ctx", &f.good)], "pasted-ctx");
    let info = ws.use_pasted("s1", text.clone(), None).await.unwrap();
    assert_eq!(info.source, "pasted");
    assert_eq!(info.context.as_deref(), Some("pasted-ctx"));
    assert_eq!(ws.connection("s1").info().source, "pasted");
    assert_eq!(ws.connection("s2").info().source, "kubeconfig");
    // A second paste is a new connection, not a shared one.
    ws.use_pasted("s2", text, None).await.unwrap();
    assert!(!Arc::ptr_eq(&ws.connection("s1"), &ws.connection("s2")));

    ws.forget("s1");
    assert!(Arc::ptr_eq(&ws.connection("s1"), &ws.default_connection()));
}

#[tokio::test]
async fn pasted_kubeconfigs_can_be_disabled() {
    let f = fixture(|o| o.allow_pasted = false).await;
    let text = kubeconfig(&[("p", &f.good)], "p");
    let err = f.workspace.use_pasted("s", text, None).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::PastedDisabled), "{err:?}");
}

#[tokio::test]
async fn idle_sessions_expire_and_the_oldest_is_evicted() {
    let f = fixture(|o| o.max_sessions = 2).await;
    let ws = &f.workspace;
    ws.use_context("s1", "b").await.unwrap();
    ws.use_context("s2", "b").await.unwrap();
    ws.use_context("s3", "b").await.unwrap();
    assert_eq!(ws.session_count(), 2);
    assert_eq!(ws.connection("s1").info().context.as_deref(), Some("a"));
    assert_eq!(ws.connection("s3").info().context.as_deref(), Some("b"));
    assert_eq!(ws.expire_idle(), 0);

    let f = fixture(|o| o.session_idle = Duration::ZERO).await;
    let ws = &f.workspace;
    ws.use_context("s1", "b").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(ws.expire_idle(), 1);
    assert_eq!(ws.connection("s1").info().context.as_deref(), Some("a"));
    ws.use_context("s2", "b").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // An expired session reads as the default even before the sweep.
    assert_eq!(ws.connection("s2").info().context.as_deref(), Some("a"));
}

#[tokio::test]
async fn a_server_without_a_kubeconfig_file_has_no_contexts() {
    let good = fake_apiserver().await;
    let dir = tempfile::tempdir().unwrap();
    let text = kubeconfig(&[("x", &good)], "x");
    let source = ConnectionSource::KubeconfigText {
        text: text.clone(),
        context: None,
    };
    let opts = options(None, dir.path());
    let cluster = connection::connect(&source, &opts.connect).await.unwrap();
    let store = Store::open_in_memory().await.unwrap();
    let ws = Workspace::new(cluster, source, store, opts).unwrap();
    assert!(matches!(ws.contexts(), Err(WorkspaceError::NoKubeconfig)));
    assert!(matches!(
        ws.use_context("s", "x").await,
        Err(WorkspaceError::NoKubeconfig)
    ));
    assert_eq!(ws.use_default("s").context.as_deref(), Some("x"));
}

/// A port scanner's view of pasting: a closed port, a port that speaks something else than
/// Kubernetes, and a silent port all fail with one wording (before, each cause had its own text:
/// "connection refused", a timeout, a parse error).
#[tokio::test]
async fn pasted_connection_failures_are_worded_alike() {
    let f = fixture(|_| {}).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let not_kubernetes = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk_address = not_kubernetes.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = not_kubernetes.accept().await {
            let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let mut messages = Vec::new();
    for server in [
        "http://127.0.0.1:9".to_owned(),
        format!("http://{junk_address}"),
        format!("http://{}", silent.local_addr().unwrap()),
    ] {
        let text = kubeconfig(&[("p", &server)], "p");
        let err = f.workspace.use_pasted("s", text, None).await.unwrap_err();
        assert!(
            matches!(err, WorkspaceError::PastedUnreachable),
            "{server}: {err:?}"
        );
        messages.push(err.to_string());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test]
async fn pasted_proxy_urls_and_server_allowlists_are_enforced() {
    let f = fixture(|o| o.pasted.api_servers = vec!["127.0.0.2".to_owned()]).await;
    let text = kubeconfig(&[("p", &f.good)], "p");
    let err = f.workspace.use_pasted("s", text, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            WorkspaceError::PastedPolicy(connection::PolicyError::ServerNotAllowed { .. })
        ),
        "{err:?}"
    );
    let f = fixture(|_| {}).await;
    let text = kubeconfig(&[("p", &f.good)], "p").replace(
        &format!("    server: {}\n", f.good),
        &format!(
            "    server: {}\n    proxy-url: http://127.0.0.1:3128\n",
            f.good
        ),
    );
    let err = f.workspace.use_pasted("s", text, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            WorkspaceError::PastedPolicy(connection::PolicyError::ProxyUrl { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn each_connection_sees_the_runs_of_its_own_cluster() {
    let f = fixture(|_| {}).await;
    let ws = &f.workspace;
    let default = ws.default_connection();
    // The default connection records its identity and also sees runs recorded without one.
    let identity = default.info().identity.clone();
    assert!(identity.starts_with(&f.good), "{identity}");
    assert_eq!(default.backups.options().cluster.as_ref(), Some(&identity));
    assert_eq!(
        default.scope(),
        RunScope {
            cluster: identity.clone(),
            unrecorded: true
        }
    );
    // Another context of the same cluster (same address and CA) is the same cluster.
    ws.use_context("s1", "b").await.unwrap();
    assert_eq!(ws.connection("s1").scope(), default.scope());
    // A pasted kubeconfig for another apiserver is another cluster: its own runs only.
    let other = fake_apiserver().await;
    let text = kubeconfig(&[("elsewhere", &other)], "elsewhere");
    ws.use_pasted("s2", text, None).await.unwrap();
    let pasted = ws.connection("s2");
    assert!(pasted.info().identity.starts_with(&other));
    assert_ne!(pasted.info().identity, identity);
    assert_eq!(
        pasted.scope(),
        RunScope {
            cluster: pasted.info().identity.clone(),
            unrecorded: false
        }
    );
    assert_eq!(
        pasted.backups.options().cluster.as_ref(),
        Some(&pasted.info().identity)
    );
}
