//! The destinations file (`--destinations FILE`, `NKVM_DESTINATIONS`): parsing and validation into
//! typed configurations. Unknown fields, inline secrets, bad names and bad values are refused with
//! a message that says what to write instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::secret::SecretRef;

/// Name of the built-in local destination (`<data-dir>/artifacts`), the default default.
pub const LOCAL: &str = "local";

/// Default S3 part size: 64 MiB, so 10,000 parts hold 625 GiB; with a size hint the part size
/// grows to fit (see `s3::part_size_for`).
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
/// Smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// A whole destinations file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationsConfig {
    /// Name of the default destination (`local` unless the file says otherwise).
    pub default_destination: String,
    /// Every destination, `local` included (added when the file does not define it).
    pub destinations: Vec<DestinationConfig>,
}

/// One named destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: KindConfig,
}

/// The fields of each type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindConfig {
    Local(LocalConfig),
    S3(S3Config),
    Sftp(SftpConfig),
    Ftps(FtpsConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Directory the keys are stored under.
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `https://host[:port]` (or `http://` for a server on a trusted network).
    pub endpoint: url::Url,
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub region: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
    /// PEM bundle of the CAs trusted for the endpoint, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Smallest multipart part size in bytes.
    pub part_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Remote directory (absolute, or relative to the login directory; empty: the login directory).
    pub path: String,
    pub private_key_file: PathBuf,
    pub known_hosts_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpsConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretRef,
    pub path: String,
    pub ca_file: Option<PathBuf>,
    /// Plain FTP without TLS: user, password and data cross the network in clear text.
    pub insecure_plain_ftp: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    default_destination: Option<String>,
    #[serde(default)]
    destinations: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: String,
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    path_style: bool,
    access_key_id_env: Option<String>,
    access_key_id_file: Option<PathBuf>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    part_size: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    host: String,
    port: Option<u16>,
    user: String,
    #[serde(default)]
    path: String,
    private_key_file: PathBuf,
    known_hosts_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFtps {
    host: String,
    port: Option<u16>,
    user: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default)]
    path: String,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_plain_ftp: bool,
}

/// Fields that would hold a secret inline, and what to write instead.
const INLINE_SECRETS: &[(&str, &str)] = &[
    (
        "access_key_id",
        "access_key_id_env (an environment variable) or access_key_id_file (a file)",
    ),
    (
        "secret_access_key",
        "secret_access_key_env (an environment variable) or secret_access_key_file (a file)",
    ),
    (
        "secret_key",
        "secret_access_key_env or secret_access_key_file",
    ),
    ("access_key", "access_key_id_env or access_key_id_file"),
    (
        "session_token",
        "nothing: temporary credentials are not supported",
    ),
    (
        "password",
        "password_env (an environment variable) or password_file (a file); SFTP uses private_key_file",
    ),
    (
        "private_key",
        "private_key_file (a file, e.g. a mounted Secret)",
    ),
    (
        "passphrase",
        "an unencrypted private_key_file kept in a Secret",
    ),
];

impl DestinationsConfig {
    /// Reads and validates a destinations file. Relative paths inside it are relative to the
    /// file's directory; `local` defaults to `<data_dir>/artifacts`.
    pub fn load(path: &Path, data_dir: &Path) -> Result<Self, (String, String)> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                origin.clone(),
                format!("cannot read it: {e}: check --destinations / NKVM_DESTINATIONS"),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, data_dir).map_err(|message| (origin, message))
    }

    /// Only the built-in `local` destination (no destinations file).
    #[must_use]
    pub fn local_only(data_dir: &Path) -> Self {
        Self {
            default_destination: LOCAL.to_owned(),
            destinations: vec![default_local(data_dir)],
        }
    }

    /// Parses and validates the YAML text of a destinations file.
    pub fn parse(text: &str, base: &Path, data_dir: &Path) -> Result<Self, String> {
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| {
            format!("{e} (expected `destinations:` and optionally `default_destination:`)")
        })?;
        let mut names = BTreeSet::new();
        let mut destinations = Vec::with_capacity(raw.destinations.len() + 1);
        for (index, value) in raw.destinations.into_iter().enumerate() {
            let destination = parse_destination(value, index, base, data_dir)?;
            if !names.insert(destination.name.clone()) {
                return Err(format!(
                    "destination {:?} is defined twice: names must be unique",
                    destination.name
                ));
            }
            destinations.push(destination);
        }
        if !names.contains(LOCAL) {
            destinations.insert(0, default_local(data_dir));
            names.insert(LOCAL.to_owned());
        }
        let default_destination = raw.default_destination.unwrap_or_else(|| LOCAL.to_owned());
        if !names.contains(&default_destination) {
            return Err(format!(
                "default_destination {default_destination:?} is not one of the destinations ({})",
                names.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Self {
            default_destination,
            destinations,
        })
    }
}

