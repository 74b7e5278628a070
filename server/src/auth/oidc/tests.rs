//! The OIDC routes through the real router, against the engine's fake provider on 127.0.0.1: the
//! login page's button, the state cookie, the session a callback starts (and the one it replaces),
//! refusals (no role, a tampered state, the provider's error, the rate limit), pages that keep
//! internal details to the log, pending logins bounded per client address, the audit trail, and
//! that no code, token, verifier or secret reaches the logs.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use axum::http::{HeaderValue, StatusCode, header};
use nkvm_engine::audit::{AuditAction, AuditFilter, AuditOutcome};
use nkvm_engine::auth::Role;
use nkvm_engine::auth::oidc::{ClientSecret, OidcClient, OidcSettings, RoleMapping};
use serde_json::json;

use super::super::tests::{Server, location, logs_of, request, send, server_with};
// The provider's redirect URL is https in production; these servers have `Secure` cookies.
use super::super::{AuthMode, SECURE_SESSION_COOKIE as SESSION_COOKIE};
use super::STATE_COOKIE;

#[path = "../../../../engine/src/auth/oidc/fake_idp.rs"]
mod fake_idp;

use fake_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp};

async fn oidc_server(idp: &FakeIdp) -> Server {
    let mut roles = RoleMapping::default();
    roles.users.insert("alice".to_owned(), Role::Operator);
    let settings = OidcSettings {
        issuer: idp.issuer.clone(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: ClientSecret::new(CLIENT_SECRET),
        redirect_url: "http://127.0.0.1:8080/auth/oidc/callback".to_owned(),
        scopes: vec!["openid".to_owned(), "profile".to_owned()],
        username_claim: "preferred_username".to_owned(),
        groups_claim: "groups".to_owned(),
        roles,
    };
    let client = OidcClient::discover(settings).await.unwrap();
    server_with(AuthMode::Oidc(client), true).await
}

fn set_cookies(response: &axum::response::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies
        .iter()
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

async fn body_text(response: axum::response::Response) -> String {
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// `GET /auth/oidc/start?next=…`: the provider's URL and the state cookie.
async fn start(server: &Server, next: &str) -> (String, String) {
    let response = send(
        server,
        request(
            "GET",
            &format!(
                "/auth/oidc/start?next={}",
                nkvm_app::table::encode_component(next)
            ),
            "",
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&response);
    let state = cookie_value(&cookies, STATE_COOKIE).expect("a state cookie");
    (location(&response), state)
}

async fn callback(
    server: &Server,
    query: &str,
    state_cookie: Option<&str>,
) -> axum::response::Response {
    let mut callback = request("GET", &format!("/auth/oidc/callback?{query}"), "");
    if let Some(state) = state_cookie {
        callback.headers_mut().insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{STATE_COOKIE}={state}")).unwrap(),
        );
    }
    send(server, callback).await
}

/// A whole login; returns the callback's response.
async fn login(server: &Server, idp: &FakeIdp, next: &str) -> axum::response::Response {
    let (url, state) = start(server, next).await;
    let (code, returned) = idp.authorize(&url);
    assert_eq!(returned, state);
    callback(server, &format!("code={code}&state={state}"), Some(&state)).await
}

async fn whoami(server: &Server, token: &str) -> (StatusCode, String) {
    let mut whoami = request("POST", "/api/whoami", "");
    whoami.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}")).unwrap(),
    );
    let response = send(server, whoami).await;
    let status = response.status();
    (status, body_text(response).await)
}

#[tokio::test]
async fn the_login_page_offers_the_provider_instead_of_a_password() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let response = send(&server, request("GET", "/login?next=%2Fhistory", "")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = body_text(response).await;
    let host = idp
        .issuer
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert!(page.contains(&format!("Sign in with {host}")), "{page}");
    assert!(
        page.contains("href=\"/auth/oidc/start?next=%2Fhistory\""),
        "{page}"
    );
    assert!(!page.contains("type=\"password\""), "{page}");
    // Password logins are refused in this mode.
    let response = send(
        &server,
        request("POST", "/auth/login", "username=alice&password=x"),
    )
    .await;
    assert_eq!(location(&response), "/login?error=oidc");
    assert!(set_cookies(&response).is_empty());
}

#[tokio::test]
async fn a_provider_login_starts_a_session_like_a_local_one() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let (url, state) = start(&server, "/history?status=failed").await;
    assert!(
        url.starts_with(&format!("{}authorize?", idp.issuer)),
        "{url}"
    );
    let (code, _) = idp.authorize(&url);

    let response = callback(&server, &format!("code={code}&state={state}"), Some(&state)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    let session = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("a session cookie");
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(session.contains(flag), "{flag} missing from {session}");
    }
    let cleared = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{STATE_COOKIE}=;")))
        .expect("the state cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(cleared.contains("Secure"), "{cleared}");
    let page = body_text(response).await;
    assert!(
        page.contains("content=\"0;url=/history?status=failed\""),
        "the page moves on to next: {page}"
    );

    let token = cookie_value(&cookies, SESSION_COOKIE).unwrap();
    let (status, me) = whoami(&server, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        me.contains("\"alice\"") && me.contains("\"operator\""),
        "{me}"
    );

    let audit = server
        .workspace
        .store()
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    let login = audit
        .iter()
        .find(|r| r.action == AuditAction::Login)
        .unwrap();
    assert_eq!(login.actor, "alice");
    assert_eq!(login.outcome, AuditOutcome::Success);
    assert_eq!(login.source.as_deref(), Some("192.0.2.7"));
    assert!(
        login.detail.as_deref().unwrap().contains("via OIDC"),
        "{login:?}"
    );

    // The same callback again is refused: states are one-time.
    let again = callback(&server, &format!("code={code}&state={state}"), Some(&state)).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(again).await.contains("unknown or already used"));

    // Logout works as for local users.
    let mut logout = request("POST", "/auth/logout", "");
    logout.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}")).unwrap(),
    );
    assert_eq!(location(&send(&server, logout).await), "/login");
    assert_eq!(whoami(&server, &token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_without_a_role_is_refused_with_a_clear_message() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    idp.with(|s| {
        s.claims
            .insert("preferred_username".into(), json!("mallory"))
    });
    let response = login(&server, &idp, "/").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(cookie_value(&set_cookies(&response), SESSION_COOKIE).is_none());
    let page = body_text(response).await;
    assert!(
        page.contains(
            "You are signed in as mallory at the identity provider, but nkvm grants mallory no \
             role. Ask an admin to add mallory"
        ),
        "{page}"
    );
    let audit = server
        .workspace
        .store()
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    assert!(
        audit.iter().any(|r| r.actor == "mallory"
            && r.action == AuditAction::LoginFailed
            && r.outcome == AuditOutcome::Denied),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_tampered_or_foreign_state_is_refused() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let (url, state) = start(&server, "/").await;
    let (code, _) = idp.authorize(&url);
    let mut tampered = state.clone();
    tampered.replace_range(..1, if state.starts_with('0') { "1" } else { "0" });
    let response = callback(
        &server,
        &format!("code={code}&state={tampered}"),
        Some(&state),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        body_text(response)
            .await
            .contains("unknown or already used login attempt")
    );
    // The right state from a browser that did not start the login (no cookie) is refused too.
    let (url, state) = start(&server, "/").await;
    let (code, _) = idp.authorize(&url);
    let response = callback(&server, &format!("code={code}&state={state}"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(response).await.contains("another browser"));
    // Markup in the state is never echoed unescaped.
    let response = callback(&server, "code=x&state=%3Cscript%3E", Some("x")).await;
    let page = body_text(response).await;
    assert!(!page.contains("<script>"), "{page}");
    // Nothing reached the token endpoint.
    assert!(idp.with(|s| s.token_requests.is_empty()));
}

#[tokio::test]
async fn the_providers_error_code_is_quoted_only_for_this_browsers_login() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let (_, state) = start(&server, "/").await;
    let description = "The%20user%20said%20%3Cb%3Eno%3C%2Fb%3E%20at%20http%3A%2F%2Fidp.internal%2F";
    // Without this browser's state cookie: nothing quoted, and the login is not ended.
    for cookie in [None, Some("f".repeat(64))] {
        let response = callback(
            &server,
            &format!("error=account_locked_call_555&error_description={description}&state={state}"),
            cookie.as_deref(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let page = body_text(response).await;
        assert!(
            page.contains(
                "The identity provider did not sign you in (provider error (unverified))."
            ),
            "{page}"
        );
        assert!(!page.contains("account_locked"), "{page}");
    }
    // A code outside RFC 6749's charset is not quoted even with the cookie.
    let (_, other) = start(&server, "/").await;
    let response = callback(
        &server,
        &format!("error=%22quoted%22%5Cx&state={other}"),
        Some(&other),
    )
    .await;
    let page = body_text(response).await;
    assert!(page.contains("provider error (unverified)"), "{page}");
    // With it: the code is quoted, the description is not, and the login is over.
    let response = callback(
        &server,
        &format!("error=access_denied&error_description={description}&state={state}"),
        Some(&state),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = body_text(response).await;
    assert!(
        page.contains("The identity provider did not sign you in (access_denied)."),
        "{page}"
    );
    for detail in ["The user said", "&lt;b&gt;", "<b>", "idp.internal"] {
        assert!(!page.contains(detail), "{detail} in {page}");
    }
    let response = callback(&server, &format!("code=abc&state={state}"), Some(&state)).await;
    assert!(
        body_text(response)
            .await
            .contains("unknown or already used")
    );
}

#[tokio::test]
async fn an_unverified_error_does_not_end_the_login() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let (url, state) = start(&server, "/").await;
    let response = callback(&server, &format!("error=access_denied&state={state}"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (code, _) = idp.authorize(&url);
    let response = callback(&server, &format!("code={code}&state={state}"), Some(&state)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[test]
fn failure_pages_name_the_step_and_keep_details_for_the_log() {
    let (pages, logs) = logs_of(|| async {
        let idp = FakeIdp::start().await;
        let server = oidc_server(&idp).await;
        let mut pages = Vec::new();
        // The token endpoint refuses a forged code, with an error_description.
        let (url, state) = start(&server, "/").await;
        let (code, _) = idp.authorize(&url);
        let response = callback(
            &server,
            &format!("code={code}-forged&state={state}"),
            Some(&state),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        pages.push(body_text(response).await);
        // The key set cannot be used any more (an error that names its URL).
        idp.with(|s| {
            s.header_kid = Some("rsa-9");
            s.published = vec![];
        });
        let response = login(&server, &idp, "/").await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        pages.push(body_text(response).await);
        (idp.issuer.clone(), pages)
    });
    let (issuer, pages) = pages;
    let host = issuer.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        pages[0].contains(
            "the identity provider refused to exchange the code (HTTP 400, invalid_grant)"
        ),
        "{}",
        pages[0]
    );
    assert!(
        pages[1].contains("nkvm could not get the identity provider&#39;s signing keys"),
        "{}",
        pages[1]
    );
    for page in &pages {
        for detail in ["refused by the fake", host, "/keys", "127.0.0.1"] {
            assert!(!page.contains(detail), "{detail} in {page}");
        }
    }
    // The admin finds the details in the log.
    assert!(logs.contains("refused by the fake"), "{logs}");
    assert!(logs.contains(&format!("{issuer}keys")), "{logs}");
}

#[tokio::test]
async fn a_new_login_ends_the_session_the_browser_had() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let response = login(&server, &idp, "/").await;
    let old = cookie_value(&set_cookies(&response), SESSION_COOKIE).unwrap();
    assert_eq!(whoami(&server, &old).await.0, StatusCode::OK);
    // Another login in the same browser (the provider is on the same site: the cookie comes along).
    let (url, state) = start(&server, "/").await;
    let (code, _) = idp.authorize(&url);
    let mut request = request(
        "GET",
        &format!("/auth/oidc/callback?code={code}&state={state}"),
        "",
    );
    request.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{STATE_COOKIE}={state}; {SESSION_COOKIE}={old}")).unwrap(),
    );
    let response = send(&server, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let new = cookie_value(&set_cookies(&response), SESSION_COOKIE).unwrap();
    assert_ne!(new, old);
    assert_eq!(whoami(&server, &old).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&server, &new).await.0, StatusCode::OK);
    let audit = server
        .workspace
        .store()
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    assert!(
        audit.iter().any(|r| r.action == AuditAction::Logout
            && r.detail.as_deref() == Some("replaced by a new OIDC login")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn one_address_cannot_push_out_another_addresss_pending_login() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let victim: SocketAddr = "198.51.100.20:50000".parse().unwrap();
    let mut first = request("GET", "/auth/oidc/start?next=%2Fhistory", "");
    first.extensions_mut().insert(ConnectInfo(victim));
    let response = send(&server, first).await;
    let state = cookie_value(&set_cookies(&response), STATE_COOKIE).unwrap();
    let url = location(&response);
    for _ in 0..1_050 {
        let response = send(&server, request("GET", "/auth/oidc/start", "")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let (code, _) = idp.authorize(&url);
    let mut back = request(
        "GET",
        &format!("/auth/oidc/callback?code={code}&state={state}"),
        "",
    );
    back.extensions_mut().insert(ConnectInfo(victim));
    back.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{STATE_COOKIE}={state}")).unwrap(),
    );
    let response = send(&server, back).await;
    let status = response.status();
    let page = body_text(response).await;
    assert_eq!(status, StatusCode::OK, "{page}");
}

/// Empty and forged callbacks (no login in progress: the provider is never asked) must not slow
/// real logins from the same address (behind an Ingress, everyone's); before, five of them
/// refused every OIDC login from that address.
#[tokio::test]
async fn empty_or_forged_callbacks_do_not_lock_out_real_logins() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let forged = "a".repeat(64);
    for query in [
        String::new(),
        "error=access_denied".to_owned(),
        format!("code=x&state={forged}"),
    ] {
        for _ in 0..5 {
            let response = callback(&server, &query, Some(&forged)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        }
    }
    let response = login(&server, &idp, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(cookie_value(&set_cookies(&response), SESSION_COOKIE).is_some());
}

/// Callbacks that make nkvm ask the provider (a real login in progress, a wrong code) are
/// counted: after five, the address waits.
#[tokio::test]
async fn failed_exchanges_are_rate_limited() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    for attempt in 1..=5 {
        let (_, state) = start(&server, "/").await;
        let response = callback(
            &server,
            &format!("code=wrong-code&state={state}"),
            Some(&state),
        )
        .await;
        assert_ne!(response.status(), StatusCode::OK, "attempt {attempt}");
        assert_ne!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "attempt {attempt}"
        );
    }
    let response = login(&server, &idp, "/").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert!(cookie_value(&set_cookies(&response), SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn the_oidc_routes_are_public_but_nothing_else_is() {
    let idp = FakeIdp::start().await;
    let server = oidc_server(&idp).await;
    let mut page = request("GET", "/history", "");
    page.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("text/html"));
    let response = send(&server, page).await;
    assert_eq!(location(&response), "/login?next=%2Fhistory");
    let response = send(&server, request("GET", "/auth/oidc/start", "")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = send(&server, request("GET", "/auth/oidc/callback", "")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn codes_tokens_secrets_and_verifiers_stay_out_of_the_logs() {
    let (secrets, logs) = logs_of(|| async {
        let idp = FakeIdp::start().await;
        let server = oidc_server(&idp).await;
        let mut secrets: BTreeMap<&str, String> = BTreeMap::new();
        // A failed login (a forged code), then a good one.
        let (url, state) = start(&server, "/").await;
        let (code, _) = idp.authorize(&url);
        let forged = format!("{code}-forged");
        callback(
            &server,
            &format!("code={forged}&state={state}"),
            Some(&state),
        )
        .await;
        secrets.insert("forged code", forged);
        secrets.insert("first state", state);

        let (url, state) = start(&server, "/").await;
        let (code, _) = idp.authorize(&url);
        let response = callback(&server, &format!("code={code}&state={state}"), Some(&state)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let token = cookie_value(&set_cookies(&response), SESSION_COOKIE).unwrap();
        secrets.insert("code", code);
        secrets.insert("state", state);
        secrets.insert("session", token);
        secrets.insert("secret", CLIENT_SECRET.to_owned());
        secrets.insert("access token", "access-token-of-the-fake-idp".to_owned());
        let (_, body) = idp.with(|s| s.token_requests.last().cloned().unwrap());
        let verifier = url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "code_verifier")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        secrets.insert("verifier", verifier);
        let id_token = idp.with(|s| s.id_tokens.last().cloned().unwrap());
        secrets.insert(
            "ID token signature",
            id_token.rsplit('.').next().unwrap().to_owned(),
        );
        secrets.insert("ID token", id_token);
        secrets
    });
    assert!(logs.contains("login (OIDC)"), "the login is logged: {logs}");
    assert!(
        logs.contains("OIDC login failed"),
        "the failure is logged: {logs}"
    );
    for (what, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the {what} leaked into the logs:\n{logs}"
        );
    }
}
