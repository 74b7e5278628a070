//! A fake OpenID provider for tests, on 127.0.0.1 (plain hyper): discovery, a key set, a token
//! endpoint that checks the code, redirect URI, PKCE verifier and client secret like a real one,
//! and a user info endpoint. ID tokens are signed with fixed test RSA keys or a fresh EC key, and
//! every part can be tampered with through [`FakeIdp::state`]. The authorization step is a method
//! call ([`FakeIdp::authorize`]): the provider's login page is what the end-to-end test covers.
//!
//! Also compiled into the server's tests (`#[path]`), so it uses no engine items.

#![allow(dead_code, reason = "each crate's tests use a different part")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// Test keys (2048-bit RSA, PKCS#1 DER, base64), made for these tests only.
const RSA_KEY_1: &str = "MIIEpAIBAAKCAQEA6YYefyTfyXbGRaF1xGQFaiHJfwzm6wsHI0IgipB2d6hyursUtqkYN+dt9A9qKmHxgI+dr+nbcxTVo5PkfE5WqXAyI7Ecuz7k0TIWbo+4joGfVvu0f9MdcmyBSxvA2Fq7oUzmcmMgQ2V5hdlrZ6Q+kxJh5PrxypZl8v25WEzSfdr6woT768d+xVJzJLbzhI1V6+XhYhGgSYs21LzB/SNJ58kL7gjDeeta8rkbV/coCYOD7P4ciE6jjwL9jMjnTQ4CMqD0ReN4ik8BP7nZlHTN3iy1v+25FlyiQX3mwFxqvv0RXuXvnWRpzz7Yt068Aqcvi3w98hAxzMkwiX4uJ949HQIDAQABAoIBACbCykEUX8jS3CommKOWboelQArEm3ecBv1FNp2JSQCnhxOTheajvo9Y7Jk8DcUnKKzMKcJPMMuzQ5q5K42uexf4tXnTJg+2asiGZc7IMDwHK+mGMfmdkx+w/uz2mFXRCZ/GYeHOrkZBi6A57GfxjSlgPbuCI6watqVUk/UiGzYkV5XY25c58CTMRgXf/td8vuV63KCN7O3QIh7/XVI3uxDyMaOw1jvRRw6Fx5RwKU1aPd2VvqHKh6jVtSOikvy05ghzY3CTtREQGaDtgk4uO5q+0TLhvff+Eo0dqIbikXjYw//U0TEU08v55rtpd2qf8chE2iDBezPZx00q7m855AECgYEA+oVJOcZCu8MMyoHaX9NWZvU0vqRXQc0052vzjFspee3jNtyVuZmFS/SIItUt5Ib2eLzExYaGxQdwdV0jtS/2rX+/cc5LqJogTt6I02r8VnZYshbrbb58ytOzGSHPn9wjoI0xzS9MuS+QxAOghvXWfoy834tvrrPBxVBSZbis3p0CgYEA7qGqPS3QRdbRqkexBcvFNZtK5xLEE7+qa9vIryu3sw+Q9LNBkouMKaNIyNOPYHfIgiHIj6PakWaj2nm8esF0FVx6h1DgZhC5w9FHilWzion9Pykav9dtIBK2MjCTF1Zk+dGLEUzEsHaw+31oMsnmeVs4XrFJA7+4CTTh5XilUIECgYEAsy/6vFRPDzXoREC1Da2AM4xX+bRapTo+CPlx7oaWGBxLVMZaYbKpYTa62Q9aEAdo69s5c39RjkRP7+J60/JGorqpGKHSA/qZ+U+61l3Dt6RWtKsoIgsJ/5mElQlWFKXE5eWYJYcbfanEBjAB9gaJMWNBBTQa4f65LoTRKuj43RECgYBt4w5E2+rzrieglSDkfWBT/i3w2IhoW7N7tZrlZ2lRUJK8zCse85nYtrNWn21/y8kOe8Yitx54JF7BxZtQn/L3vz1BQLIE7iDNFnsuLabe3go7Yo9J1kcPJO63j/y8G3GmRKMYlVRhulZniOlJsgWqzqHXoSXxTwDNZIe9pt/hgQKBgQDakGIR+bFpV7zIvwNN4Fix5KH7TAtIdC8s0ibfxPcN5KnI6id+BKo2RsrQ9Md2DymfRpWXfDzBW23Z1e5+6W0fvoh+vrCnJzGT/QIxjlrxDHZ64lQJT9eLOm2vOukmMqj4KzRMCTSQGzxfysMP7pEnzKCTVJahi2lJweCbwT3cxQ==";
const RSA_KEY_2: &str = "MIIEpAIBAAKCAQEAx8uFJplJ69SVmf7farQRX2ELsRW8t77ngsiEKLT9kqzp5FcDkaKxKi8vyg9HaxcXhW2fDK0gRKKqKiZaLASdwjnQo0E2I5JWMX4IJlNXrHmHMKsYw76ctgRt0NC+DTMWEvocpGdsfdyM3UjGEe7XILex8YemE9FTBRUQvtJBUA3n8HyvLFYLcX4dAO7yhdSP9h5Vd+1xFbyQniNzv+sJwGEisEgGToIt3OqrZ/Az/6TzbI1Nz3f2DMTqr9nnNY1A1Sj8z7QHcLFJSQXUd5oqzr/GIfBzKI+wBJ2pJEWHVhKJ6tVkBXYxoNQYRVDcMWUSKmZ8llIab5DSP8KowLRpwQIDAQABAoIBAA8OlHNLPBnsxHV9ksLM3T5N5v6qf7VtSq89g1A6C54hL+NId3ljRGzEb5qPujck313r2/+tkG/7vk085LDKjEUV7FZRVM4rehlywRR6VXInGnwdeNlPpSnGfawt/xSpk/FMLhppvPBjTa5jjKHPWSEbFur36Rk3PkV0x/VJjSiGMYQJrQUaOUntkI9v1easg9ErcNmokglxlTWFvvXtrKzSQz5gys15wS836llgp0vnoJP2okpuUxVn6B5O4KhflwjCUOAtHHKb4ahMEYEuWBo5u5+W1tDIgg43a1S0yAdg3IgVztHP3vtKloXiphmKcGkuj7kRzzlXXGHYQCC+Xx0CgYEA+S6fBUGnHuXnZi17exsi0tjLKoAXrM+QAfkC2LuIiuN/o1sLonmdz5JS9QR9nzW6Nw9OuOJGrg5wzGaK0tSUea0CAOmrbZyB7SjDln7rlLRT2LS2ZliodZ4iKKNxGKwcL+GF8W5/XT8qIyCgKOeFWKCVyqme08/CyOheouMz4GsCgYEAzUL4Z/9aDd2YWPUfHiKS7MPMCjR1AvBOu5QGZ7hQUq0K9byWdxlv+HEz2pqmHpUAA40gZvKno8Aunchm7JxBUnbQzkK15Vz0GgfO35+kTxA4Glk/UOM4TWKfSi0qpKo6JzEMVGQh9v9BrjZN6J0+h1UaZ9LO8GtR9tOZnnXCeYMCgYEAwTIAYRbx9+bQbkw9PMlhSpCDlMQTlwym3qCuMFPWHbkdMQ5aCvK4BEOyxf1hWJtTcXUQ2A+4NSNFGXU3lRb0txIIR6TkIOwDYFkGrBxjkrvtdktGUDvVALxGR7PQ8AwhHo6ARxwg668ZgHq/Mneuz3RSLvssBZVDtHlVRn1Zr1kCgYAnbCRffPijzxqSg0mdtRA47wYCM78BeHv2pOByDUFID7oaJkVTzIvn0H4gDzG2j/F3vSQrAZHW7nNFlJbH/N7C4tUJuGBNFARB95vw8S1Sjg/oZ5m0hF9s5XMogPI+u/79RftTPgQT90R7HCzsbz7yKRMwO5nJLSOJ32wSthVK1wKBgQC7E92zQzPnHMtMLI5YXCIXfZI5PXKrzYiCP2Y+FNJcjTqJo+QPgy40q/2tr6XKHW071NOhPdzYUv1sptl72h3iKJ5/PC1eyK5pLJfHEVfI1vNE7FjxJtbEtJ3KZQdU/l7bYehlaYT8w3PY+h++OFx2VNGwcuUpe0oSdqn8XmcjQA==";

