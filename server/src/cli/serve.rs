//! `nkvm serve`: opens the history database, connects, recovers what a previous run left behind,
//! starts the scheduler (schedules, retention, metrics, notifications), then serves the web app
//! until SIGINT/SIGTERM; on the way out it stops the scheduler's firings, cancels running backups
//! and waits (bounded) for their helper pods to be deleted and their runs recorded.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use nkvm_engine::schedule::{ClusterBackend, Scheduler, SchedulerOptions};
use nkvm_engine::workspace::{DEFAULT_MAX_SESSIONS, Workspace, WorkspaceOptions};

use crate::config::{BackupTuning, GlobalOptions};

mod args;
pub use args::{AuthKind, OidcArgs, OpsArgs, PastedArgs};

/// How long shutdown waits for cancelled backups to clean up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long,
        env = "NKVM_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Let browser sessions connect with a pasted kubeconfig (held in memory only) [default: no]
    #[arg(
        long,
        env = "NKVM_ALLOW_PASTED_KUBECONFIG",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub allow_pasted_kubeconfig: bool,

    #[command(flatten)]
    pub pasted: PastedArgs,

    /// Flag PVCs whose last successful backup is older than this many hours (0: never)
    #[arg(
        long,
        env = "NKVM_STALE_AFTER_HOURS",
        value_name = "HOURS",
        default_value_t = 24
    )]
    pub stale_after_hours: u64,

    /// How the inventory page reads the cluster: `live` keeps a watch per kind and pushes changes to
    /// open pages (needs `watch` beside `list`); `scan` lists everything again for each page load
    #[arg(
        long,
        env = "NKVM_INVENTORY_MODE",
        value_name = "MODE",
        value_enum,
        default_value_t = InventoryMode::Live
    )]
    pub inventory_mode: InventoryMode,

    #[command(flatten)]
    pub tuning: BackupTuning,

    #[command(flatten)]
    pub ops: Box<OpsArgs>,

    /// How users log in: `local` (users file and/or a first admin from the environment), `proxy`
    /// (a trusted reverse proxy names the user in a header), `oidc` (an OpenID provider), or
    /// `none` (loopback only)
    #[arg(long, env = "NKVM_AUTH", value_name = "MODE", value_enum, default_value_t = AuthKind::Local)]
    pub auth: AuthKind,

    /// Users file (YAML: users with name, role, argon2id password hash; see docs/security.md). With
    /// --auth oidc it only grants roles, and entries need no password hash
    #[arg(long, env = "NKVM_USERS_FILE", value_name = "PATH")]
    pub users_file: Option<std::path::PathBuf>,

    /// Name of a first admin whose password hash is in NKVM_ADMIN_PASSWORD_HASH
    #[arg(long, env = "NKVM_ADMIN_USER", value_name = "NAME")]
    pub admin_user: Option<String>,

    /// Header a trusted proxy puts the user name in (with --auth proxy)
    #[arg(
        long,
        env = "NKVM_PROXY_USER_HEADER",
        value_name = "HEADER",
        default_value = "X-Forwarded-User"
    )]
    pub proxy_user_header: String,

    /// Addresses of the trusted proxies, as CIDRs: with --auth proxy, the only peers whose identity
    /// header is believed; with local and OIDC login, the peers (e.g. the Ingress controller) whose
    /// X-Forwarded-For names the client for rate limits and the audit trail
    #[arg(
        long,
        env = "NKVM_TRUSTED_PROXIES",
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// Role of proxy users missing from the users file (with --auth proxy) [default: refuse them]
    #[arg(long, env = "NKVM_PROXY_DEFAULT_ROLE", value_name = "ROLE")]
    pub proxy_default_role: Option<String>,

    #[command(flatten)]
    pub oidc: Box<OidcArgs>,

    /// Host names users reach nkvm by (e.g. the Ingress host; `*.example.com` for subdomains, `*`
    /// for any). Requests naming another host are refused (DNS rebinding); `localhost` and IP
    /// addresses are always accepted [default: only those]
    #[arg(
        long,
        env = "NKVM_ALLOWED_HOSTS",
        value_name = "HOST,...",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Mark the session cookie `Secure` (set it when users reach nkvm over HTTPS; with --auth oidc
    /// an https --oidc-redirect-url implies it). It also makes the site https: the cookie is named
    /// `__Host-nkvm_session`, responses carry HSTS, and page origins must be https
    #[arg(
        long,
        env = "NKVM_COOKIE_SECURE",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub cookie_secure: bool,

    /// Password verifications (argon2id, about 19 MiB each) running at once; further logins wait
    /// in a bounded queue or are refused with 503
    #[arg(
        long,
        env = "NKVM_LOGIN_CONCURRENCY",
        value_name = "N",
        default_value_t = crate::auth::load::DEFAULT_MAX_VERIFICATIONS,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub login_concurrency: u16,

    /// Forget a browser session's connection choice after this many idle hours
    #[arg(
        long,
        env = "NKVM_SESSION_IDLE_HOURS",
        value_name = "HOURS",
        default_value_t = 12,
        value_parser = clap::value_parser!(u64).range(1..=720)
    )]
    pub session_idle_hours: u64,
}

