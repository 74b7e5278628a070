//! The web server's cluster connections and which one each browser session uses: the connection the
//! server started with, other contexts of its kubeconfig, the in-cluster service account, and pasted
//! kubeconfigs (held in memory by one session only, never written anywhere). Each connection has its
//! own [`BackupEngine`] and [`RestoreEngine`], so runs belong to the server: a reload or a second
//! tab of the same session (or another session on the same connection) sees the same runs.
//! Each connection also has a [`RunScope`]: the history rows its sessions may see, download,
//! restore and verify (those recorded with its cluster identity; runs recorded before identities
//! were count as the default connection's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::stream_client;
use crate::backup::{BackupEngine, BackupOptions};
use crate::connection::{
    self, Cluster, ClusterInfo, ConnectError, ConnectOptions, ConnectionSource, Contexts,
};
use crate::restore::{RestoreEngine, RestoreOptions};
use crate::store::{RunScope, Store};

/// Sessions kept at most; the least recently seen is forgotten first.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Settings of a [`Workspace`].
#[derive(Debug, Clone)]
pub struct WorkspaceOptions {
    /// The server's kubeconfig file, for other contexts (`None`: `KUBECONFIG`, else
    /// `~/.kube/config`). Ignored when the server started in-cluster.
    pub kubeconfig: Option<PathBuf>,
    pub connect: ConnectOptions,
    /// Settings of every connection's backup engine.
    pub backup: BackupOptions,
    /// Whether sessions may connect with a pasted kubeconfig.
    pub allow_pasted: bool,
    /// What a pasted kubeconfig may point at.
    pub pasted: connection::PastedPolicy,
    /// Whether the in-cluster service account may be chosen (the server runs in a pod).
    pub in_cluster_available: bool,
    /// A session unseen for this long falls back to nothing (its pasted connection is dropped).
    pub session_idle: Duration,
    pub max_sessions: usize,
}

/// A connected cluster and the engines that back up and restore its PVCs.
#[derive(Debug)]
pub struct Connection {
    pub cluster: Cluster,
    pub backups: BackupEngine,
    pub restores: RestoreEngine,
    /// The inventory scans of this connection in flight (one at a time, shared by its callers).
    pub scans: crate::inventory::SharedScans,
    /// The watch-based inventory, started by the first page that asks ([`Connection::live`]).
    live: std::sync::OnceLock<crate::inventory::LiveInventory>,
}

impl Connection {
    /// Builds the connection's backup engine (a second client without read timeout for exec
    /// streams). Its runs record the connection's identity ([`ClusterInfo::identity`]).
    pub fn new(
        cluster: Cluster,
        store: Store,
        mut options: BackupOptions,
    ) -> Result<Self, WorkspaceError> {
        options.cluster = Some(cluster.info.identity.clone());
        let stream = stream_client(cluster.config()).map_err(WorkspaceError::StreamClient)?;
        let backups = BackupEngine::with_clients(cluster.client.clone(), stream, store, options);
        let restores = RestoreEngine::new(backups.clone(), RestoreOptions::default());
        Ok(Self {
            cluster,
            backups,
            restores,
            scans: crate::inventory::SharedScans::default(),
            live: std::sync::OnceLock::new(),
        })
    }

    /// The connection's live inventory, started on first use with `options` (the server's, the
    /// same for every caller). It stops when the connection is dropped.
    ///
    /// # Errors
    /// The scope's error, or the watch client's.
    pub fn live(
        &self,
        options: &crate::inventory::InventoryOptions,
    ) -> Result<&crate::inventory::LiveInventory, crate::inventory::InventoryError> {
        if let Some(live) = self.live.get() {
            return Ok(live);
        }
        let started = crate::inventory::LiveInventory::start(self.cluster.config(), options)?;
        // Two first callers at once: the loser's watches stop when `started` is dropped.
        Ok(self.live.get_or_init(|| started))
    }

    pub fn info(&self) -> &ClusterInfo {
        &self.cluster.info
    }

    /// The runs this connection's sessions may see: its engine's scope (set by the
    /// [`Workspace`]), else the runs recorded with its identity.
    pub fn scope(&self) -> RunScope {
        self.backups
            .options()
            .scope
            .clone()
            .unwrap_or_else(|| RunScope {
                cluster: self.cluster.info.identity.clone(),
                unrecorded: false,
            })
    }
}

