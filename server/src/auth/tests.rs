//! The web server's authentication, end to end through the real router (no cluster needed: the
//! connection is built from a kubeconfig and never used): anonymous refusals on every route, the
//! login cookie's flags, rate limiting, cross-origin refusals, and that neither passwords nor session
//! tokens reach the logs.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use nkvm_engine::auth::users::{HashParams, Users, hash_password_with_params};
use nkvm_engine::connection::{self, ConnectOptions, ConnectionSource};
use nkvm_engine::store::Store;
use nkvm_engine::workspace::{Workspace, WorkspaceOptions};
use tower::ServiceExt as _;

use super::*;
use crate::web::{WebState, leptos_options, router};

mod live;
mod scope;

const PASSWORD: &str = "correct horse battery staple";
const HOST: &str = "nkvm.test:8080";

fn fast_hash(password: &str) -> String {
    hash_password_with_params(
        password,
        HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap()
}

pub(super) struct Server {
    pub(super) app: axum::Router,
    pub(super) workspace: Workspace,
    _dir: tempfile::TempDir,
}

/// A workspace whose cluster connection is built from a kubeconfig and never used.
async fn test_workspace(dir: &std::path::Path) -> Workspace {
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n";
    let source = ConnectionSource::KubeconfigText {
        text: kubeconfig.to_owned(),
        context: None,
    };
    let cluster = connection::connect(&source, &ConnectOptions::default())
        .await
        .unwrap();
    let store = Store::open(&dir.join("nkvm.db")).await.unwrap();
    let options = WorkspaceOptions {
        kubeconfig: None,
        connect: ConnectOptions::default(),
        backup: nkvm_engine::backup::BackupOptions {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        },
        allow_pasted: false,
        pasted: nkvm_engine::connection::PastedPolicy::default(),
        in_cluster_available: false,
        session_idle: std::time::Duration::from_hours(1),
        max_sessions: 100,
    };
    Workspace::new(cluster, source, store, options).unwrap()
}

async fn server(secure_cookie: bool) -> Server {
    let users = Users::from_text(&format!(
        "users:\n- {{name: ada, role: operator, password_hash: \"{}\"}}\n",
        fast_hash(PASSWORD)
    ))
    .unwrap();
    server_with(AuthMode::Local(users), secure_cookie).await
}

/// Makes `tracing` ask every thread's subscriber about each call site. Without a global
/// subscriber, a call site first reached on a thread that has none (another test) while only one
/// test captures logs is cached as "nobody listens", and the capturing test misses its events.
fn listen_on_every_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A global subscriber another test set first does the same.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
}

/// The real router with `mode`, a fresh data directory and a workspace that needs no cluster.
pub(super) async fn server_with(mode: AuthMode, secure_cookie: bool) -> Server {
    server_behind(mode, secure_cookie, Vec::new()).await
}

/// [`server_with`] behind the proxies `trusted`, the site plain http.
pub(super) async fn server_behind(
    mode: AuthMode,
    secure_cookie: bool,
    trusted: Vec<Cidr>,
) -> Server {
    server_full(mode, secure_cookie, trusted, false).await
}

/// The real router; `https`: users reach it over TLS (HSTS, https origins).
pub(super) async fn server_full(
    mode: AuthMode,
    secure_cookie: bool,
    trusted: Vec<Cidr>,
    https: bool,
) -> Server {
    listen_on_every_thread();
    let dir = tempfile::tempdir().unwrap();
    let workspace = test_workspace(dir.path()).await;
    let auth = Auth::new(
        mode,
        SessionStore::default(),
        LoginLimiter::default(),
        workspace.clone(),
        secure_cookie,
        trusted,
        load::VerifyGate::default(),
    );
    let context = nkvm_app::ssr::AppContext {
        workspace: workspace.clone(),
        inventory: nkvm_engine::inventory::InventoryOptions::default(),
        stale_after: None,
        live_inventory: true,
        schedules: nkvm_app::ssr::ScheduleSettings::default(),
    };
    let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let state = WebState {
        context,
        leptos_options: leptos_options(listen, dir.path()),
        auth,
        ops: crate::ops::Ops::default(),
        site: crate::web::SitePolicy {
            hosts: crate::web::AllowedHosts::parse(["nkvm.test"]).unwrap(),
            https,
            trusted_proxies: Vec::new(),
        },
    };
    Server {
        app: router(state),
        workspace,
        _dir: dir,
    }
}

pub(super) fn request(method: &str, path: &str, body: &str) -> HttpRequest<Body> {
    request_to(HOST, "http", method, path, body)
}

