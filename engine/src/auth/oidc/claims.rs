//! The provider's key set and an ID token's claims: the standard checks (`iss`, `aud`, `azp`,
//! `exp`, `iat`, `nbf`, `nonce`) and the user name and groups nkvm reads from them.

#[allow(
    clippy::wildcard_imports,
    reason = "a part of the oidc module, sharing its imports"
)]
use super::*;

pub(super) async fn fetch_keys(http: &HttpClient, url: &Url) -> Result<Jwks, OidcError> {
    let answer = http
        .get(url, None)
        .await
        .map_err(|source| OidcError::Keys {
            url: url.to_string(),
            source,
        })?;
    if answer.status != ::http::StatusCode::OK {
        return Err(OidcError::KeySet {
            url: url.to_string(),
            source: JwksError::Document(format!("HTTP {}", answer.status.as_u16())),
        });
    }
    Jwks::from_json(&answer.body).map_err(|source| OidcError::KeySet {
        url: url.to_string(),
        source,
    })
}

pub(super) fn number(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    // Whole seconds; fractions are cut (allowed by RFC 7519's NumericDate).
    #[allow(clippy::cast_possible_truncation, reason = "checked to be in range")]
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// The standard checks of an ID token's claims (OpenID Connect Core 3.1.3.7).
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), IdTokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if iss != issuer {
        return Err(IdTokenError::Issuer(shown(iss)));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(IdTokenError::Audience);
    }
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return Err(IdTokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        None => {}
    }
    let exp = number(claims, "exp").ok_or(IdTokenError::NoExpiry)?;
    if now > exp.saturating_add(LEEWAY_SECONDS) {
        return Err(IdTokenError::Expired);
    }
    let iat = number(claims, "iat").ok_or(IdTokenError::NoIssuedAt)?;
    if iat > now.saturating_add(LEEWAY_SECONDS) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if claims.contains_key("nbf") {
        let nbf = number(claims, "nbf").ok_or(IdTokenError::NotYetValid)?;
        if nbf > now.saturating_add(LEEWAY_SECONDS) {
            return Err(IdTokenError::NotYetValid);
        }
    }
    let token_nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !constant_time_eq(token_nonce.as_bytes(), nonce.as_bytes()) {
        return Err(IdTokenError::Nonce);
    }
    Ok(())
}

/// The nkvm user name: the configured claim, else a verified `email`; lowercased, then checked.
pub(super) fn username_from(claims: &Map<String, Value>, claim: &str) -> Result<String, OidcError> {
    let (used, value) =
        if let Some(value) = claims.get(claim).and_then(Value::as_str) {
            (claim, value)
        } else {
            let email = claims.get("email").and_then(Value::as_str).ok_or_else(|| {
                OidcError::NoUsername {
                    claim: claim.to_owned(),
                }
            })?;
            ("email", email)
        };
    // An unverified address may belong to anybody who typed it in at the provider: the email
    // names the user only when the provider vouches for it (a missing claim vouches for nothing).
    if used == "email"
        && !claims
            .get("email_verified")
            .is_some_and(|v| v == &Value::Bool(true) || v == &Value::String("true".into()))
    {
        return Err(OidcError::EmailNotVerified(shown(value)));
    }
    let name = value.trim().to_ascii_lowercase();
    if !is_valid_name(&name) {
        return Err(OidcError::InvalidUsername {
            claim: used.to_owned(),
            value: shown(value),
        });
    }
    Ok(name)
}

/// The user's groups: a list of strings (other entries ignored) or one string; bounded.
pub(super) fn groups_from(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let keep = |g: &str| !g.is_empty() && g.len() <= MAX_GROUP_LEN;
    match claims.get(claim) {
        Some(Value::String(one)) if keep(one) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| keep(g))
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