/// Environment variable holding the first admin's argon2id hash (never a password).
pub const ADMIN_HASH_ENV: &str = "NKVM_ADMIN_PASSWORD_HASH";

/// How the web server's inventory reads the cluster (`--inventory-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryMode {
    /// Watches, pushed updates.
    Live,
    /// One scan per page load.
    Scan,
}

impl ServeArgs {
    /// The authentication mode from the options (with `oidc`, after discovering the provider);
    /// every refusal says what to configure.
    pub async fn auth_mode(&self) -> anyhow::Result<crate::auth::AuthMode> {
        use crate::auth::AuthMode;
        use nkvm_engine::auth::Role;
        use nkvm_engine::auth::oidc::OidcClient;
        use nkvm_engine::auth::proxy::ProxyConfig;
        use nkvm_engine::auth::users::Users;

        let file_users = || -> anyhow::Result<Users> {
            Ok(match &self.users_file {
                Some(path) => Users::load(path)
                    .with_context(|| format!("cannot load the users file {}", path.display()))?,
                None => Users::empty(),
            })
        };
        match self.auth {
            AuthKind::Oidc => {
                // The users file only grants roles here: entries need no password hash.
                let roles = match &self.users_file {
                    Some(path) => Users::load_roles(path).with_context(|| {
                        format!("cannot load the users file {}", path.display())
                    })?,
                    None => std::collections::BTreeMap::default(),
                };
                let settings = self.oidc.settings(roles)?;
                let issuer = settings.issuer.clone();
                let client = OidcClient::discover(settings)
                    .await
                    .with_context(|| format!("cannot set up OIDC login with {issuer}"))?;
                tracing::info!(%issuer, "OIDC login configured");
                Ok(AuthMode::Oidc(client))
            }
            AuthKind::None => {
                if !self.listen.ip().is_loopback() {
                    anyhow::bail!(
                        "--auth none is only allowed on a loopback address (--listen {}); configure users \
                         (--users-file or NKVM_ADMIN_USER + {ADMIN_HASH_ENV}) or --auth proxy",
                        self.listen
                    );
                }
                tracing::warn!(
                    "authentication is disabled (--auth none): every local caller is an admin"
                );
                Ok(AuthMode::Disabled)
            }
            AuthKind::Local => {
                let users = match (&self.admin_user, std::env::var(ADMIN_HASH_ENV).ok()) {
                    (Some(name), Some(hash)) => file_users()?
                        .with_admin(name, hash.trim())
                        .context("cannot add the first admin from NKVM_ADMIN_USER")?,
                    (Some(_), None) => anyhow::bail!(
                        "NKVM_ADMIN_USER is set but {ADMIN_HASH_ENV} is not: put the admin's argon2id hash \
                         there (`nkvm hash-password` prints one)"
                    ),
                    (None, _) => file_users()?,
                };
                let users = users.non_empty().context(
                    "no users configured: give --users-file, or NKVM_ADMIN_USER and \
                     NKVM_ADMIN_PASSWORD_HASH (hash a password with `nkvm hash-password`); there is \
                     no default password",
                )?;
                Ok(AuthMode::Local(users))
            }
            AuthKind::Proxy => {
                let trusted = self.trusted_proxy_networks()?;
                if trusted.is_empty() {
                    anyhow::bail!(
                        "--auth proxy needs --trusted-proxies (the proxy's addresses as CIDRs): a \
                         header from anyone else is ignored"
                    );
                }
                let mut config = ProxyConfig::new(self.proxy_user_header.clone(), trusted);
                // The proxy authenticates: the users file only grants roles (no password hashes).
                config.roles = match &self.users_file {
                    Some(path) => Users::load_roles(path).with_context(|| {
                        format!("cannot load the users file {}", path.display())
                    })?,
                    None => std::collections::BTreeMap::default(),
                };
                config.default_role = self
                    .proxy_default_role
                    .as_deref()
                    .map(str::parse::<Role>)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--proxy-default-role: {e}"))?;
                Ok(AuthMode::Proxy(config))
            }
        }
    }

