//! The web server behind `nkvm serve`: the Leptos app (server-rendered, then hydrated), its server
//! functions, archive downloads, the site files (`pkg/nkvm.js`, `pkg/nkvm_bg.wasm`, `pkg/nkvm.css`),
//! `/healthz` (liveness), `/readyz` and `/metrics` ([`crate::ops`]), the browser-session cookie, baseline security headers, and a graceful shutdown on
//! SIGINT/SIGTERM.
//!
//! The site directory is built by `scripts/build-web.sh` and found at runtime: `LEPTOS_SITE_ROOT`
//! when set, else a `site` directory next to the binary, else one beside its parent directory (the
//! cargo layout `target/debug/nkvm` + `target/site`), else `target/site`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt as _;
use leptos::config::{Env, LeptosOptions};
use leptos::prelude::provide_context;
use leptos_axum::{
    LeptosRoutes, file_and_error_handler_with_context, generate_route_list, site_pkg_dir_service,
    site_pkg_dir_service_route_path,
};
use nkvm_app::ssr::{AppContext, Caller, SessionId};
use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
use nkvm_engine::auth::Role;

use crate::auth::{self, Auth};

pub mod site;

use nkvm_app::{App, OUTPUT_NAME, shell};
use nkvm_engine::download::{self, DownloadKind};
pub use site::{AllowedHosts, SitePolicy};

/// Environment variable naming the site directory (the one holding `pkg/`).
pub const SITE_ROOT_ENV: &str = "LEPTOS_SITE_ROOT";

/// Bytes read from a destination per chunk of a download.
const DOWNLOAD_CHUNK: usize = 64 << 10;

/// Everything a request handler may need: the app's context and Leptos' options.
#[derive(Clone)]
pub struct WebState {
    pub context: AppContext,
    pub leptos_options: LeptosOptions,
    pub auth: Auth,
    /// `/metrics` and who may read it.
    pub ops: crate::ops::Ops,
    /// The host names and scheme this server answers to.
    pub site: SitePolicy,
}

impl FromRef<WebState> for Auth {
    fn from_ref(state: &WebState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<WebState> for LeptosOptions {
    fn from_ref(state: &WebState) -> Self {
        state.leptos_options.clone()
    }
}

/// Serves the web app on `listen` until SIGINT or SIGTERM, then finishes in-flight requests.
///
/// # Errors
/// When the address cannot be bound or the server fails while running.
pub async fn serve(
    listen: SocketAddr,
    context: AppContext,
    auth: Auth,
    ops: crate::ops::Ops,
    site: SitePolicy,
) -> anyhow::Result<()> {
    let site_root = site_root();
    let wasm = site_root.join("pkg").join(format!("{OUTPUT_NAME}_bg.wasm"));
    if !wasm.is_file() {
        tracing::warn!(
            missing = %wasm.display(),
            "site files not found: pages render but will not hydrate; run scripts/build-web.sh or set {SITE_ROOT_ENV}"
        );
    }
    let state = WebState {
        context,
        leptos_options: leptos_options(listen, &site_root),
        auth,
        ops,
        site,
    };
    let app = router(state);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(
        site_root = %site_root.display(),
        "nkvm web server listening on http://{address}"
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("web server failed")?;
    tracing::info!("web server stopped");
    Ok(())
}

/// The router: `/healthz`, the site's `pkg/` files, server functions and pages, and a 404 page.
pub fn router(state: WebState) -> Router {
    let options = state.leptos_options.clone();
    let routes = generate_route_list(App);

    let route_context = {
        let context = state.context.clone();
        move || {
            provide_context(context.clone());
            // The CSP nonce of this response (set by `security_headers`) for the inline scripts.
            if let Some(nonce) = leptos::prelude::use_context::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<CspNonce>().cloned())
            {
                provide_context(leptos::nonce::Nonce::from_value(nonce.0));
            }
        }
    };
    let fallback_context = route_context.clone();
    let page = {
        let options = options.clone();
        move || shell(options.clone())
    };

    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::ops::readyz))
        .route("/metrics", get(crate::ops::metrics_main))
        .route("/download/{id}/{kind}", get(download_file))
        .route("/audit.csv", get(audit_csv))
        .route("/login", get(auth::login_page))
        .route("/auth/login", axum::routing::post(auth::login))
        .route("/auth/logout", axum::routing::post(auth::logout))
        .route("/auth/oidc/start", get(auth::oidc::start))
        .route("/auth/oidc/callback", get(auth::oidc::callback))
        .route_service(
            &site_pkg_dir_service_route_path(&options),
            site_pkg_dir_service(&options),
        )
        .leptos_routes_with_context(&state, routes, route_context, page)
        .fallback(file_and_error_handler_with_context::<WebState, _>(
            fallback_context,
            shell,
        ))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::client_address,
        ))
        .layer(middleware::from_fn_with_state(
            state.site.clone(),
            site::site_guard,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(compression())
        .with_state(state)
}

/// Compresses responses the browser accepts compressed (zstd, brotli or gzip; brotli and zstd at
/// a fast level), except archives, which are gzip already, and bodies under 1 KiB. Safe from
/// BREACH-style attacks: no page carries a secret a cross-site request could make it reflect
/// (the session is an HttpOnly cookie, requests are checked by Origin, not by a token in the page).
fn compression()
-> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    use tower_http::compression::{CompressionLayer, CompressionLevel, DefaultPredicate};
    let predicate = DefaultPredicate::new()
        .and(SizeAbove::new(1024))
        .and(NotForContentType::const_new("application/gzip"));
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(predicate)
}

