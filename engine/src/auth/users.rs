//! Local users: the users file (YAML: name, role and an argon2id password hash per user), password
//! hashing, and password verification that takes as long for an unknown name as for a known one.
//!
//! The users file:
//!
//! ```yaml
//! users:
//!   - name: alice
//!     role: admin          # viewer | operator | admin
//!     password_hash: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! ```
//!
//! Hashes are PHC strings of argon2id version 19, as made by [`hash_password`] (or
//! `argon2 <salt> -id -e`); argon2i, argon2d and every other algorithm are refused. Errors name the
//! line or the user but never quote a hash.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::phc::{Output, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, PasswordHash, PasswordHasher, Version};
use serde::{Deserialize, Serialize};

use super::{RandomError, Role};

/// Longest user name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Longest password accepted, in bytes (longer ones are refused before any hashing).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Most memory a stored hash may ask for, in KiB (1 GiB): verification allocates it on every login.
pub const MAX_HASH_MEMORY_KIB: u32 = 1 << 20;

/// Most passes a stored hash may ask for.
pub const MAX_HASH_ITERATIONS: u32 = 64;

/// Most lanes a stored hash may ask for (they run one after the other here).
pub const MAX_HASH_PARALLELISM: u32 = 64;

/// Salt length of new hashes, in bytes.
const SALT_LEN: usize = 16;

/// Verified against when a name is unknown and no user exists to copy parameters from: argon2id
/// with the default parameters, a fixed salt and an all-zero output (which no password produces).
const DEFAULT_DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bmt2bS1kdW1teS1zYWx0IQ\
                                  $AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Salt of the dummy hash made from a user's parameters.
const DUMMY_SALT: &[u8; SALT_LEN] = b"nkvm-dummy-salt!";

/// True when `name` can be a user name: 1–64 of lowercase ASCII letters, digits, `.`, `_`, `@`
/// and `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'@' | b'-')
        })
}

/// An authenticated user: who, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// Cost parameters of new argon2id hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// The OWASP minimum for argon2id (m=19456 KiB, t=2, p=1): about 50–100 ms per hash.
    fn default() -> Self {
        Self {
            memory_kib: argon2::Params::DEFAULT_M_COST,
            iterations: argon2::Params::DEFAULT_T_COST,
            parallelism: argon2::Params::DEFAULT_P_COST,
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("invalid argon2 parameters: {0}")]
    Params(#[source] argon2::Error),
    #[error("failed to make a salt: {0}")]
    Salt(#[source] RandomError),
    #[error("failed to hash the password: {0}")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Why a stored password hash was refused. Never quotes the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashProblem {
    #[error("it is not a PHC string like `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` ({0})")]
    NotPhc(String),
    #[error("it is an {0} hash; only argon2id is accepted")]
    Algorithm(String),
    #[error("it does not say `v=19` (the only argon2 version accepted)")]
    Version,
    #[error("its argon2 parameters are invalid ({0})")]
    Params(String),
    #[error(
        "its parameters (m={memory_kib} KiB, t={iterations}, p={parallelism}) exceed the limits \
         (m ≤ {MAX_HASH_MEMORY_KIB}, t ≤ {MAX_HASH_ITERATIONS}, p ≤ {MAX_HASH_PARALLELISM})"
    )]
    TooCostly {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    #[error("it has no salt or no hash part")]
    Incomplete,
    #[error("its salt is shorter than {} bytes", argon2::MIN_SALT_LEN)]
    SaltTooShort,
}

/// Why the users could not be loaded or configured. Never quotes a password hash.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("failed to read the users file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: Box<UsersError>,
    },
    #[error("the users file is invalid{}: {message}", at_line(*.line, *.column))]
    Syntax {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error(
        "{who}: invalid user name: a name is 1 to {MAX_NAME_LEN} of lowercase letters, digits, `.`, \
         `_`, `@` and `-`"
    )]
    InvalidName { who: String },
    #[error("{who}: unknown role {role}: expected viewer, operator or admin")]
    InvalidRole { who: String, role: String },
    #[error("{who}: the password hash is refused: {problem}")]
    InvalidHash {
        who: String,
        #[source]
        problem: HashProblem,
    },
    #[error(
        "{who}: no password_hash (local logins need one; with --auth oidc or --auth proxy the \
         users file only grants roles and needs none)"
    )]
    MissingHash { who: String },
    #[error("{who}: this name is already configured")]
    Duplicate { who: String },
    #[error(
        "no users configured: there is no default user or password; list users (name, role, \
         argon2id password hash) in a users file, or configure a first admin with a name and a \
         password hash (make one with the password-hashing command)"
    )]
    NoUsers,
}