pub const CLIENT_ID: &str = "nkvm";
pub const CLIENT_SECRET: &str = "fake-client-secret-0123456789";

/// A signing key of the fake provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Rsa1,
    Rsa2,
    Ec,
}

impl Signer {
    pub fn kid(self) -> &'static str {
        match self {
            Self::Rsa1 => "rsa-1",
            Self::Rsa2 => "rsa-2",
            Self::Ec => "ec-1",
        }
    }
}

/// A code handed out by [`FakeIdp::authorize`].
#[derive(Debug, Clone)]
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

/// What the provider does; tests change it between steps.
#[derive(Debug)]
pub struct IdpState {
    /// The `issuer` in the discovery document (default: the real one).
    pub discovery_issuer: Option<String>,
    /// Token endpoint auth methods in discovery (`None`: not listed).
    pub auth_methods: Option<Vec<&'static str>>,
    /// Keys in the key set.
    pub published: Vec<Signer>,
    /// Keys of `published` listed without a `kid`.
    pub kidless: Vec<Signer>,
    /// The key that signs ID tokens.
    pub signer: Signer,
    /// The `kid` put in the header (default: the signer's).
    pub header_kid: Option<&'static str>,
    /// The `alg` put in the header (default: the signer's).
    pub header_alg: Option<&'static str>,
    /// Claims set (or, with `Value::Null`, removed) on top of the defaults.
    pub claims: Map<String, Value>,
    /// Answer of the user info endpoint (`None`: 404).
    pub userinfo: Option<Value>,
    /// Times the key set was fetched.
    pub jwks_fetches: usize,
    /// Times user info was fetched.
    pub userinfo_fetches: usize,
    /// Bodies and `Authorization` headers of token requests.
    pub token_requests: Vec<(Option<String>, String)>,
    /// ID tokens issued.
    pub id_tokens: Vec<String>,
    codes: HashMap<String, Grant>,
    next_code: u64,
}

