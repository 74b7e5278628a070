//! OIDC logins against a fake provider on 127.0.0.1 (see `fake_idp.rs`): the whole code flow, and
//! each check that must refuse a token, a state or a configuration.

use serde_json::json;

use super::fake_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp, Signer};
use super::*;

const REDIRECT: &str = "http://127.0.0.1:8080/auth/oidc/callback";

/// The address logins start from, unless a test says otherwise.
const BROWSER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn settings(idp: &FakeIdp) -> OidcSettings {
    let mut roles = RoleMapping::default();
    roles.users.insert("alice".to_owned(), Role::Operator);
    roles.add_group("admins", Role::Admin);
    OidcSettings {
        issuer: idp.issuer.clone(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: ClientSecret::new(CLIENT_SECRET),
        redirect_url: REDIRECT.to_owned(),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        username_claim: "preferred_username".to_owned(),
        groups_claim: "groups".to_owned(),
        roles,
    }
}

async fn client(idp: &FakeIdp) -> OidcClient {
    OidcClient::discover(settings(idp)).await.unwrap()
}

/// Starts a login, lets the provider approve it, finishes it with the browser's state cookie.
async fn login(
    idp: &FakeIdp,
    client: &OidcClient,
    next: Option<&str>,
) -> Result<Completed, OidcError> {
    let now = Instant::now();
    let started = client.start(next, BROWSER, now).unwrap();
    let (code, state) = idp.authorize(&started.url);
    assert_eq!(state, started.state);
    client
        .finish(&state, &code, Some(&started.state), now)
        .await
}

fn id_token_error(result: Result<Completed, OidcError>) -> IdTokenError {
    match result {
        Err(OidcError::IdToken(error)) => error,
        other => panic!("expected an ID token refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_login_maps_the_user_to_a_role_with_pkce_and_basic_auth() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let done = login(&idp, &client, Some("/history?status=failed"))
        .await
        .unwrap();
    assert_eq!(done.username, "alice");
    assert_eq!(done.subject, "user-0001");
    assert_eq!(done.groups, vec!["staff".to_owned()]);
    assert_eq!(done.role, Some(Role::Operator));
    assert_eq!(done.next, "/history?status=failed");
    assert_eq!(client.pending_count(), 0);
    idp.with(|s| {
        let (authorization, body) = &s.token_requests[0];
        assert!(authorization.as_deref().unwrap().starts_with("Basic "));
        assert!(body.contains("code_verifier="), "{body}");
        assert!(
            !body.contains(CLIENT_SECRET),
            "basic auth keeps the secret out of the body"
        );
        // Everything was in the ID token: no user info call.
        assert_eq!(s.userinfo_fetches, 0);
        assert_eq!(s.jwks_fetches, 1);
    });
}

#[tokio::test]
async fn es256_tokens_and_client_secret_post_work() {
    let idp = FakeIdp::start().await;
    idp.with(|s| {
        s.auth_methods = Some(vec!["client_secret_post"]);
        s.signer = Signer::Ec;
    });
    let client = client(&idp).await;
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!((done.username.as_str(), done.next.as_str()), ("alice", "/"));
    idp.with(|s| {
        let (authorization, body) = &s.token_requests[0];
        assert!(authorization.is_none());
        assert!(body.contains("client_secret="), "{body}");
    });
}

#[tokio::test]
async fn the_authorization_url_carries_state_nonce_and_an_s256_challenge() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let a = client.start(None, BROWSER, Instant::now()).unwrap();
    let b = client.start(None, BROWSER, Instant::now()).unwrap();
    assert_ne!(a.state, b.state);
    let url = Url::parse(&a.url).unwrap();
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["redirect_uri"], REDIRECT);
    assert_eq!(query["scope"], "openid profile email");
    assert_eq!(query["state"], a.state);
    assert_eq!(query["nonce"].len(), 64);
    assert_ne!(query["nonce"], a.state);
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(
        !format!("{a:?}").contains(&a.state),
        "Debug hides the state"
    );
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    idp.with(|s| s.claims.insert("nonce".into(), json!("not-the-nonce")));
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Nonce
    );
    idp.with(|s| s.claims.insert("nonce".into(), Value::Null));
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Nonce
    );
}