fn default_local(data_dir: &Path) -> DestinationConfig {
    DestinationConfig {
        name: LOCAL.to_owned(),
        kind: KindConfig::Local(LocalConfig {
            path: data_dir.join("artifacts"),
        }),
    }
}

fn parse_destination(
    value: Value,
    index: usize,
    base: &Path,
    data_dir: &Path,
) -> Result<DestinationConfig, String> {
    let Value::Mapping(mut map) = value else {
        return Err(format!(
            "destinations[{index}] must be a mapping with `name`, `type` and the type's fields"
        ));
    };
    let name = take_string(&mut map, "name")
        .ok_or_else(|| format!("destinations[{index}] has no `name`"))?;
    validate_name(&name).map_err(|e| format!("destinations[{index}]: {e}"))?;
    let kind = take_string(&mut map, "type").ok_or_else(|| {
        format!("destination {name:?} has no `type` (one of local, s3, sftp, ftps)")
    })?;
    let at = |e: String| format!("destination {name:?} (type {kind}): {e}");
    refuse_inline_secrets(&map).map_err(at)?;
    let rest = Value::Mapping(map);
    let kind = match kind.as_str() {
        "local" => {
            let raw: RawLocal = from_value(rest).map_err(at)?;
            let path = raw
                .path
                .map_or_else(|| data_dir.join("artifacts"), |p| base.join(p));
            KindConfig::Local(LocalConfig { path })
        }
        "s3" => KindConfig::S3(s3_config(from_value(rest).map_err(at)?, base).map_err(at)?),
        "sftp" => {
            let raw: RawSftp = from_value(rest).map_err(at)?;
            validate_host(&raw.host).map_err(at)?;
            validate_remote_path(&raw.path).map_err(at)?;
            KindConfig::Sftp(SftpConfig {
                host: raw.host,
                port: raw.port.unwrap_or(22),
                user: non_empty("user", raw.user).map_err(at)?,
                path: raw.path,
                private_key_file: base.join(raw.private_key_file),
                known_hosts_file: base.join(raw.known_hosts_file),
            })
        }
        "ftps" => {
            let raw: RawFtps = from_value(rest).map_err(at)?;
            validate_host(&raw.host).map_err(at)?;
            validate_remote_path(&raw.path).map_err(at)?;
            KindConfig::Ftps(FtpsConfig {
                host: raw.host,
                port: raw.port.unwrap_or(21),
                user: non_empty("user", raw.user).map_err(at)?,
                password: secret_ref("password", raw.password_env, raw.password_file, base)
                    .map_err(at)?,
                path: raw.path,
                ca_file: raw.ca_file.map(|p| base.join(p)),
                insecure_plain_ftp: raw.insecure_plain_ftp,
            })
        }
        other => {
            return Err(format!(
                "destination {name:?}: unknown type {other:?} (one of local, s3, sftp, ftps; SCP and \
                 rsync targets are served by sftp)"
            ));
        }
    };
    Ok(DestinationConfig { name, kind })
}