/// A running fake provider; stops when dropped.
pub struct FakeIdp {
    pub issuer: String,
    pub state: Arc<Mutex<IdpState>>,
    rsa1: Arc<RsaKeyPair>,
    rsa2: Arc<RsaKeyPair>,
    ec: Arc<EcdsaKeyPair>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rsa(b64: &str) -> Arc<RsaKeyPair> {
    Arc::new(RsaKeyPair::from_der(&STANDARD.decode(b64).unwrap()).unwrap())
}

fn rsa_jwk(key: &RsaKeyPair, kid: &str) -> Value {
    let public: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e),
    })
}

fn ec_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    })
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn form_value(body: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl FakeIdp {
    /// Starts a provider on 127.0.0.1 with an ephemeral port; its issuer ends in `/`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/", listener.local_addr().unwrap());
        let rng = SystemRandom::new();
        let ec_pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        let ec = Arc::new(
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                ec_pkcs8.as_ref(),
                &rng,
            )
            .unwrap(),
        );
        let state = Arc::new(Mutex::new(IdpState {
            discovery_issuer: None,
            auth_methods: Some(vec!["client_secret_basic", "client_secret_post"]),
            published: vec![Signer::Rsa1, Signer::Ec],
            kidless: Vec::new(),
            signer: Signer::Rsa1,
            header_kid: None,
            header_alg: None,
            claims: Map::new(),
            userinfo: None,
            jwks_fetches: 0,
            userinfo_fetches: 0,
            token_requests: Vec::new(),
            id_tokens: Vec::new(),
            codes: HashMap::new(),
            next_code: 0,
        }));
        let mut idp = Self {
            issuer,
            state,
            rsa1: rsa(RSA_KEY_1),
            rsa2: rsa(RSA_KEY_2),
            ec,
            task: tokio::spawn(async {}),
        };
        let shared = idp.shared();
        idp.task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        idp
    }

    fn shared(&self) -> Shared {
        Shared {
            issuer: self.issuer.clone(),
            state: self.state.clone(),
            rsa1: self.rsa1.clone(),
            rsa2: self.rsa2.clone(),
            ec: self.ec.clone(),
        }
    }

    pub fn with<R>(&self, change: impl FnOnce(&mut IdpState) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    /// What the provider's login page would do once the user signed in: checks the authorization
    /// URL (response type, client, PKCE S256) and returns the callback's `(code, state)`.
    pub fn authorize(&self, authorization_url: &str) -> (String, String) {
        let url = url::Url::parse(authorization_url).unwrap();
        assert!(
            authorization_url.starts_with(&format!("{}authorize?", self.issuer)),
            "{authorization_url}"
        );
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"].len(), 43);
        assert!(query["scope"].split(' ').any(|s| s == "openid"));
        let mut state = self.state.lock().unwrap();
        state.next_code += 1;
        let code = format!("code-{}-{}", state.next_code, "x".repeat(20));
        state.codes.insert(
            code.clone(),
            Grant {
                nonce: query["nonce"].clone(),
                challenge: query["code_challenge"].clone(),
                redirect_uri: query["redirect_uri"].clone(),
            },
        );
        (code, query["state"].clone())
    }

    /// An ID token signed like the token endpoint would sign it, with `claims` on top.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        self.shared().sign(claims)
    }
}

#[derive(Clone)]
struct Shared {
    issuer: String,
    state: Arc<Mutex<IdpState>>,
    rsa1: Arc<RsaKeyPair>,
    rsa2: Arc<RsaKeyPair>,
    ec: Arc<EcdsaKeyPair>,
}