    /// The `--trusted-proxies` networks (none when not given).
    pub fn trusted_proxy_networks(&self) -> anyhow::Result<Vec<nkvm_engine::auth::proxy::Cidr>> {
        // An empty NKVM_TRUSTED_PROXIES (as in deploy/base) means none.
        let given: Vec<&str> = self
            .trusted_proxies
            .iter()
            .map(|cidr| cidr.trim())
            .filter(|cidr| !cidr.is_empty())
            .collect();
        if given.is_empty() {
            return Ok(Vec::new());
        }
        nkvm_engine::auth::proxy::Cidr::parse_list(&given.join(",")).context("--trusted-proxies")
    }

    /// The host names, scheme and trusted proxies of the web server.
    pub fn site_policy(&self) -> anyhow::Result<crate::web::SitePolicy> {
        let mut hosts = self
            .allowed_hosts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>();
        // The OIDC callback's host is where users come back to: always one of the site's names.
        let redirect_host = self
            .oidc
            .oidc_redirect_url
            .as_deref()
            .filter(|_| self.auth == AuthKind::Oidc)
            .and_then(|url| nkvm_engine::auth::oidc::parse_redirect_url(url).ok())
            .and_then(|url| url.host_str().map(str::to_owned));
        if let Some(host) = &redirect_host
            && host.parse::<std::net::IpAddr>().is_err()
            && !host.starts_with('[')
        {
            hosts.push(host);
        }
        Ok(crate::web::SitePolicy {
            hosts: crate::web::AllowedHosts::parse(hosts).context("--allowed-hosts")?,
            https: self.secure_cookies(),
            trusted_proxies: self.trusted_proxy_networks()?,
        })
    }

    /// Whether cookies are `Secure`: `--cookie-secure`, or `--auth oidc` with an https redirect
    /// URL (users then reach nkvm over TLS, and the state and session cookies must not travel in
    /// the clear).
    pub fn secure_cookies(&self) -> bool {
        self.cookie_secure
            || (self.auth == AuthKind::Oidc
                && self
                    .oidc
                    .oidc_redirect_url
                    .as_deref()
                    .and_then(|url| nkvm_engine::auth::oidc::parse_redirect_url(url).ok())
                    .is_some_and(|url| url.scheme() == "https"))
    }

    pub fn stale_after(&self) -> Option<Duration> {
        (self.stale_after_hours > 0)
            .then(|| Duration::from_secs(self.stale_after_hours.saturating_mul(3600)))
    }
}

