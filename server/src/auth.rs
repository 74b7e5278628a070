//! Web authentication glue: who is calling (the session cookie of a local or OIDC login, or a
//! trusted proxy's identity header), the login page and the login/logout endpoints (rate limited,
//! audited; the OIDC routes are in [`oidc`]), and the middleware that refuses anonymous requests to
//! everything but the health check, the login routes and the site's static files.

pub mod load;
pub mod oidc;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use nkvm_app::ssr::{Caller, SessionAlive, SessionId};
use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
use nkvm_engine::auth::Role;
use nkvm_engine::auth::oidc::OidcClient;
use nkvm_engine::auth::proxy::{Cidr, ProxyConfig, forwarded_client};
use nkvm_engine::auth::ratelimit::LoginLimiter;
use nkvm_engine::auth::sessions::SessionStore;
use nkvm_engine::auth::users::{User, Users, is_valid_name};
use nkvm_engine::store::Store;
use nkvm_engine::workspace::Workspace;
use serde::Deserialize;

/// Name of the session cookie over plain http.
pub const SESSION_COOKIE: &str = "nkvm_session";

/// Name of the session cookie when it is `Secure` (https): the `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain or a
/// plain-http page cannot plant or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-nkvm_session";

/// How callers prove who they are.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Local users (argon2id hashes) log in with a form; a session cookie follows.
    Local(Users),
    /// A reverse proxy (e.g. oauth2-proxy) in front of nkvm names the user in a header.
    Proxy(ProxyConfig),
    /// Users sign in at an OpenID provider (code flow with PKCE); a session cookie follows.
    Oidc(OidcClient),
    /// Nobody logs in; every caller is an anonymous admin. Only allowed on a loopback address.
    Disabled,
}

/// Authentication state shared by every request.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    mode: AuthMode,
    sessions: SessionStore,
    limiter: LoginLimiter,
    store: Store,
    workspace: Workspace,
    secure_cookie: bool,
    /// Proxies whose `X-Forwarded-For` names the client (local and OIDC logins).
    trusted_proxies: Vec<Cidr>,
    /// Concurrent password verifications.
    gate: load::VerifyGate,
    /// Which rate-limit refusals are written to the audit trail.
    refusals: load::RefusalAudit,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(
        mode: AuthMode,
        sessions: SessionStore,
        limiter: LoginLimiter,
        workspace: Workspace,
        secure_cookie: bool,
        trusted_proxies: Vec<Cidr>,
        gate: load::VerifyGate,
    ) -> Self {
        let store = workspace.store().clone();
        Self {
            inner: Arc::new(AuthInner {
                mode,
                sessions,
                limiter,
                store,
                workspace,
                secure_cookie,
                trusted_proxies,
                gate,
                refusals: load::RefusalAudit::new(nkvm_engine::auth::ratelimit::DEFAULT_WINDOW),
            }),
        }
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.inner.sessions
    }

    pub fn limiter(&self) -> &LoginLimiter {
        &self.inner.limiter
    }

    /// Forgets expired sessions, rate-limit counters and OIDC logins in progress.
    pub fn expire(&self, now: Instant) {
        self.inner.sessions.expire(now);
        self.inner.limiter.expire(now);
        self.inner.refusals.expire(now);
        if let AuthMode::Oidc(client) = &self.inner.mode {
            client.expire(now);
        }
    }

    /// Starts a session for `user` and returns its cookie (`None`: no randomness; logged).
    fn start_session(&self, user: &User) -> Option<HeaderValue> {
        let (token, _) = match self.inner.sessions.create(user, Instant::now()) {
            Ok(created) => created,
            Err(error) => {
                tracing::error!(%error, "no randomness for a session");
                return None;
            }
        };
        let max_age = self.inner.sessions.options().absolute.as_secs();
        self.cookie(token.as_str(), Some(max_age))
    }

    /// The session cookie's name: [`SECURE_SESSION_COOKIE`] when cookies are `Secure`.
    pub fn cookie_name(&self) -> &'static str {
        if self.inner.secure_cookie {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The session token in the request's cookie (see [`token_from_cookies`]).
    fn token(&self, headers: &HeaderMap) -> Option<String> {
        token_from_cookies(headers, self.cookie_name())
    }

    fn cookie(&self, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
        let name = self.cookie_name();
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Some(seconds) = max_age {
            cookie.push_str(&format!("; Max-Age={seconds}"));
        }
        if self.inner.secure_cookie {
            cookie.push_str("; Secure");
        }
        HeaderValue::from_str(&cookie).ok()
    }

    /// Ends the session whose cookie `headers` carry, if any (audited as a logout, with `detail`),
    /// and forgets its connection choice.
    async fn end_session(&self, headers: &HeaderMap, source: &str, detail: Option<&str>) {
        let Some(token) = self.token(headers) else {
            return;
        };
        if let Some(session) = self.inner.sessions.get(&token, Instant::now()) {
            let mut event =
                AuditEvent::new(&session.user, AuditAction::Logout, AuditOutcome::Success)
                    .with_source(source.to_owned());
            if let Some(detail) = detail {
                event = event.with_detail(detail);
            }
            self.audit(event).await;
        }
        self.inner.sessions.revoke(&token);
        self.inner.workspace.forget(&token);
    }

    async fn audit(&self, event: AuditEvent) {
        self.inner.store.audit(&event).await;
    }

    /// Audits a rate-limited request from `ip` as `who` with `detail` (e.g. "rate limited"), once
    /// per address and window: a flood of refusals writes one row, which counts the refusals left
    /// out since the address's previous row.
    async fn audit_refusal(&self, who: &str, ip: IpAddr, detail: &str) {
        let Some(left_out) = self.inner.refusals.admit(ip, Instant::now()) else {
            return;
        };
        let detail = if left_out > 0 {
            format!("{detail}; {left_out} more refusals from this address since its last row")
        } else {
            format!("{detail}; further refusals from this address are counted, not listed")
        };
        self.audit(
            AuditEvent::new(who, AuditAction::AccessDenied, AuditOutcome::Denied)
                .with_target("login")
                .with_detail(detail)
                .with_source(ip.to_string()),
        )
        .await;
    }
}