#[tokio::test]
async fn a_token_for_another_audience_or_party_is_refused() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    idp.with(|s| s.claims.insert("aud".into(), json!("someone-else")));
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Audience
    );
    // Several audiences need azp = our client id.
    idp.with(|s| {
        s.claims
            .insert("aud".into(), json!([CLIENT_ID, "someone-else"]))
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::AuthorizedParty
    );
    idp.with(|s| s.claims.insert("azp".into(), json!("someone-else")));
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::AuthorizedParty
    );
    idp.with(|s| s.claims.insert("azp".into(), json!(CLIENT_ID)));
    assert!(login(&idp, &client, None).await.is_ok());
}

#[tokio::test]
async fn expired_future_and_foreign_tokens_are_refused() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let now = jiff::Timestamp::now().as_second();
    idp.with(|s| {
        s.claims
            .insert("exp".into(), json!(now - LEEWAY_SECONDS - 5))
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Expired
    );
    // Within the leeway it still passes.
    idp.with(|s| s.claims.insert("exp".into(), json!(now - 5)));
    assert!(login(&idp, &client, None).await.is_ok());
    idp.with(|s| {
        s.claims.insert("exp".into(), json!(now + 300));
        s.claims.insert("iat".into(), json!(now + 3600));
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::IssuedInFuture
    );
    idp.with(|s| {
        s.claims.insert("iat".into(), json!(now));
        s.claims.insert("nbf".into(), json!(now + 3600));
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::NotYetValid
    );
    idp.with(|s| {
        s.claims.remove("nbf");
        s.claims.insert("exp".into(), Value::Null);
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::NoExpiry
    );
    idp.with(|s| {
        s.claims.remove("exp");
        s.claims
            .insert("iss".into(), json!("https://evil.example/"));
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Issuer("https://evil.example/".into())
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    // Signed with key 2, but naming the published key 1.
    idp.with(|s| {
        s.signer = Signer::Rsa2;
        s.header_kid = Some("rsa-1");
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Signature(JwsError::Signature)
    );
    // An EC key named in an RS256 header, and `none`, never verify.
    idp.with(|s| {
        s.signer = Signer::Rsa1;
        s.header_kid = Some("ec-1");
    });
    assert!(matches!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Signature(JwsError::NoKey { .. })
    ));
    idp.with(|s| {
        s.header_kid = None;
        s.header_alg = Some("none");
    });
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Signature(JwsError::Algorithm("none".into()))
    );
    idp.with(|s| s.header_alg = Some("HS256"));
    assert_eq!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Signature(JwsError::Algorithm("HS256".into()))
    );
}

#[tokio::test]
async fn an_unknown_key_id_refetches_the_rotated_key_set_once() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    assert!(login(&idp, &client, None).await.is_ok());
    idp.with(|s| {
        s.published = vec![Signer::Rsa2];
        s.signer = Signer::Rsa2;
    });
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!(done.username, "alice");
    assert_eq!(idp.with(|s| s.jwks_fetches), 2);
    // The new set is kept: the next login fetches nothing.
    assert!(login(&idp, &client, None).await.is_ok());
    assert_eq!(idp.with(|s| s.jwks_fetches), 2);
    // A key id that stays unknown after one refetch is refused.
    idp.with(|s| s.header_kid = Some("rsa-9"));
    assert!(matches!(
        id_token_error(login(&idp, &client, None).await),
        IdTokenError::Signature(JwsError::NoKey { .. })
    ));
    assert_eq!(idp.with(|s| s.jwks_fetches), 3);
}

#[tokio::test]
async fn discovery_refuses_another_issuer() {
    let idp = FakeIdp::start().await;
    let trailing = idp.issuer.trim_end_matches('/').to_owned();
    idp.with(|s| s.discovery_issuer = Some(trailing.clone()));
    match OidcClient::discover(settings(&idp)).await {
        Err(OidcError::IssuerMismatch { found, .. }) => assert_eq!(found, trailing),
        other => panic!("expected an issuer mismatch, got {other:?}"),
    }
    idp.with(|s| s.discovery_issuer = Some("https://evil.example/".into()));
    assert!(matches!(
        OidcClient::discover(settings(&idp)).await,
        Err(OidcError::IssuerMismatch { .. })
    ));
}

#[tokio::test]
async fn discovery_needs_a_client_auth_method_the_secret_can_use() {
    let idp = FakeIdp::start().await;
    idp.with(|s| s.auth_methods = Some(vec!["private_key_jwt"]));
    assert!(matches!(
        OidcClient::discover(settings(&idp)).await,
        Err(OidcError::NoClientAuthMethod(_))
    ));
}

#[tokio::test]
async fn a_state_is_used_once() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let now = Instant::now();
    let started = client.start(None, BROWSER, now).unwrap();
    let (code, state) = idp.authorize(&started.url);
    assert!(
        client
            .finish(&state, &code, Some(&state), now)
            .await
            .is_ok()
    );
    assert!(matches!(
        client.finish(&state, &code, Some(&state), now).await,
        Err(OidcError::UnknownState)
    ));
    // A state nobody started, and one that is not even shaped like ours.
    let other = "0".repeat(64);
    assert!(matches!(
        client.finish(&other, &code, Some(&other), now).await,
        Err(OidcError::UnknownState)
    ));
    assert!(matches!(
        client.finish("abc", &code, Some("abc"), now).await,
        Err(OidcError::MalformedState)
    ));
}

#[tokio::test]
async fn a_state_expires_after_ten_minutes() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let now = Instant::now();
    let started = client.start(None, BROWSER, now).unwrap();
    let (code, state) = idp.authorize(&started.url);
    let later = now + PENDING_TTL + Duration::from_secs(1);
    assert!(matches!(
        client.finish(&state, &code, Some(&state), later).await,
        Err(OidcError::StateExpired)
    ));
    // Expired ones are swept, fresh ones stay.
    client.start(None, BROWSER, later).unwrap();
    client.start(None, BROWSER, now).unwrap();
    assert_eq!(client.expire(later), 1);
    assert_eq!(client.pending_count(), 1);
    // Nothing reached the provider's token endpoint.
    assert!(idp.with(|s| s.token_requests.is_empty()));
}