pub async fn run(global: &GlobalOptions, args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Before anything slow: a server without a way to log in must not start.
    let site = args.site_policy()?;
    let auth_mode = args.auth_mode().await?;
    let data = global.open_data_dir("nkvm serve").await?;
    let (instance, store) = (data.instance.clone(), data.store.clone());
    let source = global.connection_source()?;
    let cluster = super::connect(global).await?;
    tracing::info!(
        source = %cluster.info.source,
        context = ?cluster.info.context,
        server = %cluster.info.server,
        data_dir = %global.data_dir.display(),
        helper_image = ?global.helper_image,
        allow_pasted_kubeconfig = args.allow_pasted_kubeconfig,
        "starting nkvm"
    );
    let options = WorkspaceOptions {
        kubeconfig: global.kubeconfig.clone(),
        connect: global.connect_options(),
        backup: global.backup_options(&args.tuning, instance)?,
        allow_pasted: args.allow_pasted_kubeconfig,
        pasted: args.pasted.policy(),
        in_cluster_available: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        session_idle: Duration::from_secs(args.session_idle_hours.saturating_mul(3600)),
        max_sessions: DEFAULT_MAX_SESSIONS,
    };
    let workspace = Workspace::new(cluster, source, store.clone(), options)
        .context("cannot set up the backup engine")?;

    recover(&workspace, global.allowlist().as_deref()).await?;

    let expiry = {
        let workspace = workspace.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_mins(5));
            loop {
                tick.tick().await;
                let expired = workspace.expire_idle();
                if expired > 0 {
                    tracing::debug!(expired, "forgot idle sessions");
                }
            }
        })
    };

    let destinations = global.destinations()?;
    let context = nkvm_app::ssr::AppContext {
        workspace: workspace.clone(),
        inventory: global.inventory_options(Vec::new()),
        stale_after: args.stale_after(),
        live_inventory: args.inventory_mode == InventoryMode::Live,
        schedules: nkvm_app::ssr::ScheduleSettings {
            default_retention: args.ops.retention.retention(),
            destinations: destinations.iter().map(|d| d.name().to_owned()).collect(),
        },
    };
    let live = args.inventory_mode == InventoryMode::Live;
    let background = start_background(global, &args.ops, &workspace, destinations, live).await?;
    let auth = crate::auth::Auth::new(
        auth_mode,
        nkvm_engine::auth::sessions::SessionStore::default(),
        nkvm_engine::auth::ratelimit::LoginLimiter::default(),
        workspace.clone(),
        args.secure_cookies(),
        args.trusted_proxy_networks()?,
        crate::auth::load::VerifyGate::new(
            usize::from(args.login_concurrency),
            crate::auth::load::DEFAULT_MAX_QUEUED,
        ),
    );
    let housekeeping = {
        let auth = auth.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_mins(1));
            loop {
                tick.tick().await;
                auth.expire(std::time::Instant::now());
            }
        })
    };
    let memory = tokio::spawn(crate::memory::release_after_bursts());
    let served = crate::web::serve(args.listen, context, auth, background.ops.clone(), site).await;
    housekeeping.abort();
    expiry.abort();
    memory.abort();
    // No new firing from here; cancelled runs still end and are recorded (history, metrics).
    let (scheduler_done, ()) = tokio::join!(
        background.scheduler.shutdown(SHUTDOWN_GRACE),
        shut_down(&workspace)
    );
    if !scheduler_done {
        tracing::warn!("scheduled runs still ending at exit; the next start recovers them");
    }
    background.stop.cancel();
    for task in background.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    store.close().await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Start-up recovery of the default connection's backups and restores, logged.
