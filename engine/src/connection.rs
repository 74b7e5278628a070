//! Cluster connection: kubeconfig file (with context selection), a pasted kubeconfig held in memory
//! only (refused when it could run a command or read a file), or the in-cluster service account.

use std::{fmt, path::PathBuf, time::Duration};

use kube::{
    Client, Config,
    config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError},
};
use serde::{Deserialize, Serialize};

use crate::kubeapi;

/// Largest pasted kubeconfig accepted, in bytes.
pub const MAX_PASTED_KUBECONFIG_BYTES: usize = 256 * 1024;

/// Where the cluster credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum ConnectionSource {
    /// A kubeconfig file. `path: None` follows kubectl's rules: the `KUBECONFIG` variable (a list of
    /// files, merged), else `~/.kube/config`. `context: None` uses the current context.
    KubeconfigFile {
        path: Option<PathBuf>,
        context: Option<String>,
    },
    /// A kubeconfig given as text (pasted in the browser). Kept in memory only; refused when it has
    /// `exec`, `auth-provider` or a file path (see [`validate_pasted_kubeconfig`]).
    KubeconfigText {
        text: String,
        context: Option<String>,
    },
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster,
}

impl fmt::Debug for ConnectionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KubeconfigFile { path, context } => f
                .debug_struct("KubeconfigFile")
                .field("path", path)
                .field("context", context)
                .finish(),
            Self::KubeconfigText { text, context } => f
                .debug_struct("KubeconfigText")
                .field("text", &format_args!("<redacted, {} bytes>", text.len()))
                .field("context", context)
                .finish(),
            Self::InCluster => f.write_str("InCluster"),
        }
    }
}

impl ConnectionSource {
    /// `kubeconfig`, `pasted` or `in-cluster` (as shown in [`ClusterInfo::source`]).
    pub fn label(&self) -> &'static str {
        match self {
            Self::KubeconfigFile { .. } => "kubeconfig",
            Self::KubeconfigText { .. } => "pasted",
            Self::InCluster => "in-cluster",
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Read and write timeout of each API request.
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the UI and logs may show about a connection (never credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// `kubeconfig`, `pasted` or `in-cluster`.
    pub source: String,
    /// The kubeconfig context used; `None` in-cluster.
    pub context: Option<String>,
    /// The apiserver URL.
    pub server: String,
    /// What runs made through this connection record as their cluster (see
    /// [`connection_identity`]); public, never a credential.
    pub identity: String,
}

/// A connected client and a description of it.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub info: ClusterInfo,
    config: Config,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The client configuration (e.g. to build a client with other timeouts for long exec streams).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Asks the apiserver for its version (one GET `/version`), to surface bad addresses, TLS problems
    /// and rejected credentials right after connecting. Returns the version (`v1.35.4`).
    pub async fn probe(&self, timeout: Duration) -> Result<String, ConnectError> {
        let server = self.info.server.clone();
        match kubeapi::timed(timeout, self.client.apiserver_version()).await {
            Ok(info) => Ok(info.git_version),
            Err(err) if kubeapi::timed_out(&err).is_some() => Err(ConnectError::ProbeTimeout {
                server,
                after: timeout,
            }),
            Err(source) => Err(ConnectError::Probe {
                server,
                status: kubeapi::http_status(&source),
                advice: kubeapi::advice(
                    &source,
                    kubeapi::Call::cluster_wide("get", "the /version endpoint"),
                ),
                source,
            }),
        }
    }
}

/// One context of a kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    pub name: String,
    pub cluster: String,
    pub user: Option<String>,
    pub namespace: Option<String>,
}