/// A request to `host` from a page of `scheme://host`.
pub(super) fn request_to(
    host: &str,
    scheme: &str,
    method: &str,
    path: &str,
    body: &str,
) -> HttpRequest<Body> {
    let mut request = HttpRequest::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("origin", format!("{scheme}://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

pub(super) async fn send(server: &Server, request: HttpRequest<Body>) -> axum::response::Response {
    server.app.clone().oneshot(request).await.unwrap()
}

pub(super) fn location(response: &axum::response::Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn login_body(user: &str, password: &str) -> String {
    format!(
        "username={user}&password={}&next=%2Fhistory",
        nkvm_app::table::encode_component(password)
    )
}

#[tokio::test]
async fn anonymous_requests_are_refused_on_every_route() {
    let server = server(false).await;
    for path in ["/", "/history", "/connect", "/audit", "/no-such-page"] {
        let mut page = request("GET", path, "");
        page.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let response = send(&server, page).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&response).starts_with("/login?next=%2F"), "{path}");
    }
    for (method, path) in [
        ("POST", "/api/inventory"),
        ("POST", "/api/backups/start"),
        ("POST", "/api/connect/paste"),
        ("POST", "/api/audit"),
        ("GET", "/download/1/archive"),
        ("GET", "/audit.csv"),
        ("POST", "/auth/logout"),
    ] {
        let response = send(&server, request(method, path, "")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    let health = send(&server, request("GET", "/healthz", "")).await;
    assert_eq!(health.status(), StatusCode::OK);
    let login = send(&server, request("GET", "/login", "")).await;
    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_login_sets_a_hardened_cookie_that_opens_the_app() {
    // This server is reached over https.
    fn request(method: &str, path: &str, body: &str) -> HttpRequest<Body> {
        request_to(HOST, "https", method, path, body)
    }
    let users = Users::from_text(&format!(
        "users:\n- {{name: ada, role: operator, password_hash: \"{}\"}}\n",
        fast_hash(PASSWORD)
    ))
    .unwrap();
    let server = server_full(AuthMode::Local(users), true, Vec::new(), true).await;
    let response = send(
        &server,
        request("POST", "/auth/login", &login_body("ada", PASSWORD)),
    )
    .await;
    assert_eq!(
        response.headers()[header::STRICT_TRANSPORT_SECURITY],
        crate::web::site::HSTS
    );
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/history");
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-nkvm_session="), "{cookie}");
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    let token = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    let mut whoami = request("POST", "/api/whoami", "");
    whoami.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SECURE_SESSION_COOKIE}={token}")).unwrap(),
    );
    let response = send(&server, whoami).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("\"ada\"") && text.contains("\"operator\""),
        "{text}"
    );

    // Logout ends the session server-side: the old cookie opens nothing any more.
    let mut logout = request("POST", "/auth/logout", "");
    logout.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SECURE_SESSION_COOKIE}={token}")).unwrap(),
    );
    let response = send(&server, logout).await;
    assert_eq!(location(&response), "/login");
    let mut again = request("POST", "/api/whoami", "");
    again.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SECURE_SESSION_COOKIE}={token}")).unwrap(),
    );
    assert_eq!(
        send(&server, again).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited() {
    let server = server(false).await;
    for attempt in 1..=5 {
        let response = send(
            &server,
            request("POST", "/auth/login", &login_body("ada", "nope")),
        )
        .await;
        assert!(
            location(&response).starts_with("/login?error=invalid"),
            "attempt {attempt}: {}",
            location(&response)
        );
    }
    // The sixth try is refused before the password is even checked, also the right one.
    let response = send(
        &server,
        request("POST", "/auth/login", &login_body("ada", PASSWORD)),
    )
    .await;
    assert_eq!(location(&response), "/login?error=limited");
    let retry: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert!(response.headers().get(header::SET_COOKIE).is_none());
}

/// A login from the test peer (192.0.2.7) carrying `X-Forwarded-For: forwarded`.
fn forwarded_login(name: &str, password: &str, forwarded: &str) -> HttpRequest<Body> {
    let mut login = request("POST", "/auth/login", &login_body(name, password));
    login
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_str(forwarded).unwrap());
    login
}

async fn local_server_behind(trusted: &str) -> Server {
    let users = Users::from_text(&format!(
        "users:\n- {{name: ada, role: operator, password_hash: \"{}\"}}\n",
        fast_hash(PASSWORD)
    ))
    .unwrap();
    let trusted = if trusted.is_empty() {
        Vec::new()
    } else {
        Cidr::parse_list(trusted).unwrap()
    };
    server_behind(AuthMode::Local(users), false, trusted).await
}