impl Shared {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        match path.as_str() {
            "/.well-known/openid-configuration" => {
                let state = self.state.lock().unwrap();
                let mut doc = json!({
                    "issuer": state.discovery_issuer.clone().unwrap_or_else(|| self.issuer.clone()),
                    "authorization_endpoint": format!("{}authorize", self.issuer),
                    "token_endpoint": format!("{}token", self.issuer),
                    "jwks_uri": format!("{}keys", self.issuer),
                    "userinfo_endpoint": format!("{}userinfo", self.issuer),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                });
                if let Some(methods) = &state.auth_methods {
                    doc["token_endpoint_auth_methods_supported"] = json!(methods);
                }
                json_response(StatusCode::OK, &doc)
            }
            "/keys" => {
                let mut state = self.state.lock().unwrap();
                state.jwks_fetches += 1;
                let keys: Vec<Value> = state
                    .published
                    .iter()
                    .map(|signer| {
                        let mut key = match signer {
                            Signer::Rsa1 => rsa_jwk(&self.rsa1, signer.kid()),
                            Signer::Rsa2 => rsa_jwk(&self.rsa2, signer.kid()),
                            Signer::Ec => ec_jwk(&self.ec, signer.kid()),
                        };
                        if state.kidless.contains(signer)
                            && let Some(key) = key.as_object_mut()
                        {
                            key.remove("kid");
                        }
                        key
                    })
                    .collect();
                json_response(StatusCode::OK, &json!({ "keys": keys }))
            }
            "/token" => self.token(authorization, &body),
            "/userinfo" => {
                let mut state = self.state.lock().unwrap();
                state.userinfo_fetches += 1;
                let expected = "Bearer access-token-of-the-fake-idp";
                match &state.userinfo {
                    Some(info) if authorization.as_deref() == Some(expected) => {
                        json_response(StatusCode::OK, info)
                    }
                    Some(_) => json_response(StatusCode::UNAUTHORIZED, &json!({})),
                    None => json_response(StatusCode::NOT_FOUND, &json!({})),
                }
            }
            _ => json_response(StatusCode::NOT_FOUND, &json!({})),
        }
    }

    #[allow(
        clippy::needless_pass_by_value,
        reason = "the header value is taken from the request it belongs to"
    )]
    fn token(&self, authorization: Option<String>, body: &str) -> Response<Full<Bytes>> {
        let refuse = |error: &str| {
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": error, "error_description": "refused by the fake" }),
            )
        };
        let grant = {
            let mut state = self.state.lock().unwrap();
            state
                .token_requests
                .push((authorization.clone(), body.to_owned()));
            let code = form_value(body, "code").unwrap_or_default();
            state.codes.remove(&code)
        };
        let Some(grant) = grant else {
            return refuse("invalid_grant");
        };
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        let posted = form_value(body, "client_secret").as_deref() == Some(CLIENT_SECRET)
            && form_value(body, "client_id").as_deref() == Some(CLIENT_ID);
        if authorization.as_deref() != Some(basic.as_str()) && !posted {
            return refuse("invalid_client");
        }
        if form_value(body, "grant_type").as_deref() != Some("authorization_code")
            || form_value(body, "redirect_uri").as_deref() != Some(grant.redirect_uri.as_str())
        {
            return refuse("invalid_request");
        }
        let verifier = form_value(body, "code_verifier").unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
            return refuse("invalid_grant");
        }
        let mut claims = Map::new();
        claims.insert("nonce".into(), json!(grant.nonce));
        let id_token = self.sign(&claims);
        self.state.lock().unwrap().id_tokens.push(id_token.clone());
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": "access-token-of-the-fake-idp",
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            }),
        )
    }

    /// Default claims (for `alice`, groups `staff`), then `extra`, then the state's overrides.
    fn sign(&self, extra: &Map<String, Value>) -> String {
        let state = self.state.lock().unwrap();
        let mut claims = json!({
            "iss": self.issuer, "sub": "user-0001", "aud": CLIENT_ID,
            "iat": now(), "exp": now() + 300,
            "preferred_username": "alice", "email": "alice@example.test",
            "email_verified": true, "groups": ["staff"],
        })
        .as_object()
        .unwrap()
        .clone();
        for (key, value) in extra.iter().chain(state.claims.iter()) {
            if value.is_null() {
                claims.remove(key);
            } else {
                claims.insert(key.clone(), value.clone());
            }
        }
        let (alg, kid) = (
            state.header_alg.unwrap_or(match state.signer {
                Signer::Ec => "ES256",
                _ => "RS256",
            }),
            state.header_kid.unwrap_or(state.signer.kid()),
        );
        let header = json!({ "alg": alg, "kid": kid, "typ": "JWT" });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let rng = SystemRandom::new();
        let signature = match state.signer {
            Signer::Rsa1 | Signer::Rsa2 => {
                let key = if state.signer == Signer::Rsa1 {
                    &self.rsa1
                } else {
                    &self.rsa2
                };
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Signer::Ec => self
                .ec
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