async fn recover(workspace: &Workspace, allowlist: Option<&[String]>) -> anyhow::Result<()> {
    let report = workspace
        .default_connection()
        .backups
        .recover(allowlist)
        .await
        .context("start-up recovery failed (history database)")?;
    tracing::info!(
        interrupted = report.interrupted.len(),
        helpers_deleted = report.helpers_deleted.len(),
        partials_removed = report.partials_removed.len(),
        uploads_aborted = report.uploads_aborted.len(),
        "start-up recovery done"
    );
    for warning in &report.warnings {
        tracing::warn!(%warning, "start-up recovery");
    }
    let restores = workspace
        .default_connection()
        .restores
        .recover(allowlist)
        .await
        .context("start-up recovery of restores failed (history database)")?;
    tracing::info!(
        interrupted = restores.interrupted.len(),
        helpers_deleted = restores.helpers_deleted.len(),
        scaled_back = ?restores.scaled_back,
        pvcs_deleted = ?restores.pvcs_deleted,
        "start-up recovery of restores done"
    );
    Ok(())
}

/// What runs beside the web server: the scheduler, the metrics and notification follower, the
/// metrics listener.
struct Background {
    scheduler: Scheduler<ClusterBackend>,
    ops: crate::ops::Ops,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the scheduler (on the server's own connection; with `live_inventory`, it reads the
/// connection's live inventory instead of scanning), the follower that counts runs and notifies,
/// and the metrics listener when one is configured.
async fn start_background(
    global: &GlobalOptions,
    args: &OpsArgs,
    workspace: &Workspace,
    destinations: nkvm_engine::destination::Destinations,
    live_inventory: bool,
) -> anyhow::Result<Background> {
    use nkvm_engine::observe::{self, Metrics, Notifier};
    let hooks = match &args.notifications {
        Some(path) => {
            nkvm_engine::observe::notify::load_config(path).map_err(anyhow::Error::msg)?
        }
        None => Vec::new(),
    };
    let notifier = Notifier::new(hooks).map_err(anyhow::Error::msg)?;
    let metrics = Metrics::new();
    observe::load_last_successes(workspace.store(), &metrics)
        .await
        .context("cannot read the history for the metrics")?;
    let ops = crate::ops::Ops {
        metrics: Some(metrics.clone()),
        token: args.metrics_token()?,
    };
    let connection = workspace.default_connection();
    let mut backend = ClusterBackend::new(
        connection.clone(),
        workspace.store().clone(),
        global.inventory_options(Vec::new()),
    );
    if live_inventory {
        backend = backend.reading_live_inventory();
    }
    let options = SchedulerOptions {
        tick: Duration::from_secs(args.schedule_tick_seconds),
        refresh: Duration::from_secs(args.schedule_refresh_seconds),
        prune_every: Duration::from_secs(args.prune_every_minutes.saturating_mul(60)),
        default_retention: args.retention.retention(),
        data_dir: global.data_dir.clone(),
        allowlist: global.allowlist(),
    };
    let scheduler = Scheduler::new(
        backend,
        workspace.store().clone(),
        destinations,
        options,
        metrics.clone(),
        notifier.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = vec![
        {
            let scheduler = scheduler.clone();
            tokio::spawn(async move { scheduler.run().await })
        },
        tokio::spawn(observe::follow(
            connection.backups.clone(),
            metrics,
            notifier,
            stop.clone(),
        )),
    ];
    if let Some(listen) = args.metrics_listen {
        let (ops, stop) = (ops.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = crate::ops::serve_metrics(listen, ops, stop).await {
                tracing::error!(error = %format!("{error:#}"), "metrics listener");
            }
        }));
    }
    Ok(Background {
        scheduler,
        ops,
        stop,
        tasks,
    })
}

/// Cancels every running backup and waits (at most [`SHUTDOWN_GRACE`]) until their cleanup ran.
async fn shut_down(workspace: &Workspace) {
    let connections = workspace.connections().await;
    let cancelled: usize = connections
        .iter()
        .map(|c| c.backups.cancel_all() + c.restores.cancel_all())
        .sum();
    if cancelled == 0 {
        return;
    }
    tracing::info!(
        cancelled,
        "cancelling running backups and restores before exiting"
    );
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while connections
        .iter()
        .any(|c| !c.backups.active_runs().is_empty() || !c.restores.active().is_empty())
    {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("backups still cleaning up at exit; the next start recovers them");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests;