/// The lockout of a named admin: behind the Ingress controller (192.0.2.7, the test peer), one
/// client's junk logins as `ada` slow that client only; `ada` herself, from another client behind
/// the same controller, logs in with the right password at once. Before the limiter counted pairs,
/// the five failures blocked the name `ada` for everyone.
#[tokio::test]
async fn junk_logins_for_a_name_do_not_lock_that_user_out() {
    let server = local_server_behind("192.0.2.0/24").await;
    for attempt in 1..=5 {
        let response = send(&server, forwarded_login("ada", "nope", "203.0.113.5")).await;
        assert!(
            location(&response).starts_with("/login?error=invalid"),
            "attempt {attempt}: {}",
            location(&response)
        );
    }
    // The attacker is slowed: the next try waits, even with the right password...
    let response = send(&server, forwarded_login("ada", PASSWORD, "203.0.113.5")).await;
    assert_eq!(location(&response), "/login?error=limited");
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    // ...but ada, behind the same proxy, logs in.
    let response = send(&server, forwarded_login("ada", PASSWORD, "198.51.100.20")).await;
    assert!(
        !location(&response).starts_with("/login"),
        "{}",
        location(&response)
    );
    assert!(response.headers().get(header::SET_COOKIE).is_some());
    // The attacker's pair is still slowed after her success.
    let response = send(&server, forwarded_login("ada", "nope", "203.0.113.5")).await;
    assert_eq!(location(&response), "/login?error=limited");
    let events = server
        .workspace
        .store()
        .audit_events(&nkvm_engine::audit::AuditFilter::default())
        .await
        .unwrap();
    let login = events
        .iter()
        .find(|e| e.action == nkvm_engine::audit::AuditAction::Login)
        .unwrap();
    assert_eq!(login.source.as_deref(), Some("198.51.100.20"));
    assert!(
        events
            .iter()
            .any(|e| e.source.as_deref() == Some("203.0.113.5"))
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_changes_nothing() {
    let server = local_server_behind("").await;
    for attempt in 1..=5 {
        // A client rotating forged addresses is still one client.
        let forged = format!("203.0.113.{attempt}");
        send(&server, forwarded_login("ada", "nope", &forged)).await;
    }
    let response = send(&server, forwarded_login("ada", PASSWORD, "198.51.100.20")).await;
    assert_eq!(location(&response), "/login?error=limited");
}

#[tokio::test]
async fn cross_origin_logins_and_upgrades_are_refused() {
    let server = server(false).await;
    let mut evil = request("POST", "/auth/login", &login_body("ada", PASSWORD));
    evil.headers_mut().insert(
        header::ORIGIN,
        HeaderValue::from_static("https://evil.example"),
    );
    assert_eq!(send(&server, evil).await.status(), StatusCode::FORBIDDEN);
    let mut upgrade = request("GET", "/api/backups/updates", "");
    upgrade.headers_mut().insert(
        header::ORIGIN,
        HeaderValue::from_static("https://evil.example"),
    );
    upgrade
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert_eq!(send(&server, upgrade).await.status(), StatusCode::FORBIDDEN);
}

/// DNS rebinding: a page of `http://evil.example` whose name now resolves to nkvm sends its own
/// host name (and a matching Origin); with `--auth none` it would otherwise act as the admin.
#[tokio::test]
async fn a_rebound_host_name_is_refused_and_loopback_names_are_served() {
    let server = server_with(AuthMode::Disabled, false).await;
    let evil = "evil.example:8080";
    for (method, path) in [
        ("POST", "/api/whoami"),
        ("POST", "/api/inventory"),
        ("POST", "/api/backups/start"),
        ("GET", "/download/1/archive"),
        ("GET", "/audit.csv"),
        ("GET", "/"),
    ] {
        let response = send(&server, request_to(evil, "http", method, path, "")).await;
        assert_eq!(
            response.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "{method} {path}"
        );
    }
    let mut upgrade = request_to(evil, "http", "GET", "/api/backups/updates", "");
    upgrade
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    upgrade
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    assert_eq!(
        send(&server, upgrade).await.status(),
        StatusCode::MISDIRECTED_REQUEST
    );
    // The probes answer whatever the host (kubelet and Prometheus use the pod's address).
    let health = send(&server, request_to(evil, "http", "GET", "/healthz", "")).await;
    assert_eq!(health.status(), StatusCode::OK);
    // Loopback names, addresses and the configured name are served.
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", HOST] {
        let response = send(&server, request_to(host, "http", "POST", "/api/whoami", "")).await;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub(super) struct Captured(pub(super) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `work` on a fresh runtime with every `tracing` event (TRACE and up) captured; returns its
/// output and the captured log text.
pub(super) fn logs_of<T, F: std::future::Future<Output = T>>(
    work: impl FnOnce() -> F,
) -> (T, String) {
    listen_on_every_thread();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let output = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work())
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (output, logs)
}

#[test]
fn passwords_and_tokens_stay_out_of_the_logs() {
    let (cookie, logs) = logs_of(|| async {
        let server = server(false).await;
        send(
            &server,
            request("POST", "/auth/login", &login_body("ada", "a-wrong-secret")),
        )
        .await;
        let ok = send(
            &server,
            request("POST", "/auth/login", &login_body("ada", PASSWORD)),
        )
        .await;
        ok.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned()
    });
    let token = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    assert!(logs.contains("login"), "the login is logged: {logs}");
    for secret in [PASSWORD, "a-wrong-secret", token.as_str()] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}

/// A flood of rate-limited logins from one address writes one audit row, not one per request
/// (before, each refused request added a row, forever).
#[tokio::test]
async fn rate_limited_floods_write_one_audit_row_per_address() {
    let server = server(false).await;
    for _ in 0..5 {
        send(
            &server,
            request("POST", "/auth/login", &login_body("ada", "nope")),
        )
        .await;
    }
    for _ in 0..30 {
        let response = send(
            &server,
            request("POST", "/auth/login", &login_body("ada", "nope")),
        )
        .await;
        assert_eq!(location(&response), "/login?error=limited");
    }
    let events = server
        .workspace
        .store()
        .audit_events(&nkvm_engine::audit::AuditFilter::default())
        .await
        .unwrap();
    let limited: Vec<_> = events
        .iter()
        .filter(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.contains("rate limited"))
        })
        .collect();
    assert_eq!(limited.len(), 1, "{limited:#?}");
    assert_eq!(limited[0].source.as_deref(), Some("192.0.2.7"));
}

/// `/audit.csv` is streamed from the database in chunks (before, the whole trail was one String
/// built in memory and sent as one piece).
#[tokio::test]
async fn the_audit_export_is_streamed_in_chunks() {
    use http_body_util::BodyExt as _;
    let server = server_with(AuthMode::Disabled, false).await;
    let store = server.workspace.store();
    for i in 0..1500 {
        store
            .record_audit(
                &nkvm_engine::audit::AuditEvent::new(
                    "ada",
                    nkvm_engine::audit::AuditAction::Download,
                    nkvm_engine::audit::AuditOutcome::Success,
                )
                .with_target(format!("ns/pvc-{i} run {i} archive"))
                .with_detail("x".repeat(200)),
            )
            .await
            .unwrap();
    }
    let response = send(&server, request("GET", "/audit.csv", "")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut frames, mut text) = (0, Vec::new());
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            text.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with(nkvm_engine::audit::CSV_HEADER),
        "{}",
        &text[..80]
    );
    // Header, 1500 rows and the export's own row.
    assert_eq!(text.matches("\r\n").count(), 1502);
    assert!(text.contains("ns/pvc-1499 run 1499"));
    assert!(frames >= 4, "{frames} body frames for {} bytes", text.len());
}