/// The contexts of a kubeconfig, sorted by name, and its current context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contexts {
    pub contexts: Vec<ContextEntry>,
    pub current: Option<String>,
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("failed to read the kubeconfig {}; check the path and its permissions", describe_path(.path.as_ref()))]
    ReadKubeconfig {
        path: Option<PathBuf>,
        #[source]
        source: KubeconfigError,
    },
    #[error("the kubeconfig has no context named {context:?} (available: {available})")]
    UnknownContext { context: String, available: String },
    #[error("the kubeconfig sets no current-context; choose a context (available: {available})")]
    NoCurrentContext { available: String },
    #[error("failed to load context {context:?} of the kubeconfig")]
    LoadContext {
        context: String,
        #[source]
        source: KubeconfigError,
    },
    #[error("the pasted kubeconfig is {size} bytes; at most {max} bytes are accepted")]
    PastedTooLarge { size: usize, max: usize },
    #[error("the pasted text is not a usable kubeconfig: {detail}")]
    PastedInvalid { detail: String },
    #[error(
        "the pasted kubeconfig's {entry_kind} {entry:?} sets `{field}`, which is refused: {reason}"
    )]
    PastedForbiddenField {
        field: &'static str,
        entry_kind: &'static str,
        entry: String,
        reason: &'static str,
    },
    #[error(
        "no in-cluster service account found (not running in a pod?); use a kubeconfig instead"
    )]
    InCluster {
        #[source]
        source: InClusterError,
    },
    #[error("failed to build the Kubernetes client for {server}")]
    BuildClient {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot use the apiserver at {server}: {advice}")]
    Probe {
        server: String,
        status: Option<u16>,
        advice: String,
        #[source]
        source: kube::Error,
    },
    #[error("the apiserver at {server} did not answer within {}s; check the address and network", .after.as_secs_f64())]
    ProbeTimeout { server: String, after: Duration },
}

fn describe_path(path: Option<&PathBuf>) -> String {
    match path {
        Some(path) => format!("{}", path.display()),
        None => "from KUBECONFIG or ~/.kube/config".to_owned(),
    }
}

const REASON_EXEC: &str =
    "it would run a command on the server; use a token or client-certificate-data/client-key-data";
const REASON_AUTH_PROVIDER: &str =
    "auth providers can run commands and read files on the server; use a token instead";
const REASON_FILE: &str = "it names a file on the server; paste the data inline instead \
     (token, client-certificate-data, client-key-data, certificate-authority-data)";

/// Parses and checks a pasted kubeconfig: at most [`MAX_PASTED_KUBECONFIG_BYTES`], valid YAML with the
/// kubeconfig structure, at least one context, and no entry (used or not) with `exec`, `auth-provider`,
/// `tokenFile`, `client-certificate`, `client-key` or `certificate-authority` (the `-data` variants
/// and `token` are fine). Errors never quote the text, which holds credentials.
pub fn validate_pasted_kubeconfig(text: &str) -> Result<Kubeconfig, ConnectError> {
    if text.len() > MAX_PASTED_KUBECONFIG_BYTES {
        return Err(ConnectError::PastedTooLarge {
            size: text.len(),
            max: MAX_PASTED_KUBECONFIG_BYTES,
        });
    }
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|err| ConnectError::PastedInvalid {
        detail: describe_parse_error(&err),
    })?;
    for named in &kubeconfig.auth_infos {
        let Some(user) = &named.auth_info else {
            continue;
        };
        let forbidden = [
            ("exec", user.exec.is_some(), REASON_EXEC),
            (
                "auth-provider",
                user.auth_provider.is_some(),
                REASON_AUTH_PROVIDER,
            ),
            ("tokenFile", user.token_file.is_some(), REASON_FILE),
            (
                "client-certificate",
                user.client_certificate.is_some(),
                REASON_FILE,
            ),
            ("client-key", user.client_key.is_some(), REASON_FILE),
        ];
        if let Some((field, _, reason)) = forbidden.into_iter().find(|(_, set, _)| *set) {
            return Err(ConnectError::PastedForbiddenField {
                field,
                entry_kind: "user",
                entry: named.name.clone(),
                reason,
            });
        }
    }
    for named in &kubeconfig.clusters {
        if named
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
        {
            return Err(ConnectError::PastedForbiddenField {
                field: "certificate-authority",
                entry_kind: "cluster",
                entry: named.name.clone(),
                reason: REASON_FILE,
            });
        }
    }
    if kubeconfig.contexts.is_empty() {
        return Err(ConnectError::PastedInvalid {
            detail: "it defines no contexts".to_owned(),
        });
    }
    Ok(kubeconfig)
}

/// A parse error's position without the text around it (the text holds credentials).
fn describe_parse_error(err: &KubeconfigError) -> String {
    match err {
        KubeconfigError::Parse(inner) => match inner.location() {
            Some(at) => format!(
                "invalid YAML or not a kubeconfig (problem at line {}, column {})",
                at.line(),
                at.column()
            ),
            None => "invalid YAML or not a kubeconfig".to_owned(),
        },
        _ => "it could not be merged into one kubeconfig (conflicting documents)".to_owned(),
    }
}