fn at_line(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line} column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// A configured value in an error message: quoted, unless it may be (part of) a password hash.
fn shown(value: &str) -> String {
    if value.contains('$') || value.len() > 2 * MAX_NAME_LEN {
        "(value withheld)".to_owned()
    } else {
        format!("{value:?}")
    }
}

/// Hashes `password` with argon2id, the default parameters and a random salt; returns the PHC
/// string to put in the users file.
///
/// Takes about 50–100 ms of CPU: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_password_with_params(password, HashParams::default())
}

/// [`hash_password`] with explicit cost parameters (tests use tiny ones).
pub fn hash_password_with_params(
    password: &str,
    params: HashParams,
) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(PasswordError::Params)?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Salt(RandomError(e)))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// Checks that `phc` is a usable argon2id hash (what the users file and [`Users::with_admin`]
/// accept), e.g. to validate configuration before starting.
pub fn check_hash(phc: &str) -> Result<(), HashProblem> {
    parse_hash(phc).map(|_| ())
}

fn parse_hash(phc: &str) -> Result<PasswordHash, HashProblem> {
    let hash = PasswordHash::new(phc).map_err(|e| HashProblem::NotPhc(e.to_string()))?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(HashProblem::Algorithm(hash.algorithm.as_str().to_owned()));
    }
    if hash.version != Some(Version::V0x13.into()) {
        return Err(HashProblem::Version);
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| HashProblem::Params(e.to_string()))?;
    if params.m_cost() > MAX_HASH_MEMORY_KIB
        || params.t_cost() > MAX_HASH_ITERATIONS
        || params.p_cost() > MAX_HASH_PARALLELISM
    {
        return Err(HashProblem::TooCostly {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        });
    }
    match (&hash.salt, &hash.hash) {
        (Some(salt), Some(_)) if salt.len() < argon2::MIN_SALT_LEN => {
            Err(HashProblem::SaltTooShort)
        }
        (Some(_), Some(_)) => Ok(hash),
        _ => Err(HashProblem::Incomplete),
    }
}

/// Whether `password` matches `hash` (a parsed, checked argon2id hash).
/// Working memory of argon2id verifications (about 19 MiB with the default cost), kept between
/// them by a long-lived verifying thread (see [`Users::verify_with`]). Allocating it afresh for
/// every verification fragments the allocator's heaps: measured on the server, a thread's memory
/// grew by several times the hash's cost over a few dozen logins.
#[derive(Default)]
pub struct VerifyMemory(Vec<argon2::Block>);

impl fmt::Debug for VerifyMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyMemory({} KiB)", self.0.len())
    }
}

/// Whether `password` matches `hash`, computed in `memory` (grown to the hash's cost when smaller,
/// never shrunk); the outputs are compared in constant time.
fn matches(hash: &PasswordHash, password: &str, memory: &mut VerifyMemory) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    if memory.0.len() < blocks {
        memory.0.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory.0[..blocks],
        )
        .is_ok()
        && super::constant_time_eq(&out, expected.as_bytes())
}