#[tokio::test]
async fn the_state_must_come_back_from_the_same_browser() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let now = Instant::now();
    let started = client.start(None, BROWSER, now).unwrap();
    let (code, state) = idp.authorize(&started.url);
    for cookie in [None, Some("f".repeat(64))] {
        let started = client.start(None, BROWSER, now).unwrap();
        let (code, state) = idp.authorize(&started.url);
        assert!(matches!(
            client.finish(&state, &code, cookie.as_deref(), now).await,
            Err(OidcError::StateMismatch)
        ));
    }
    assert!(
        client
            .finish(&state, &code, Some(&state), now)
            .await
            .is_ok()
    );
}

/// Whether the login `started` can still be finished.
async fn finishes(idp: &FakeIdp, client: &OidcClient, started: &Started, now: Instant) -> bool {
    let (code, state) = idp.authorize(&started.url);
    match client.finish(&state, &code, Some(&state), now).await {
        Ok(_) => true,
        Err(OidcError::UnknownState) => false,
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn one_client_cannot_push_out_another_clients_pending_login() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    let victim: IpAddr = "198.51.100.20".parse().unwrap();
    let start = Instant::now();
    let real = client.start(Some("/history"), victim, start).unwrap();
    // More starts from one address than all clients together may have in progress.
    let mut flood = Vec::new();
    for i in 0..(MAX_PENDING as u64 + 100) {
        let at = start + Duration::from_millis(i + 1);
        flood.push(client.start(None, BROWSER, at).unwrap());
    }
    assert_eq!(client.pending_count(), MAX_PENDING_PER_CLIENT + 1);
    let later = start + Duration::from_secs(5);
    assert!(finishes(&idp, &client, &real, later).await);
    // The flooder only pushed out its own logins: its newest are there, its oldest are not.
    assert!(finishes(&idp, &client, flood.last().unwrap(), later).await);
    assert!(!finishes(&idp, &client, &flood[0], later).await);
}

#[tokio::test]
async fn pending_logins_are_bounded_per_client_oldest_first() {
    let idp = FakeIdp::start().await;
    let client = OidcClient::discover_with(settings(&idp), PENDING_TTL, 100, 3)
        .await
        .unwrap();
    let start = Instant::now();
    let first = client.start(None, BROWSER, start).unwrap();
    let mut rest = Vec::new();
    for i in 1..=3 {
        rest.push(
            client
                .start(None, BROWSER, start + Duration::from_secs(i))
                .unwrap(),
        );
    }
    assert_eq!(client.pending_count(), 3);
    assert!(!finishes(&idp, &client, &first, start).await);
    for started in &rest {
        assert!(finishes(&idp, &client, started, start).await);
    }
    // Addresses of one IPv6 /64 count as one client.
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let first = client.start(None, a, start).unwrap();
    for i in 1..=3 {
        client
            .start(None, b, start + Duration::from_secs(i))
            .unwrap();
    }
    assert!(!finishes(&idp, &client, &first, start).await);
}

#[tokio::test]
async fn pending_logins_are_bounded_in_total_busiest_client_first() {
    let idp = FakeIdp::start().await;
    let client = OidcClient::discover_with(settings(&idp), PENDING_TTL, 3, 2)
        .await
        .unwrap();
    let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
        "198.51.100.3".parse().unwrap(),
    );
    let start = Instant::now();
    let at = |s| start + Duration::from_secs(s);
    let a1 = client.start(None, a, at(0)).unwrap();
    let b1 = client.start(None, b, at(1)).unwrap();
    let b2 = client.start(None, b, at(2)).unwrap();
    // Full: the busiest client (b) loses its oldest, not a, although a's is the oldest of all.
    let c1 = client.start(None, c, at(3)).unwrap();
    assert_eq!(client.pending_count(), 3);
    assert!(!finishes(&idp, &client, &b1, at(4)).await);
    for started in [&a1, &b2, &c1] {
        assert!(finishes(&idp, &client, started, at(4)).await);
    }
}