/// The peer address of a request (set by `into_make_service_with_connect_info`).
fn peer_of(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The value of the first cookie called `wanted` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
}

/// The session token in the request's cookie `name`, when it has the shape nkvm issues (64 hex
/// digits).
pub fn token_from_cookies(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_value(headers, name)
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Paths anyone may request: the health and readiness checks, the login page and endpoints, the
/// site's files, and `/metrics` (which checks its own bearer token, never a session).
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/login"
            | "/auth/login"
            | "/auth/oidc/start"
            | "/auth/oidc/callback"
    ) || path.starts_with("/pkg/")
}

/// A local path to return to after login (see [`nkvm_engine::auth::oidc::safe_next`]).
fn safe_next(next: Option<&str>) -> String {
    nkvm_engine::auth::oidc::safe_next(next)
}

/// Who is calling, if anyone: a trusted proxy's header, a live session, or (auth disabled) the
/// anonymous admin. The second value is the session key the workspace uses for this caller.
fn identify(auth: &Auth, request: &Request, peer: Option<IpAddr>) -> Option<(Caller, String)> {
    let source = peer.map(|p| p.to_string()).unwrap_or_default();
    match &auth.inner.mode {
        AuthMode::Disabled => {
            let key = auth.token(request.headers()).unwrap_or_default();
            Some((
                Caller {
                    user: "anonymous".to_owned(),
                    role: Role::Admin,
                    source,
                },
                key,
            ))
        }
        AuthMode::Proxy(config) => {
            let values: Vec<&HeaderValue> = request
                .headers()
                .get_all(config.header.as_str())
                .iter()
                .collect();
            let value = match values.as_slice() {
                [] => None,
                [one] => one.to_str().ok(),
                _ => {
                    tracing::warn!(header = %config.header, "identity header repeated; refused");
                    return None;
                }
            };
            let peer = peer?;
            match config.identify(peer, value) {
                Ok(Some(user)) => {
                    let key = format!("proxy:{}", user.name);
                    Some((
                        Caller {
                            user: user.name,
                            role: user.role,
                            source,
                        },
                        key,
                    ))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "proxy identity refused");
                    None
                }
            }
        }
        AuthMode::Local(_) | AuthMode::Oidc(_) => {
            let token = auth.token(request.headers())?;
            let session = auth.inner.sessions.get(&token, Instant::now())?;
            Some((
                Caller {
                    user: session.user,
                    role: session.role,
                    source,
                },
                token,
            ))
        }
    }
}