async fn audit(context: &AppContext, event: AuditEvent) {
    nkvm_app::ssr::audit(context, event).await;
}

/// `GET /audit.csv`: the whole audit trail as CSV (admins only; the export is itself audited as a
/// download).
async fn audit_csv(
    State(state): State<WebState>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let Some(axum::Extension(caller)) = caller else {
        return (StatusCode::UNAUTHORIZED, "not logged in").into_response();
    };
    if !caller.role.allows(Role::Admin) {
        audit(
            &state.context,
            AuditEvent::new(
                &caller.user,
                AuditAction::AccessDenied,
                AuditOutcome::Denied,
            )
            .with_target("audit export")
            .with_source(caller.source.clone()),
        )
        .await;
        return (
            StatusCode::FORBIDDEN,
            "the audit export needs the admin role",
        )
            .into_response();
    }
    audit(
        &state.context,
        AuditEvent::new(&caller.user, AuditAction::Download, AuditOutcome::Success)
            .with_target("audit export")
            .with_source(caller.source.clone()),
    )
    .await;
    // Streamed from the database in chunks: the trail is never held in memory as a whole. A
    // database failure midway ends the body early (the client sees a truncated download).
    let chunks = state
        .context
        .workspace
        .store()
        .audit_csv_stream()
        .inspect_err(|error| tracing::error!(%error, "reading the audit trail failed"));
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"nkvm-audit.csv\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A per-response random value that marks the page's own inline scripts for the CSP.
#[derive(Debug, Clone)]
struct CspNonce(String);

/// The Content-Security-Policy of every response: scripts only from this origin or carrying the
/// response's nonce (Leptos' hydration and resource scripts), wasm compilation allowed, nothing
/// else from anywhere else, no framing, forms and base URLs pinned to this origin.
fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Headers every response carries: the CSP (with a fresh nonce), no framing, no MIME sniffing, no
/// referrer to other origins.
async fn security_headers(mut request: Request, next: Next) -> Response {
    let nonce = match nkvm_engine::auth::random_hex::<16>() {
        Ok(nonce) => nonce,
        Err(error) => {
            tracing::error!(%error, "no randomness for a CSP nonce");
            return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness available").into_response();
        }
    };
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /download/{id}/{archive|sha256|manifest}`: streams a file of history row `id` from the
/// destination holding it (no temporary copy). Where it is comes from the history row, never from
/// the request (an old row's local path must resolve inside the artifacts directory); namespaces
/// outside the allowlist, and runs of another cluster connection than the session's, are not
/// served (404, like an unknown id).
async fn download_file(
    State(state): State<WebState>,
    caller: Option<axum::Extension<Caller>>,
    session: Option<axum::Extension<SessionId>>,
    UrlPath((id, kind)): UrlPath<(String, String)>,
) -> Response {
    let refuse = |status: StatusCode, message: String| (status, message).into_response();
    let Some(axum::Extension(caller)) = caller else {
        return refuse(StatusCode::UNAUTHORIZED, "not logged in".to_owned());
    };
    if !caller.role.allows(Role::Operator) {
        audit(
            &state.context,
            AuditEvent::new(
                &caller.user,
                AuditAction::AccessDenied,
                AuditOutcome::Denied,
            )
            .with_target(format!("download {id}/{kind}"))
            .with_detail(format!("role {} < operator", caller.role))
            .with_source(caller.source.clone()),
        )
        .await;
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "downloads need the operator role; you are {} ({})",
                caller.user, caller.role
            ),
        );
    }
    let Ok(id) = id.parse::<i64>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the run id must be a number".to_owned(),
        );
    };
    let kind = match kind.parse::<DownloadKind>() {
        Ok(kind) => kind,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let context = &state.context;
    // The session's connection: runs of another cluster answer 404 like unknown ids.
    let engine = match &session {
        Some(axum::Extension(SessionId(session))) => context.workspace.connection(session),
        None => context.workspace.default_connection(),
    };
    let scope = engine.scope();
    let reach = download::Reach {
        namespaces: context.allowlist(),
        scope: Some(&scope),
    };
    let opened = download::open_by_id(
        context.workspace.store(),
        engine.backups.destinations(),
        id,
        kind,
        reach,
    )
    .await;
    match opened {
        Ok(file) => {
            tracing::info!(id, %kind, file = %file.file_name, user = %caller.user, "download");
            audit(
                context,
                AuditEvent::new(&caller.user, AuditAction::Download, AuditOutcome::Success)
                    .with_target(format!(
                        "{}/{} run {} {kind}",
                        file.run.namespace, file.run.pvc, file.run.run_id
                    ))
                    .with_source(caller.source.clone()),
            )
            .await;
            let disposition = format!(
                "attachment; filename=\"{}\"",
                file.file_name.replace(['"', '\\', '\r', '\n'], "_")
            );
            let len = file.len;
            let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file.reader,
                DOWNLOAD_CHUNK,
            ));
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(kind.content_type()),
            );
            if let Some(len) = len {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::error!(id, %kind, %error, "download failed");
            }
            refuse(status, error.to_string())
        }
    }
}

/// Leptos options for nkvm's fixed layout: `<site_root>/pkg/nkvm{.js,_bg.wasm,.css}`.
///
/// The output name is set here rather than through `LEPTOS_OUTPUT_NAME` at compile time: with that
/// variable set when `leptos` is compiled, the hydration script asks for `nkvm.wasm` (cargo-leptos'
/// renamed file) instead of wasm-bindgen's `nkvm_bg.wasm`.
#[must_use]
pub fn leptos_options(listen: SocketAddr, site_root: &Path) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(listen)
        .env(if cfg!(debug_assertions) {
            Env::DEV
        } else {
            Env::PROD
        })
        .build()
}

/// The site directory: `LEPTOS_SITE_ROOT`, else the first of `<exe dir>/site`, `<exe dir>/../site`
/// that holds a `pkg/` directory, else `target/site`.
#[must_use]
pub fn site_root() -> PathBuf {
    if let Some(root) = std::env::var_os(SITE_ROOT_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    pick_site_root(exe_dir.as_deref(), |dir| dir.join("pkg").is_dir())
}

fn pick_site_root(exe_dir: Option<&Path>, has_pkg: impl Fn(&Path) -> bool) -> PathBuf {
    exe_dir
        .into_iter()
        .flat_map(|dir| [dir.join("site"), dir.join("..").join("site")])
        .find(|candidate| has_pkg(candidate))
        .unwrap_or_else(|| PathBuf::from("target/site"))
}

/// Resolves on SIGINT, SIGTERM or SIGHUP.
async fn shutdown_signal() {
    let which = crate::signals::termination().await;
    tracing::info!(signal = which.name(), "shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_only_this_origin_and_the_nonce() {
        let csp = content_security_policy("abc");
        assert!(csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval';"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
    }

    #[test]
    fn site_root_prefers_a_site_next_to_the_binary() {
        let exe = Path::new("/opt/nkvm");
        let root = pick_site_root(Some(exe), |dir| dir == Path::new("/opt/nkvm/site"));
        assert_eq!(root, PathBuf::from("/opt/nkvm/site"));
    }

    #[test]
    fn site_root_finds_the_cargo_layout() {
        let exe = Path::new("/build/target/debug");
        let root = pick_site_root(Some(exe), |dir| {
            dir == Path::new("/build/target/debug/../site")
        });
        assert_eq!(root, PathBuf::from("/build/target/debug/../site"));
    }

    #[test]
    fn site_root_falls_back_to_target_site() {
        assert_eq!(
            pick_site_root(Some(Path::new("/x")), |_| false),
            PathBuf::from("target/site")
        );
        assert_eq!(pick_site_root(None, |_| true), PathBuf::from("target/site"));
    }
}