#[test]
fn clients_are_ipv4_addresses_or_ipv6_prefixes() {
    let key = |text: &str| client_key(text.parse().unwrap()).to_string();
    assert_eq!(key("192.0.2.7"), "192.0.2.7");
    assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
    assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
    assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
}

#[tokio::test]
async fn next_is_validated_when_the_login_starts() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    for (next, expected) in [
        (Some("/history?status=failed"), "/history?status=failed"),
        (Some("//evil.example/"), "/"),
        (Some("https://evil.example/"), "/"),
        (Some("/\t/evil.example/"), "/"),
        (Some("/auth/logout"), "/"),
        (None, "/"),
    ] {
        let done = login(&idp, &client, next).await.unwrap();
        assert_eq!(done.next, expected, "{next:?}");
    }
}

#[test]
fn safe_next_keeps_only_local_paths() {
    assert_eq!(safe_next(Some("/")), "/");
    assert_eq!(safe_next(Some("/audit?actor=a%20b")), "/audit?actor=a%20b");
    for bad in [
        "",
        "history",
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/ /x",
        "/auth/oidc/start",
        "javascript:alert(1)",
        "https://evil.example/",
    ] {
        assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
    }
    assert_eq!(safe_next(Some(&format!("/{}", "a".repeat(3000)))), "/");
}

#[tokio::test]
async fn user_name_and_groups_come_from_user_info_when_the_id_token_lacks_them() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    idp.with(|s| {
        s.claims.insert("preferred_username".into(), Value::Null);
        s.claims.insert("groups".into(), Value::Null);
        s.userinfo = Some(json!({
            "sub": "user-0001", "preferred_username": "Bob", "groups": ["admins", 7, "x"]
        }));
    });
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!(done.username, "bob");
    assert_eq!(done.groups, vec!["admins".to_owned(), "x".to_owned()]);
    assert_eq!(done.role, Some(Role::Admin));
    assert_eq!(idp.with(|s| s.userinfo_fetches), 1);
    // User info about somebody else is refused.
    idp.with(|s| s.userinfo = Some(json!({ "sub": "user-0002", "preferred_username": "eve" })));
    assert!(matches!(
        login(&idp, &client, None).await,
        Err(OidcError::UserInfoSubject)
    ));
}

#[tokio::test]
async fn the_email_is_the_fallback_name_only_when_verified() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    idp.with(|s| {
        s.claims.insert("preferred_username".into(), Value::Null);
        s.userinfo = Some(json!({ "sub": "user-0001" }));
    });
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!(done.username, "alice@example.test");
    assert_eq!(
        idp.with(|s| s.userinfo_fetches),
        1,
        "user info is asked first"
    );
    assert_eq!(done.role, None, "alice@example.test is not alice");
    idp.with(|s| s.claims.insert("email_verified".into(), json!(false)));
    assert!(matches!(
        login(&idp, &client, None).await,
        Err(OidcError::EmailNotVerified(_))
    ));
    // Some providers send the flag as a string.
    idp.with(|s| s.claims.insert("email_verified".into(), json!("true")));
    assert_eq!(
        login(&idp, &client, None).await.unwrap().username,
        "alice@example.test"
    );
    // Without the flag (in the ID token or the user info), nobody vouches for the address.
    for unverified in [Value::Null, json!("yes"), json!(1)] {
        idp.with(|s| s.claims.insert("email_verified".into(), unverified.clone()));
        assert!(
            matches!(
                login(&idp, &client, None).await,
                Err(OidcError::EmailNotVerified(_))
            ),
            "{unverified}"
        );
    }
    idp.with(|s| s.claims.insert("email".into(), Value::Null));
    assert!(matches!(
        login(&idp, &client, None).await,
        Err(OidcError::NoUsername { .. })
    ));
    idp.with(|s| {
        s.claims.insert(
            "preferred_username".into(),
            json!("<script>alert(1)</script>"),
        )
    });
    assert!(matches!(
        login(&idp, &client, None).await,
        Err(OidcError::InvalidUsername { .. })
    ));
}

