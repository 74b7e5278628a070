//! ID-token signatures: the provider's JSON Web Key Set and compact JWS verification with `ring`
//! (RS256/384/512, PS256/384/512, ES256, ES384). The token's header only chooses among the
//! provider's keys; `none`, symmetric algorithms and `crit` extensions are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Most keys kept from one key set.
const MAX_KEYS: usize = 64;

crate::text_enum! {
    /// A signature algorithm nkvm verifies, by its JOSE name.
    pub enum Algorithm("signature algorithm") {
        Rs256 => "RS256",
        Rs384 => "RS384",
        Rs512 => "RS512",
        Ps256 => "PS256",
        Ps384 => "PS384",
        Ps512 => "PS512",
        Es256 => "ES256",
        Es384 => "ES384",
    }
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }

    /// The key type and (for EC) curve a key of this algorithm has.
    fn key_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Es256 => ("EC", Some("P-256")),
            Self::Es384 => ("EC", Some("P-384")),
            _ => ("RSA", None),
        }
    }
}

/// Why a token's signature was not accepted. Never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the token is not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("the token's header is invalid")]
    Header,
    #[error("the token is signed with {0}, which nkvm does not accept")]
    Algorithm(String),
    #[error("the token's header has critical extensions nkvm does not understand")]
    Critical,
    #[error("the identity provider's key set has no {alg} key{}", kid_text(.kid.as_deref()))]
    NoKey {
        alg: &'static str,
        kid: Option<String>,
    },
    #[error("the token's signature does not verify with the identity provider's keys")]
    Signature,
}

fn kid_text(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!(" with key id {:?}", super::shown(kid)),
        None => String::new(),
    }
}

/// Why a key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not JSON with a `keys` list: {0}")]
    Document(String),
    #[error("the key set has no usable signing key (RSA or EC P-256/P-384)")]
    NoUsableKey,
}

/// One public key of the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kid: Option<String>,
    alg: Option<String>,
    material: Material,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point (`0x04 || x || y`).
    Ec { curve: &'static str, point: Vec<u8> },
}

/// A key as published; checked by [`Key::from_raw`].
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

impl Key {
    /// A signing key, or `None` for keys nkvm cannot or must not use (encryption keys, symmetric
    /// keys, other curves, malformed numbers).
    fn from_raw(raw: RawKey) -> Option<Self> {
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let material = match raw.kty.as_str() {
            "RSA" => {
                let n = strip_zeros(b64(raw.n.as_deref()?)?);
                let e = strip_zeros(b64(raw.e.as_deref()?)?);
                // ring needs 2048 to 8192 bits; smaller keys are refused here already.
                if n.len() < 256 || n.len() > 1024 || e.is_empty() || e.len() > 8 {
                    return None;
                }
                Material::Rsa { n, e }
            }
            "EC" => {
                let (curve, len) = match raw.crv.as_deref()? {
                    "P-256" => ("P-256", 32),
                    "P-384" => ("P-384", 48),
                    _ => return None,
                };
                let x = b64(raw.x.as_deref()?)?;
                let y = b64(raw.y.as_deref()?)?;
                if x.len() != len || y.len() != len {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::Ec { curve, point }
            }
            _ => return None,
        };
        Some(Self {
            kid: raw.kid,
            alg: raw.alg,
            material,
        })
    }

    /// Whether this key may verify a token signed with `alg` (and naming `kid`, if it does).
    fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        if kid.is_some() && self.kid.as_deref() != kid {
            return false;
        }
        if self.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
            return false;
        }
        match (&self.material, alg.key_type()) {
            (Material::Rsa { .. }, ("RSA", None)) => true,
            (Material::Ec { curve, .. }, ("EC", Some(wanted))) => *curve == wanted,
            _ => false,
        }
    }

    fn verifies(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    Algorithm::Es256 | Algorithm::Es384 => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            Material::Ec { point, .. } => {
                let algorithm: &'static dyn VerificationAlgorithm = match alg {
                    Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }
}

/// The provider's signing keys (its `jwks_uri` document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Key>,
}

impl Jwks {
    /// Parses a JWK Set; keys nkvm cannot use are skipped, but at least one must be usable.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JwksError> {
        let raw: RawSet =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Document(e.to_string()))?;
        let keys: Vec<Key> = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
            .filter_map(Key::from_raw)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A compact JWS split into its parts, header checked.
#[derive(Debug)]
pub struct Compact<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Splits and decodes `token`, checking the header (algorithm, no `crit`).
pub fn parse(token: &str) -> Result<Compact<'_>, JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header = b64(header).ok_or(JwsError::Malformed)?;
    let payload = b64(payload).ok_or(JwsError::Malformed)?;
    let signature = b64(sig).ok_or(JwsError::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| JwsError::Header)?;
    if header.crit.is_some() {
        return Err(JwsError::Critical);
    }
    let alg = Algorithm::parse(&header.alg)
        .ok_or_else(|| JwsError::Algorithm(super::shown(&header.alg)))?;
    let signing_input = &token[..token.len() - sig.len() - 1];
    Ok(Compact {
        alg,
        kid: header.kid,
        signing_input,
        payload,
        signature,
    })
}

impl Compact<'_> {
    /// The payload, when one of `keys` that fits the header verifies the signature. A token
    /// naming a key id is checked with the key of that id; when the set has no key of that id, with
    /// the keys that have no id (a provider may publish its keys without ids yet name them in
    /// tokens). [`JwsError::NoKey`] means no key fits (the caller may refetch the key set once).
    pub fn verify(&self, keys: &Jwks) -> Result<&[u8], JwsError> {
        let kid = self.kid.as_deref();
        let named = kid.is_some_and(|kid| keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let mut candidates = keys
            .keys
            .iter()
            .filter(|k| {
                if kid.is_none() || named {
                    k.fits(self.alg, kid)
                } else {
                    k.kid.is_none() && k.fits(self.alg, None)
                }
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwsError::NoKey {
                alg: self.alg.as_str(),
                kid: self.kid.clone(),
            });
        }
        if candidates.any(|k| k.verifies(self.alg, self.signing_input.as_bytes(), &self.signature))
        {
            Ok(&self.payload)
        } else {
            Err(JwsError::Signature)
        }
    }
}