fn s3_config(raw: RawS3, base: &Path) -> Result<S3Config, String> {
    let endpoint = url::Url::parse(&raw.endpoint)
        .map_err(|e| format!("endpoint {:?} is not a URL: {e}", raw.endpoint))?;
    if !matches!(endpoint.scheme(), "https" | "http")
        || endpoint.host_str().is_none()
        || endpoint.query().is_some()
        || !endpoint.username().is_empty()
        || endpoint.password().is_some()
    {
        return Err(format!(
            "endpoint {:?} must be https://host[:port] (or http://), without credentials or query",
            raw.endpoint
        ));
    }
    let bucket = non_empty("bucket", raw.bucket)?;
    if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
        return Err(format!(
            "bucket {bucket:?} must be a bucket name (no `/`, no spaces); put key prefixes in `prefix`"
        ));
    }
    let part_size = match raw.part_size {
        None => DEFAULT_PART_SIZE,
        Some(value) => parse_size(&value)?,
    };
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Err(format!(
            "part_size {part_size} is outside what S3 accepts: 5MiB to 5GiB"
        ));
    }
    Ok(S3Config {
        endpoint,
        bucket,
        prefix: normalize_prefix(&raw.prefix)?,
        region: raw.region.unwrap_or_else(|| "us-east-1".to_owned()),
        path_style: raw.path_style,
        access_key_id: secret_ref(
            "access_key_id",
            raw.access_key_id_env,
            raw.access_key_id_file,
            base,
        )?,
        secret_access_key: secret_ref(
            "secret_access_key",
            raw.secret_access_key_env,
            raw.secret_access_key_file,
            base,
        )?,
        ca_file: raw.ca_file.map(|p| base.join(p)),
        part_size,
    })
}

fn take_string(map: &mut Mapping, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_yaml::from_value(value).map_err(|e| e.to_string())
}

fn refuse_inline_secrets(map: &Mapping) -> Result<(), String> {
    for (field, instead) in INLINE_SECRETS {
        if map.contains_key(*field) {
            return Err(format!(
                "`{field}` would hold a secret inline, which is refused (files and command lines \
                 leak): use {instead}"
            ));
        }
    }
    Ok(())
}

fn secret_ref(
    what: &str,
    env: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
) -> Result<SecretRef, String> {
    match (env, file) {
        (Some(env), None) if !env.is_empty() => Ok(SecretRef::Env(env)),
        (None, Some(file)) => Ok(SecretRef::File(base.join(file))),
        (Some(_), Some(_)) => Err(format!("give either {what}_env or {what}_file, not both")),
        _ => Err(format!(
            "{what} is missing: give {what}_env (an environment variable) or {what}_file (a file)"
        )),
    }
}

fn non_empty(field: &str, value: String) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(format!("`{field}` must not be empty"))
    } else {
        Ok(value)
    }
}

/// Destination names: 1 to 63 characters, lower-case letters, digits and `-`, starting and ending
/// with a letter or digit (a DNS label), so they are safe in URLs, labels and file names.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is invalid: use 1-63 lower-case letters, digits and `-`, starting and \
             ending with a letter or digit"
        ))
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.contains(['/', ' ', '@']) || host.chars().any(char::is_control) {
        return Err(format!(
            "host {host:?} must be a host name or IP address (no user, port or path)"
        ));
    }
    Ok(())
}

fn validate_remote_path(path: &str) -> Result<(), String> {
    if path.chars().any(char::is_control) || path.split('/').any(|s| s == "..") {
        return Err(format!(
            "path {path:?} must be a directory without `..` or control characters"
        ));
    }
    Ok(())
}

/// Normalizes a key prefix: no leading or trailing `/`, no empty, `.` or `..` segments.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    validate_key(trimmed).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
    Ok(trimmed.to_owned())
}

/// A key relative to a destination: `/`-separated segments, none empty, `.` or `..`, no leading
/// `/`, no control characters, no backslash.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "key {key:?} holds a control character or backslash"
        ));
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(format!(
            "key {key:?} must be relative `/`-separated names without empty, `.` or `..` parts"
        ));
    }
    Ok(())
}

/// A size in bytes: an integer, or a number with `KiB`, `MiB` or `GiB`.
fn parse_size(value: &Value) -> Result<u64, String> {
    let text = match value {
        Value::Number(n) => {
            return n
                .as_u64()
                .ok_or_else(|| format!("part_size {n} must be a positive number of bytes"));
        }
        Value::String(s) => s.trim(),
        _ => return Err("part_size must be bytes or a string like 64MiB".to_owned()),
    };
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("part_size {text:?} must look like 64MiB, 1GiB or 67108864"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => {
            return Err(format!(
                "part_size unit {other:?} is not one of B, KiB, MiB, GiB"
            ));
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("part_size {text:?} is too large"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