fn context_summary(kubeconfig: &Kubeconfig) -> Contexts {
    let mut contexts: Vec<ContextEntry> = kubeconfig
        .contexts
        .iter()
        .map(|named| {
            let context = named.context.clone().unwrap_or_default();
            ContextEntry {
                name: named.name.clone(),
                cluster: context.cluster,
                user: context.user,
                namespace: context.namespace,
            }
        })
        .collect();
    contexts.sort_by(|a, b| a.name.cmp(&b.name));
    Contexts {
        contexts,
        current: kubeconfig.current_context.clone(),
    }
}

fn read_kubeconfig_file(path: Option<&PathBuf>) -> Result<Kubeconfig, ConnectError> {
    let read = match path {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    read.map_err(|source| ConnectError::ReadKubeconfig {
        path: path.cloned(),
        source,
    })
}

/// Reads the kubeconfig of a source (for the text source: validates it).
fn load_kubeconfig(source: &ConnectionSource) -> Result<Option<Kubeconfig>, ConnectError> {
    match source {
        ConnectionSource::KubeconfigFile { path, .. } => {
            read_kubeconfig_file(path.as_ref()).map(Some)
        }
        ConnectionSource::KubeconfigText { text, .. } => validate_pasted_kubeconfig(text).map(Some),
        ConnectionSource::InCluster => Ok(None),
    }
}

/// The contexts of the source's kubeconfig (empty for in-cluster).
pub fn list_contexts(source: &ConnectionSource) -> Result<Contexts, ConnectError> {
    Ok(match load_kubeconfig(source)? {
        Some(kubeconfig) => context_summary(&kubeconfig),
        None => Contexts {
            contexts: Vec::new(),
            current: None,
        },
    })
}

/// The context to use: the requested one (which must exist), else the current context.
fn select_context(
    kubeconfig: &Kubeconfig,
    requested: Option<&str>,
) -> Result<String, ConnectError> {
    let available = || {
        let mut names: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        names.sort_unstable();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let Some(name) = requested.or(kubeconfig.current_context.as_deref()) else {
        return Err(ConnectError::NoCurrentContext {
            available: available(),
        });
    };
    if kubeconfig.contexts.iter().any(|c| c.name == name) {
        Ok(name.to_owned())
    } else {
        Err(ConnectError::UnknownContext {
            context: name.to_owned(),
            available: available(),
        })
    }
}

/// The client configuration of a kubeconfig's context (`requested`, else the current one).
async fn config_of(
    kubeconfig: Kubeconfig,
    requested: Option<&str>,
) -> Result<(Config, Option<String>), ConnectError> {
    let context = select_context(&kubeconfig, requested)?;
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ConnectError::LoadContext {
            context: context.clone(),
            source,
        })?;
    Ok((config, Some(context)))
}

/// Builds a client for the source. Makes no request (see [`Cluster::probe`]).
pub async fn connect(
    source: &ConnectionSource,
    options: &ConnectOptions,
) -> Result<Cluster, ConnectError> {
    let (mut config, context) = match source {
        ConnectionSource::InCluster => (
            Config::incluster().map_err(|source| ConnectError::InCluster { source })?,
            None,
        ),
        ConnectionSource::KubeconfigFile { path, context } => {
            let kubeconfig = read_kubeconfig_file(path.as_ref())?;
            config_of(kubeconfig, context.as_deref()).await?
        }
        ConnectionSource::KubeconfigText { text, context } => {
            let kubeconfig = validate_pasted_kubeconfig(text)?;
            config_of(kubeconfig, context.as_deref()).await?
        }
    };
    config.read_timeout = Some(options.request_timeout);
    config.write_timeout = Some(options.request_timeout);
    config.connect_timeout = Some(options.connect_timeout);
    config.reset_reader_on_write = true;
    let server = config.cluster_url.to_string();
    let identity = connection_identity(&config.cluster_url, config.root_cert.as_deref());
    let client = Client::try_from(config.clone()).map_err(|source| ConnectError::BuildClient {
        server: server.clone(),
        source,
    })?;
    tracing::debug!(source = source.label(), ?context, %server, "connected");
    Ok(Cluster {
        client,
        info: ClusterInfo {
            source: source.label().to_owned(),
            context,
            server,
            identity,
        },
        config,
    })
}

mod identity;
mod pasted;
pub use identity::connection_identity;
pub use pasted::{PastedPolicy, PolicyError};

#[cfg(test)]
mod tests;