/// A hash with the same algorithm and cost as `hash` that no password matches.
fn dummy_like(hash: &PasswordHash) -> Option<PasswordHash> {
    let len = hash.hash.as_ref()?.len();
    Some(PasswordHash {
        salt: Some(Salt::new(DUMMY_SALT).ok()?),
        hash: Some(Output::new(&vec![0u8; len]).ok()?),
        ..hash.clone()
    })
}

#[derive(Clone)]
struct Entry {
    role: Role,
    hash: PasswordHash,
}

#[derive(Clone)]
struct Inner {
    entries: BTreeMap<String, Entry>,
    /// Verified against for unknown names: the cost of the first configured user's hash.
    dummy: Option<PasswordHash>,
}

/// The configured local users. Cheap to clone; `Debug` shows names and roles only.
#[derive(Clone)]
pub struct Users {
    inner: Arc<Inner>,
}

impl Default for Users {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.inner.entries.iter().map(|(name, e)| (name, e.role)))
            .finish()
    }
}

/// The users file as written (values checked after parsing, so that errors can withhold them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: Option<Vec<RawUser>>,
}

/// Reads the users file at `path` and parses it with `parse`; errors name the file.
fn read_users_file<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, UsersError>,
) -> Result<T, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|source| UsersError::File {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: String,
    /// Required for local logins; [`Users::load_roles`] (OIDC) reads files without it.
    #[serde(default)]
    password_hash: Option<String>,
}

impl Users {
    /// No users (refused by [`Users::non_empty`]; a start for [`Users::with_admin`]).
    pub fn empty() -> Self {
        Self {
            inner: Arc::new(Inner {
                entries: BTreeMap::new(),
                dummy: PasswordHash::new(DEFAULT_DUMMY_HASH).ok(),
            }),
        }
    }

