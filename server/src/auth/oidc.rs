//! The OIDC login routes: `GET /auth/oidc/start` sends the browser to the identity provider with a
//! fresh state (also kept in a short-lived cookie that binds the login to this browser), and
//! `GET /auth/oidc/callback` finishes it (rate limited like password logins, audited), then starts
//! the same session as a local login.
//!
//! The callback answers with a small page that moves on to `next` itself instead of a redirect:
//! the browser arrives from the provider's site, and a redirect would still count as cross-site,
//! so the `SameSite=Strict` session cookie would not be sent with it.
//!
//! Pages for anonymous browsers name the failed step and what to do, never the details (the
//! provider's `error_description`, URLs, connection errors): those go to the log, which never
//! holds a code, token, verifier, state or secret.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
use nkvm_engine::auth::constant_time_eq;
use nkvm_engine::auth::oidc::{Completed, OidcClient, OidcError, PENDING_TTL, error_code};
use nkvm_engine::auth::users::User;
use serde::Deserialize;

use super::{Auth, AuthMode, escape_html, html_page, html_page_with_head};

/// Cookie holding the state of the login in progress (sent back only to the callback).
pub const STATE_COOKIE: &str = "nkvm_oidc_state";

/// Longest error text from the provider written to the log, in characters.
const MAX_LOGGED_ERROR: usize = 200;

/// What the page says of a provider's error that nkvm cannot vouch for (no matching state
/// cookie, or not an RFC 6749 error code).
const UNVERIFIED_ERROR: &str = "provider error (unverified)";

impl Auth {
    fn oidc(&self) -> Option<&OidcClient> {
        match &self.inner.mode {
            AuthMode::Oidc(client) => Some(client),
            _ => None,
        }
    }

    /// The state cookie: `SameSite=Lax`, since it must come along when the provider sends the
    /// browser back (a cross-site top-level GET); limited to the OIDC routes.
    fn state_cookie(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        let mut cookie = format!(
            "{STATE_COOKIE}={value}; Path=/auth/oidc/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
        );
        if self.inner.secure_cookie {
            cookie.push_str("; Secure");
        }
        HeaderValue::from_str(&cookie).ok()
    }
}