#[tokio::test]
async fn users_without_a_mapped_name_or_group_get_no_role() {
    let idp = FakeIdp::start().await;
    let client = client(&idp).await;
    idp.with(|s| {
        s.claims
            .insert("preferred_username".into(), json!("mallory"))
    });
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!((done.username.as_str(), done.role), ("mallory", None));
    idp.with(|s| s.claims.insert("groups".into(), json!("admins")));
    assert_eq!(
        login(&idp, &client, None).await.unwrap().role,
        Some(Role::Admin)
    );
}

#[test]
fn roles_are_the_highest_granted_by_name_or_group() {
    let mut roles = RoleMapping::default();
    assert!(roles.is_empty());
    roles.users.insert("ada".into(), Role::Viewer);
    roles.add_group("ops", Role::Operator);
    roles.add_group("ops", Role::Viewer);
    roles.add_group("root", Role::Admin);
    let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(roles.role_for("ada", &[]), Some(Role::Viewer));
    assert_eq!(
        roles.role_for("ada", &groups(&["ops"])),
        Some(Role::Operator)
    );
    assert_eq!(
        roles.role_for("bob", &groups(&["ops", "root"])),
        Some(Role::Admin)
    );
    assert_eq!(roles.role_for("bob", &groups(&["Ops", "other"])), None);
    assert_eq!(roles.role_for("bob", &[]), None);
}