/// Responses are compressed for browsers that accept it, streamed ones included: the compressed
/// audit export decodes to the whole trail (before the audit stream was fused, the compression
/// polled it after its end and the worker panicked, cutting the download).
#[tokio::test]
async fn compressed_responses_decode_to_the_whole_body() {
    use http_body_util::BodyExt as _;
    use std::io::Read as _;
    let server = server_with(AuthMode::Disabled, false).await;
    let mut request = request("GET", "/audit.csv", "");
    request.headers_mut().insert(
        header::ACCEPT_ENCODING,
        axum::http::HeaderValue::from_static("gzip"),
    );
    let response = send(&server, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let compressed = response.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.starts_with(nkvm_engine::audit::CSV_HEADER), "{text}");
    assert!(text.ends_with("\r\n"), "{text}");
}

/// A second login from the same browser ends the session it had (before, both stayed valid).
#[tokio::test]
async fn a_new_login_ends_the_browsers_previous_session() {
    let server = server(false).await;
    let token_of = |response: &axum::response::Response| {
        response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .map(|(_, v)| v.to_owned())
            .unwrap()
    };
    let with_cookie = |mut request: HttpRequest<Body>, token: &str| {
        request.headers_mut().insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}")).unwrap(),
        );
        request
    };
    let first = send(
        &server,
        request("POST", "/auth/login", &login_body("ada", PASSWORD)),
    )
    .await;
    let old = token_of(&first);
    let second = send(
        &server,
        with_cookie(
            request("POST", "/auth/login", &login_body("ada", PASSWORD)),
            &old,
        ),
    )
    .await;
    let new = token_of(&second);
    assert_ne!(old, new);
    let whoami = |token: &str| with_cookie(request("POST", "/api/whoami", ""), token);
    assert_eq!(
        send(&server, whoami(&old)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&server, whoami(&new)).await.status(), StatusCode::OK);
}