/// Refuses anonymous requests (a redirect to the login page for page loads, 401 otherwise) and
/// gives the others their [`Caller`] and [`SessionId`] as request extensions.
/// Behind trusted proxies (an Ingress controller), makes the request's peer address the client's
/// (from `X-Forwarded-For`, see [`forwarded_client`]), so that login rate limits, OIDC login caps
/// and the audit trail see users rather than the proxy. Not in proxy-header mode, whose trust
/// check needs the real peer.
pub async fn client_address(
    State(auth): State<Auth>,
    mut request: Request,
    next: Next,
) -> Response {
    let proxies = &auth.inner.trusted_proxies;
    if !proxies.is_empty()
        && !matches!(auth.inner.mode, AuthMode::Proxy(_))
        && let Some(ConnectInfo(peer)) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
    {
        let values: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let client = forwarded_client(peer.ip(), &values, proxies);
        if client != peer.ip() {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        }
    }
    next.run(request).await
}

pub async fn authenticate(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let peer = peer_of(&request);
    match identify(&auth, &request, peer) {
        Some((caller, key)) => {
            let fresh_anonymous = key.is_empty();
            let key = if fresh_anonymous {
                match nkvm_engine::auth::random_token() {
                    Ok(token) => token,
                    Err(error) => {
                        tracing::error!(%error, "no randomness for a session id");
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                }
            } else {
                key
            };
            request.extensions_mut().insert(caller);
            let alive = match &auth.inner.mode {
                AuthMode::Local(_) | AuthMode::Oidc(_) => {
                    let (sessions, token) = (auth.inner.sessions.clone(), key.clone());
                    SessionAlive(Arc::new(move || sessions.is_alive(&token, Instant::now())))
                }
                // Identified again on every request; nothing to end.
                AuthMode::Proxy(_) | AuthMode::Disabled => SessionAlive::always(),
            };
            request.extensions_mut().insert(alive);
            request.extensions_mut().insert(SessionId(key.clone()));
            let mut response = next.run(request).await;
            if fresh_anonymous && let Some(cookie) = auth.cookie(&key, None) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        None if is_public(&path) => next.run(request).await,
        None => {
            let wants_page = request.method() == axum::http::Method::GET
                && !path.starts_with("/api/")
                && !path.starts_with("/download/")
                && request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|accept| accept.contains("text/html"));
            if wants_page {
                let next_path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let target = format!(
                    "/login?next={}",
                    nkvm_app::table::encode_component(next_path)
                );
                Redirect::to(&target).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    "not logged in: log in at /login first",
                )
                    .into_response()
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginPageQuery {
    next: Option<String>,
    error: Option<String>,
}

/// `GET /login`: a plain HTML form (no script), styled by the site's CSS.
pub async fn login_page(State(auth): State<Auth>, Query(query): Query<LoginPageQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    let message = match query.error.as_deref() {
        Some("invalid") => Some("Wrong user name or password."),
        Some("limited") => Some("Too many failed logins. Wait a few minutes, then try again."),
        Some("proxy") => {
            Some("This server takes your identity from its reverse proxy; sign in there.")
        }
        Some("oidc") => {
            Some("This server signs you in with your identity provider; use the button.")
        }
        _ => None,
    };
    if matches!(auth.inner.mode, AuthMode::Disabled) {
        return Redirect::to(&next).into_response();
    }
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(m)))
        .unwrap_or_default();
    if let AuthMode::Oidc(client) = &auth.inner.mode {
        let main = format!(
            "<h1>Log in to nkvm</h1>{alert}<p class=\"login-form\">\
             <a class=\"button\" href=\"/auth/oidc/start?next={next}\" data-testid=\"oidc-login\">\
             Sign in with {host}</a></p>",
            next = escape_html(&nkvm_app::table::encode_component(&next)),
            host = escape_html(&client.issuer_host()),
        );
        return html_page(StatusCode::OK, "Log in", &main);
    }
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/pkg/nkvm.css\">\
         <title>Log in · nkvm</title></head><body><main id=\"main\" class=\"login\">\
         <h1>Log in to nkvm</h1>{alert}\
         <form method=\"post\" action=\"/auth/login\" class=\"login-form\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required maxlength=\"64\" autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\">\
         <button type=\"submit\">Log in</button></form></main></body></html>",
        next = escape_html(&next),
    );
    let mut response = Html(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain page in the login page's frame (no script), never cached.
fn html_page(status: StatusCode, title: &str, main: &str) -> Response {
    html_page_with_head(status, title, "", main)
}

fn html_page_with_head(status: StatusCode, title: &str, head: &str, main: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/pkg/nkvm.css\">\
         <title>{title} · nkvm</title></head><body><main id=\"main\" class=\"login\">{main}\
         </main></body></html>",
        title = escape_html(title),
    );
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /auth/login`: checks the rate limit, verifies the password (off the async threads), starts
/// a session and sets its cookie; every outcome is audited. Never says whether the name exists.
pub async fn login(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let users = match &auth.inner.mode {
        AuthMode::Local(users) => users,
        AuthMode::Oidc(_) => return Redirect::to("/login?error=oidc").into_response(),
        _ => return Redirect::to("/login?error=proxy").into_response(),
    };
    let next = safe_next(form.next.as_deref());
    let ip = peer.ip();
    let name = form.username.trim().to_ascii_lowercase();
    // What the audit trail may record of a name nobody has: only a valid-looking name.
    let shown_name = if is_valid_name(&name) {
        name.clone()
    } else {
        "(invalid name)".to_owned()
    };
    let now = Instant::now();
    if let Err(retry) = auth.inner.limiter.check(ip, &name, now) {
        auth.audit_refusal(&shown_name, ip, "rate limited").await;
        let mut response = Redirect::to("/login?error=limited").into_response();
        if let Ok(value) = HeaderValue::from_str(&retry.seconds().to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // At most a few argon2id verifications at once (each takes about 19 MiB), on the server's
    // verification threads: the others wait in a bounded queue or are refused, so a flood of
    // logins cannot exhaust the memory.
    let verified: Result<Option<User>, load::Busy> = {
        let (users, name, password) = (users.clone(), name.clone(), form.password);
        auth.inner
            .gate
            .run(move |memory| users.verify_with(&name, &password, memory))
            .await
    };
    let Ok(verified) = verified else {
        auth.inner.limiter.release(ip, &name);
        auth.audit_refusal(&shown_name, ip, "too many logins in progress")
            .await;
        return busy();
    };
    let Some(user) = verified else {
        auth.inner.limiter.record_failure(ip, &name, Instant::now());
        auth.audit(
            AuditEvent::new(&shown_name, AuditAction::LoginFailed, AuditOutcome::Failure)
                .with_source(ip.to_string()),
        )
        .await;
        let target = format!(
            "/login?error=invalid&next={}",
            nkvm_app::table::encode_component(&next)
        );
        return Redirect::to(&target).into_response();
    };
    auth.inner.limiter.record_success(ip, &name);
    // A new login replaces the session this browser still had: the old token opens nothing more.
    auth.end_session(&headers, &ip.to_string(), Some("replaced by a new login"))
        .await;
    let Some(cookie) = auth.start_session(&user) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    auth.audit(
        AuditEvent::new(&user.name, AuditAction::Login, AuditOutcome::Success)
            .with_detail(format!("role {}", user.role))
            .with_source(ip.to_string()),
    )
    .await;
    tracing::info!(user = %user.name, role = %user.role, "login");
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// 503 with `Retry-After` for a login refused because too many are being verified.
fn busy() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many logins in progress; try again in a few seconds.",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// `POST /auth/logout`: ends the session (and its connection choice) and clears the cookie.
pub async fn logout(State(auth): State<Auth>, request: Request) -> Response {
    let peer = peer_of(&request).map(|p| p.to_string()).unwrap_or_default();
    auth.end_session(request.headers(), &peer, None).await;
    let mut response = Redirect::to("/login").into_response();
    if let Some(cookie) = auth.cookie("", Some(0)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn only_health_login_and_site_files_are_public() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/login",
            "/auth/login",
            "/auth/oidc/start",
            "/auth/oidc/callback",
            "/pkg/nkvm.js",
            "/pkg/nkvm_bg.wasm",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/",
            "/history",
            "/connect",
            "/audit",
            "/schedules",
            "/api/inventory",
            "/download/1/archive",
            "/auth/logout",
            "/auth/oidc",
            "/auth/oidc/callbackx",
            "/pkgx",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[test]
    fn next_is_a_local_path() {
        assert_eq!(
            safe_next(Some("/history?status=failed")),
            "/history?status=failed"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/auth/logout",
            "history",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("\"><script>"), "&quot;&gt;&lt;script&gt;");
    }
}