#[test]
fn issuers_and_redirect_urls_are_checked() {
    assert!(parse_issuer("https://idp.example/realms/x").is_ok());
    assert!(parse_issuer("http://localhost:9998/").is_ok());
    assert!(parse_issuer("http://127.0.0.1:9998/").is_ok());
    assert!(parse_issuer("http://[::1]:9998/").is_ok());
    for bad in [
        "http://idp.example/",
        "http://10.0.0.1/",
        "ftp://idp.example/",
        "idp.example",
        "https://idp.example/?x=1",
        "https://user:pw@idp.example/",
    ] {
        assert!(parse_issuer(bad).is_err(), "{bad}");
    }
    assert!(parse_redirect_url("https://nkvm.example/auth/oidc/callback").is_ok());
    assert!(parse_redirect_url(REDIRECT).is_ok());
    for bad in [
        "http://nkvm.example/auth/oidc/callback",
        "https://nkvm.example/callback",
        "https://nkvm.example/auth/oidc/callback?x=1",
        "/auth/oidc/callback",
    ] {
        assert!(parse_redirect_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_https_issuer_needs_https_endpoints() {
    let https = Url::parse("https://idp.example/").unwrap();
    let loopback = Url::parse("http://127.0.0.1:9998/").unwrap();
    let doc = "https://idp.example/.well-known/openid-configuration";
    assert!(parse_endpoint("token_endpoint", "https://idp.example/token", doc, &https).is_ok());
    for http in [
        "http://127.0.0.1:9998/token",
        "http://localhost/token",
        "http://[::1]/token",
    ] {
        assert!(
            matches!(
                parse_endpoint("token_endpoint", http, doc, &https),
                Err(OidcError::InsecureEndpoint {
                    which: "token_endpoint",
                    ..
                })
            ),
            "{http}"
        );
        // A loopback issuer (a test or a local provider) may use http on loopback.
        assert!(parse_endpoint("token_endpoint", http, doc, &loopback).is_ok());
    }
    assert!(parse_endpoint("jwks_uri", "http://idp.example/keys", doc, &loopback).is_err());
}

#[test]
fn provider_error_codes_are_quoted_only_in_the_rfc_6749_charset() {
    assert_eq!(error_code("access_denied"), Some("access_denied"));
    assert_eq!(error_code("login required!"), Some("login required!"));
    for bad in [
        "",
        "say \"hi\"",
        "back\\slash",
        "tab\there",
        "new\nline",
        "caf\u{e9}",
        &"x".repeat(MAX_ERROR_CODE_LEN + 1),
    ] {
        assert_eq!(error_code(bad), None, "{bad:?}");
    }
    assert!(error_code(&"x".repeat(MAX_ERROR_CODE_LEN)).is_some());
}

#[tokio::test]
async fn a_key_id_missing_from_the_set_falls_back_to_keys_without_an_id() {
    let idp = FakeIdp::start().await;
    idp.with(|s| s.kidless = vec![Signer::Rsa1, Signer::Ec]);
    let client = client(&idp).await;
    // The token names "rsa-1"; the set has the same keys without ids.
    let done = login(&idp, &client, None).await.unwrap();
    assert_eq!(done.username, "alice");
    idp.with(|s| s.signer = Signer::Ec);
    assert!(login(&idp, &client, None).await.is_ok());
    // Only keys of the token's type are tried: an RS256 token with the EC key alone finds none.
    idp.with(|s| {
        s.published = vec![Signer::Ec];
        s.signer = Signer::Rsa1;
    });
    let fresh = OidcClient::discover(settings(&idp)).await.unwrap();
    assert!(matches!(
        id_token_error(login(&idp, &fresh, None).await),
        IdTokenError::Signature(JwsError::NoKey { .. })
    ));
    // When a key has the token's id, only that key is tried, not the id-less ones.
    idp.with(|s| {
        s.published = vec![Signer::Rsa1, Signer::Rsa2];
        s.kidless = vec![Signer::Rsa2];
        s.signer = Signer::Rsa2;
        s.header_kid = Some("rsa-1");
    });
    let fresh = OidcClient::discover(settings(&idp)).await.unwrap();
    assert_eq!(
        id_token_error(login(&idp, &fresh, None).await),
        IdTokenError::Signature(JwsError::Signature)
    );
    idp.with(|s| s.header_kid = Some("rsa-7"));
    assert!(login(&idp, &fresh, None).await.is_ok());
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output_and_errors() {
    let idp = FakeIdp::start().await;
    let settings = settings(&idp);
    assert!(!format!("{settings:?}").contains(CLIENT_SECRET));
    let client = OidcClient::discover(settings).await.unwrap();
    assert!(!format!("{client:?}").contains(CLIENT_SECRET));
    // A refused code: the error names the provider's answer, not the code or the secret.
    let now = Instant::now();
    let started = client.start(None, BROWSER, now).unwrap();
    let (code, state) = idp.authorize(&started.url);
    let forged = format!("{code}-forged");
    let error = client
        .finish(&state, &forged, Some(&state), now)
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("invalid_grant"), "{text}");
    for secret in [
        forged.as_str(),
        code.as_str(),
        CLIENT_SECRET,
        state.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn key_sets_keep_only_usable_signing_keys() {
    assert!(matches!(
        Jwks::from_json(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
        Err(JwksError::NoUsableKey)
    ));
    assert!(matches!(
        Jwks::from_json(b"[]"),
        Err(JwksError::Document(_))
    ));
    // A 512-bit RSA key and an encryption key are skipped.
    let small = URL_SAFE_NO_PAD.encode([0xc3u8; 64]);
    let text = format!(
        r#"{{"keys":[{{"kty":"RSA","n":"{small}","e":"AQAB"}},{{"kty":"EC","use":"enc","crv":"P-256","x":"{x}","y":"{x}"}}]}}"#,
        x = URL_SAFE_NO_PAD.encode([1u8; 32])
    );
    assert!(matches!(
        Jwks::from_json(text.as_bytes()),
        Err(JwksError::NoUsableKey)
    ));
}

#[test]
fn compact_tokens_are_parsed_strictly() {
    for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA"] {
        assert!(jws::parse(bad).is_err(), "{bad}");
    }
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","crit":["exp"]}"#);
    assert_eq!(
        jws::parse(&format!("{header}.e30.AA")).unwrap_err(),
        JwsError::Critical
    );
    let long = "a".repeat(jws::MAX_TOKEN_LEN + 1);
    assert_eq!(jws::parse(&long).unwrap_err(), JwsError::TooLong);
}