fn state_from_cookies(headers: &HeaderMap) -> Option<String> {
    super::cookie_value(headers, STATE_COOKIE)
}

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /auth/oidc/start?next=/path`: remembers a new login (counted against the client's address)
/// and sends the browser to the provider.
pub async fn start(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<StartQuery>,
) -> Response {
    let Some(client) = auth.oidc() else {
        return (StatusCode::NOT_FOUND, "OIDC login is not configured").into_response();
    };
    let started = match client.start(query.next.as_deref(), peer.ip(), Instant::now()) {
        Ok(started) => started,
        Err(error) => {
            tracing::error!(%error, "cannot start an OIDC login");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = Redirect::to(&started.url).into_response();
    if let Some(cookie) = auth.state_cookie(&started.state, PENDING_TTL.as_secs()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The callback's query. Every field is optional so that a malformed callback gets a page, not a
/// bare 400.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Text from the query for the log: printable, bounded.
fn clipped(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_LOGGED_ERROR)
        .collect();
    if text.chars().count() > MAX_LOGGED_ERROR {
        out.push('…');
    }
    out
}

/// What a refusal page says of a failed login: the step that failed and what to do. The details
/// (provider texts, URLs, connection errors) are only logged.
fn page_message(error: &OidcError) -> String {
    const AGAIN: &str = "Start again from the login page.";
    const ASK: &str = "If it happens again, an admin finds the cause in nkvm's log.";
    match error {
        OidcError::MalformedState | OidcError::UnknownState => {
            format!("The login failed: unknown or already used login attempt. {AGAIN}")
        }
        OidcError::StateExpired => format!(
            "The login failed: it must finish within {} minutes. {AGAIN}",
            PENDING_TTL.as_secs() / 60
        ),
        OidcError::StateMismatch => format!(
            "The login failed: it was started in another browser (or this browser dropped its \
             cookie). {AGAIN}"
        ),
        OidcError::MalformedCode => {
            format!("The login failed: the identity provider's answer is malformed. {AGAIN}")
        }
        OidcError::TokenRequest(_) => format!(
            "The login failed: nkvm could not reach the identity provider to exchange the code. \
             Try again later. {ASK}"
        ),
        OidcError::TokenRefused { status, error, .. } => {
            let code = error.as_deref().and_then(error_code);
            let quoted = code.map(|c| format!(", {c}")).unwrap_or_default();
            format!(
                "The login failed: the identity provider refused to exchange the code (HTTP \
                 {status}{quoted}). {AGAIN} {ASK}"
            )
        }
        OidcError::TokenResponse(_) => format!(
            "The login failed: the identity provider's token answer is invalid. {AGAIN} {ASK}"
        ),
        OidcError::IdToken(_) => format!(
            "The login failed: nkvm refused the identity provider's ID token. {AGAIN} {ASK}"
        ),
        OidcError::Keys { .. } | OidcError::KeySet { .. } => format!(
            "The login failed: nkvm could not get the identity provider's signing keys. Try \
             again later. {ASK}"
        ),
        OidcError::UserInfoRequest(_)
        | OidcError::UserInfoStatus(_)
        | OidcError::UserInfoResponse(_)
        | OidcError::UserInfoSubject => format!(
            "The login failed: nkvm could not read your user information from the identity \
             provider. Try again later. {ASK}"
        ),
        OidcError::NoUsername { .. } => format!(
            "The login failed: the identity provider sent no user name for you (nor a verified \
             email address). Ask an admin to check nkvm's user name claim. {ASK}"
        ),
        OidcError::InvalidUsername { .. } => {
            "The login failed: your user name at the identity provider is not a valid nkvm user \
             name (1 to 64 of lowercase letters, digits, `.`, `_`, `@` and `-`). Ask an admin."
                .to_owned()
        }
        OidcError::EmailNotVerified(_) => {
            "The login failed: nkvm would use your email address as your user name, but the \
             identity provider does not confirm that it is verified. Verify it there, or ask an \
             admin."
                .to_owned()
        }
        OidcError::Random(_)
        | OidcError::InvalidIssuer { .. }
        | OidcError::InvalidRedirectUrl { .. }
        | OidcError::InvalidClientId
        | OidcError::InvalidScope(_)
        | OidcError::InvalidClaim(_)
        | OidcError::HttpClient(_)
        | OidcError::Discovery { .. }
        | OidcError::DiscoveryDocument { .. }
        | OidcError::IssuerMismatch { .. }
        | OidcError::InsecureEndpoint { .. }
        | OidcError::NoClientAuthMethod(_)
        | OidcError::NoPkce(_) => format!("The login failed inside nkvm. {AGAIN} {ASK}"),
    }
}

/// A refusal page with a way back to the login page.
fn refusal(status: StatusCode, message: &str) -> Response {
    let main = format!(
        "<h1>Login refused</h1><p class=\"error\" role=\"alert\" data-testid=\"login-error\">{}</p>\
         <p><a href=\"/login\">Back to the login page</a></p>",
        escape_html(message)
    );
    html_page(status, "Login refused", &main)
}

/// `GET /auth/oidc/callback?code=…&state=…` (or `?error=…`): finishes the login and starts a
/// session, or explains why not. Every outcome is audited and clears the state cookie.
pub async fn callback(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let mut response = finish(&auth, peer, &headers, query).await;
    if let Some(cookie) = auth.state_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[allow(
    clippy::too_many_lines,
    reason = "one callback, one audited refusal per way it can fail; read top to bottom"
)]
async fn finish(
    auth: &Auth,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Response {
    let Some(client) = auth.oidc() else {
        return (StatusCode::NOT_FOUND, "OIDC login is not configured").into_response();
    };
    let ip = peer.ip();
    let source = ip.to_string();
    if let Err(retry) = auth.inner.limiter.check(ip, "", Instant::now()) {
        auth.audit_refusal("(unknown)", ip, "rate limited (OIDC callback)")
            .await;
        let mut response = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins. Wait a few minutes, then try again.",
        );
        if let Ok(value) = HeaderValue::from_str(&retry.seconds().to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // Only failures after the provider was asked count against the address: a callback that
    // names no login in progress costs nothing and guesses nothing, so a flood of empty or forged
    // callbacks (from an address many users share) must not slow anyone's real login.
    let fail = |actor: String, outcome: AuditOutcome, detail: String, counted: bool| async move {
        if counted {
            auth.inner.limiter.record_failure(ip, "", Instant::now());
        } else {
            auth.inner.limiter.release(ip, "");
        }
        auth.audit(
            AuditEvent::new(&actor, AuditAction::LoginFailed, outcome)
                .with_detail(detail)
                .with_source(ip.to_string()),
        )
        .await;
    };

    let cookie_state = state_from_cookies(headers);
    if let Some(error) = query.error.as_deref() {
        // Anybody can send a browser here with any `error`: only a callback that carries this
        // browser's own state ends its login, and only then is the provider's code quoted.
        let ours = match (query.state.as_deref(), cookie_state.as_deref()) {
            (Some(state), Some(cookie)) => constant_time_eq(state.as_bytes(), cookie.as_bytes()),
            _ => false,
        };
        if ours && let Some(state) = query.state.as_deref() {
            client.abandon(state);
        }
        let code = if ours { error_code(error) } else { None };
        let shown = code.unwrap_or(UNVERIFIED_ERROR);
        let description = query.error_description.as_deref().map(clipped);
        tracing::warn!(
            error = %clipped(error),
            description = description.as_deref().unwrap_or(""),
            state_matches = ours,
            "the identity provider refused a login"
        );
        fail(
            "(unknown)".to_owned(),
            AuditOutcome::Failure,
            format!("identity provider: {shown}"),
            false,
        )
        .await;
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!(
                "The identity provider did not sign you in ({shown}). Start again from the login \
                 page."
            ),
        );
    }

    let (Some(code), Some(state)) = (query.code.as_deref(), query.state.as_deref()) else {
        fail(
            "(unknown)".to_owned(),
            AuditOutcome::Failure,
            "OIDC callback without code or state".to_owned(),
            false,
        )
        .await;
        return refusal(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer lacks the code or the state. Start again from the \
             login page.",
        );
    };
    let done = match client
        .finish(state, code, cookie_state.as_deref(), Instant::now())
        .await
    {
        Ok(done) => done,
        Err(error) => {
            tracing::warn!(%error, "OIDC login failed");
            let asked_provider = !matches!(
                error,
                OidcError::MalformedState
                    | OidcError::UnknownState
                    | OidcError::StateExpired
                    | OidcError::StateMismatch
                    | OidcError::MalformedCode
            );
            fail(
                "(unknown)".to_owned(),
                AuditOutcome::Failure,
                error.to_string(),
                asked_provider,
            )
            .await;
            return refusal(status_of(&error), &page_message(&error));
        }
    };
    let Completed {
        username,
        role,
        next,
        ..
    } = done;
    let Some(role) = role else {
        tracing::warn!(user = %username, "OIDC login without a role refused");
        fail(
            username.clone(),
            AuditOutcome::Denied,
            "signed in at the identity provider, but granted no role".to_owned(),
            true,
        )
        .await;
        return refusal(
            StatusCode::FORBIDDEN,
            &format!(
                "You are signed in as {username} at the identity provider, but nkvm grants \
                 {username} no role. Ask an admin to add {username} to nkvm's users file (or you \
                 to a group that has a role)."
            ),
        );
    };
    auth.inner.limiter.record_success(ip, "");
    // A new login replaces the session this browser still had (its cookie comes along only when
    // the provider is on the same site: the cookie is `SameSite=Strict`).
    auth.end_session(headers, &source, Some("replaced by a new OIDC login"))
        .await;
    let user = User {
        name: username,
        role,
    };
    let Some(cookie) = auth.start_session(&user) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    auth.audit(
        AuditEvent::new(&user.name, AuditAction::Login, AuditOutcome::Success)
            .with_detail(format!(
                "role {} via OIDC ({})",
                user.role,
                client.issuer_host()
            ))
            .with_source(source),
    )
    .await;
    tracing::info!(user = %user.name, role = %user.role, "login (OIDC)");
    let next = escape_html(&next);
    let main = format!(
        "<h1>Signed in</h1><p>Signed in as {name}. <a href=\"{next}\">Continue</a></p>",
        name = escape_html(&user.name),
    );
    let head = format!("<meta http-equiv=\"refresh\" content=\"0;url={next}\">");
    let mut response = html_page_with_head(StatusCode::OK, "Signed in", &head, &main);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// 502 when nkvm could not get an answer from the provider, 400 when the request or a token was
/// wrong.
fn status_of(error: &OidcError) -> StatusCode {
    match error {
        OidcError::Random(_)
        | OidcError::TokenRequest(_)
        | OidcError::Keys { .. }
        | OidcError::KeySet { .. }
        | OidcError::UserInfoRequest(_)
        | OidcError::UserInfoStatus(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests;