    /// Reads and checks a users file (see the module documentation for the format).
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        read_users_file(path, Self::from_text)
    }

    /// Parses and checks the text of a users file. An empty file or an empty list gives no users.
    pub fn from_text(text: &str) -> Result<Self, UsersError> {
        let mut users = Self::empty();
        for (who, user, role) in Self::parse_entries(text)? {
            let hash = user
                .password_hash
                .ok_or_else(|| UsersError::MissingHash { who: who.clone() })?;
            users = users.with_user(who, user.name, role, &hash)?;
        }
        Ok(users)
    }

    /// Name → role from a users file, for logins whose identity comes from elsewhere (OIDC):
    /// `password_hash` may be absent and is ignored. Names, roles and duplicates are checked as
    /// in [`Users::load`].
    pub fn load_roles(path: &Path) -> Result<BTreeMap<String, Role>, UsersError> {
        read_users_file(path, Self::roles_from_text)
    }

    /// [`Users::load_roles`] on the text of a users file.
    pub fn roles_from_text(text: &str) -> Result<BTreeMap<String, Role>, UsersError> {
        let mut roles = BTreeMap::new();
        for (who, user, role) in Self::parse_entries(text)? {
            if !is_valid_name(&user.name) {
                return Err(UsersError::InvalidName { who });
            }
            if roles.insert(user.name, role).is_some() {
                return Err(UsersError::Duplicate { who });
            }
        }
        Ok(roles)
    }

    /// The entries of a users file with a description for errors and the parsed role.
    fn parse_entries(text: &str) -> Result<Vec<(String, RawUser, Role)>, UsersError> {
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            return Ok(Vec::new());
        }
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| {
            let location = e.location();
            let message = e.to_string();
            UsersError::Syntax {
                line: location.as_ref().map(serde_yaml::Location::line),
                column: location.as_ref().map(serde_yaml::Location::column),
                message: if message.contains('$') {
                    "its structure is invalid (details withheld: they would quote a password \
                     hash); expected `users:` followed by a list of `name`, `role`, \
                     `password_hash`"
                        .to_owned()
                } else {
                    message
                },
            }
        })?;
        let mut entries = Vec::new();
        for (index, user) in raw.users.unwrap_or_default().into_iter().enumerate() {
            let who = if is_valid_name(&user.name) {
                format!("user #{} {:?}", index + 1, user.name)
            } else {
                format!("user #{} {}", index + 1, shown(&user.name))
            };
            let role = user
                .role
                .parse::<Role>()
                .map_err(|_| UsersError::InvalidRole {
                    who: who.clone(),
                    role: shown(&user.role),
                })?;
            entries.push((who, user, role));
        }
        Ok(entries)
    }

    /// Adds an admin from configuration (e.g. environment variables); refuses a name already
    /// configured.
    pub fn with_admin(self, name: &str, phc: &str) -> Result<Self, UsersError> {
        let who = if is_valid_name(name) {
            format!("the configured admin {name:?}")
        } else {
            format!("the configured admin {}", shown(name))
        };
        self.with_user(who, name.to_owned(), Role::Admin, phc)
    }

    fn with_user(
        mut self,
        who: String,
        name: String,
        role: Role,
        phc: &str,
    ) -> Result<Self, UsersError> {
        if !is_valid_name(&name) {
            return Err(UsersError::InvalidName { who });
        }
        let hash = parse_hash(phc).map_err(|problem| UsersError::InvalidHash {
            who: who.clone(),
            problem,
        })?;
        let inner = Arc::make_mut(&mut self.inner);
        if inner.entries.contains_key(&name) {
            return Err(UsersError::Duplicate { who });
        }
        if inner.entries.is_empty()
            && let Some(dummy) = dummy_like(&hash)
        {
            inner.dummy = Some(dummy);
        }
        inner.entries.insert(name, Entry { role, hash });
        Ok(self)
    }

    /// `self`, or [`UsersError::NoUsers`] when no user is configured.
    pub fn non_empty(self) -> Result<Self, UsersError> {
        if self.is_empty() {
            Err(UsersError::NoUsers)
        } else {
            Ok(self)
        }
    }

    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// The user called `name`, without checking a password.
    pub fn get(&self, name: &str) -> Option<User> {
        self.inner.entries.get(name).map(|e| User {
            name: name.to_owned(),
            role: e.role,
        })
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<User> {
        self.inner
            .entries
            .iter()
            .map(|(name, e)| User {
                name: name.clone(),
                role: e.role,
            })
            .collect()
    }

    /// Name → role of every user (e.g. [`super::ProxyConfig::roles`]).
    pub fn roles(&self) -> BTreeMap<String, Role> {
        self.inner
            .entries
            .iter()
            .map(|(name, e)| (name.clone(), e.role))
            .collect()
    }

    /// The user, when `password` is theirs.
    ///
    /// CPU-heavy (one argon2id run, ~50–100 ms with default parameters): async code calls
    /// [`Users::verify_async`]. An unknown name costs the same: the password is checked against a
    /// dummy hash with the cost of the first configured user's hash, so timing does not reveal
    /// which names exist (give every user the same parameters). Empty and over-long passwords are
    /// refused at once. Names are compared exactly (they are lowercase).
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        self.verify_with(name, password, &mut VerifyMemory::default())
    }

    /// [`Users::verify`] computed in `memory`, which the caller keeps for its next verification
    /// (a dedicated verifying thread), so that repeated logins reuse one buffer.
    pub fn verify_with(
        &self,
        name: &str,
        password: &str,
        memory: &mut VerifyMemory,
    ) -> Option<User> {
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return None;
        }
        if let Some(entry) = self.inner.entries.get(name) {
            matches(&entry.hash, password, memory).then(|| User {
                name: name.to_owned(),
                role: entry.role,
            })
        } else {
            if let Some(dummy) = &self.inner.dummy {
                std::hint::black_box(matches(dummy, password, memory));
            }
            None
        }
    }

    /// [`Users::verify`] on tokio's blocking pool. `None` also when the task could not run.
    pub async fn verify_async(&self, name: &str, password: &str) -> Option<User> {
        let users = self.clone();
        let name = name.to_owned();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || users.verify(&name, &password))
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests;