/// Why a session could not switch connections. The texts say what to do.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("building the streaming client failed: {0}")]
    StreamClient(#[source] kube::Error),
    #[error(
        "pasted kubeconfigs are disabled on this server; use one of its contexts, or start it \
         with --allow-pasted-kubeconfig"
    )]
    PastedDisabled,
    #[error("{0}")]
    PastedPolicy(#[from] connection::PolicyError),
    /// Connecting with a pasted kubeconfig failed. One wording for every cause (refused, timed
    /// out, TLS, 401, not Kubernetes), so that pasting is no port scanner; the cause is logged.
    #[error(
        "could not connect with the pasted kubeconfig: no Kubernetes API server accepted these          credentials at its address; check the address, certificate-authority-data and the          credentials (the server's log has the cause)"
    )]
    PastedUnreachable,
    #[error("this server does not run in a pod, so it has no service account to use")]
    InClusterUnavailable,
    #[error("this server uses its pod's service account and has no kubeconfig contexts")]
    NoKubeconfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SharedKey {
    Context(String),
    InCluster,
}

#[derive(Debug)]
struct Session {
    connection: Arc<Connection>,
    last_seen: Instant,
}

#[derive(Debug)]
struct Inner {
    options: WorkspaceOptions,
    store: Store,
    default: Arc<Connection>,
    default_source: ConnectionSource,
    /// Connections any session may share (contexts of the server's kubeconfig, in-cluster).
    shared: tokio::sync::Mutex<HashMap<SharedKey, Arc<Connection>>>,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Every connection of the server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workspace {
    inner: Arc<Inner>,
}

impl Workspace {
    /// A workspace whose sessions start on `default` (made from `default_source`).
    pub fn new(
        default: Cluster,
        default_source: ConnectionSource,
        store: Store,
        options: WorkspaceOptions,
    ) -> Result<Self, WorkspaceError> {
        // Runs recorded before identities were (no cluster) count as the default connection's.
        let scope = RunScope {
            cluster: default.info.identity.clone(),
            unrecorded: true,
        };
        let default = Arc::new(Connection::new(
            default,
            store.clone(),
            BackupOptions {
                scope: Some(scope),
                ..options.backup.clone()
            },
        )?);
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                store,
                default,
                default_source,
                shared: tokio::sync::Mutex::default(),
                sessions: Mutex::default(),
            }),
        })
    }

    pub fn options(&self) -> &WorkspaceOptions {
        &self.inner.options
    }

    /// The history database shared by every connection.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The connection the server started with.
    pub fn default_connection(&self) -> Arc<Connection> {
        self.inner.default.clone()
    }

    /// The connection `session` uses (the default one until it chooses another), and marks the
    /// session as seen.
    pub fn connection(&self, session: &str) -> Arc<Connection> {
        let Ok(mut sessions) = self.inner.sessions.lock() else {
            return self.default_connection();
        };
        match sessions.get_mut(session) {
            Some(entry) if entry.last_seen.elapsed() <= self.inner.options.session_idle => {
                entry.last_seen = Instant::now();
                entry.connection.clone()
            }
            Some(_) => {
                sessions.remove(session);
                self.default_connection()
            }
            None => self.default_connection(),
        }
    }

    /// Every connection in use (default, shared and the sessions' pasted ones), without repeats.
    pub async fn connections(&self) -> Vec<Arc<Connection>> {
        let mut all = vec![self.default_connection()];
        all.extend(self.inner.shared.lock().await.values().cloned());
        if let Ok(sessions) = self.inner.sessions.lock() {
            all.extend(sessions.values().map(|s| s.connection.clone()));
        }
        let mut seen = Vec::new();
        all.retain(|c| {
            let ptr = Arc::as_ptr(c);
            if seen.contains(&ptr) {
                false
            } else {
                seen.push(ptr);
                true
            }
        });
        all
    }

    /// The contexts of the server's kubeconfig.
    pub fn contexts(&self) -> Result<Contexts, WorkspaceError> {
        let source = self.kubeconfig_source(None)?;
        Ok(connection::list_contexts(&source)?)
    }

    fn kubeconfig_source(
        &self,
        context: Option<String>,
    ) -> Result<ConnectionSource, WorkspaceError> {
        match &self.inner.default_source {
            ConnectionSource::KubeconfigFile { path, .. } => Ok(ConnectionSource::KubeconfigFile {
                path: path
                    .clone()
                    .or_else(|| self.inner.options.kubeconfig.clone()),
                context,
            }),
            ConnectionSource::InCluster | ConnectionSource::KubeconfigText { .. } => {
                match &self.inner.options.kubeconfig {
                    Some(path) => Ok(ConnectionSource::KubeconfigFile {
                        path: Some(path.clone()),
                        context,
                    }),
                    None => Err(WorkspaceError::NoKubeconfig),
                }
            }
        }
    }

    /// Switches `session` to `context` of the server's kubeconfig (shared with other sessions on
    /// the same context). The connection is probed first, so bad credentials show here.
    pub async fn use_context(
        &self,
        session: &str,
        context: &str,
    ) -> Result<ClusterInfo, WorkspaceError> {
        if self.inner.default.info().context.as_deref() == Some(context)
            && matches!(
                self.inner.default_source,
                ConnectionSource::KubeconfigFile { .. }
            )
        {
            return Ok(self.use_default(session));
        }
        let source = self.kubeconfig_source(Some(context.to_owned()))?;
        let connection = self
            .shared(SharedKey::Context(context.to_owned()), source)
            .await?;
        Ok(self.assign(session, connection))
    }

    /// Switches `session` to the pod's service account.
    pub async fn use_in_cluster(&self, session: &str) -> Result<ClusterInfo, WorkspaceError> {
        if self.inner.default_source == ConnectionSource::InCluster {
            return Ok(self.use_default(session));
        }
        if !self.inner.options.in_cluster_available {
            return Err(WorkspaceError::InClusterUnavailable);
        }
        let connection = self
            .shared(SharedKey::InCluster, ConnectionSource::InCluster)
            .await?;
        Ok(self.assign(session, connection))
    }

    /// Connects `session` with a pasted kubeconfig (validated, probed, held by this session only).
    pub async fn use_pasted(
        &self,
        session: &str,
        text: String,
        context: Option<String>,
    ) -> Result<ClusterInfo, WorkspaceError> {
        if !self.inner.options.allow_pasted {
            return Err(WorkspaceError::PastedDisabled);
        }
        let kubeconfig = connection::validate_pasted_kubeconfig(&text)?;
        self.inner.options.pasted.check(&kubeconfig)?;
        let source = ConnectionSource::KubeconfigText { text, context };
        let connection = self.open(&source).await.map_err(|error| {
            tracing::warn!(%error, "connecting with a pasted kubeconfig failed");
            WorkspaceError::PastedUnreachable
        })?;
        Ok(self.assign(session, Arc::new(connection)))
    }

    /// Puts `session` back on the server's own connection.
    pub fn use_default(&self, session: &str) -> ClusterInfo {
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.remove(session);
        }
        self.inner.default.info().clone()
    }

    /// Forgets `session` (logout): a pasted connection is dropped once its runs end.
    pub fn forget(&self, session: &str) {
        self.use_default(session);
    }

    /// Forgets sessions idle for longer than the idle limit; returns how many.
    pub fn expire_idle(&self) -> usize {
        let idle = self.inner.options.session_idle;
        let Ok(mut sessions) = self.inner.sessions.lock() else {
            return 0;
        };
        let before = sessions.len();
        sessions.retain(|_, s| s.last_seen.elapsed() <= idle);
        before - sessions.len()
    }

    /// Sessions with a connection other than the default.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().map_or(0, |s| s.len())
    }

    async fn shared(
        &self,
        key: SharedKey,
        source: ConnectionSource,
    ) -> Result<Arc<Connection>, WorkspaceError> {
        let mut shared = self.inner.shared.lock().await;
        if let Some(existing) = shared.get(&key) {
            return Ok(existing.clone());
        }
        let connection = Arc::new(self.open(&source).await?);
        shared.insert(key, connection.clone());
        Ok(connection)
    }

    async fn open(&self, source: &ConnectionSource) -> Result<Connection, WorkspaceError> {
        let options = &self.inner.options;
        let cluster = connection::connect(source, &options.connect).await?;
        cluster.probe(options.connect.request_timeout).await?;
        let scope = RunScope {
            unrecorded: cluster.info.identity == self.inner.default.info().identity,
            cluster: cluster.info.identity.clone(),
        };
        let backup = BackupOptions {
            scope: Some(scope),
            ..options.backup.clone()
        };
        Connection::new(cluster, self.inner.store.clone(), backup)
    }

    fn assign(&self, session: &str, connection: Arc<Connection>) -> ClusterInfo {
        let info = connection.info().clone();
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            if sessions.len() >= self.inner.options.max_sessions
                && !sessions.contains_key(session)
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                session.to_owned(),
                Session {
                    connection,
                    last_seen: Instant::now(),
                },
            );
        }
        info
    }
}

#[cfg(test)]
mod tests;
