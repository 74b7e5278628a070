//! The option groups of `nkvm serve`: pasted kubeconfigs, operations (metrics, schedules,
//! notifications, retention defaults) and OpenID Connect login.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::config::RetentionDefaults;

/// What pasted kubeconfigs may point at (with --allow-pasted-kubeconfig).
#[derive(Debug, Clone, Args)]
pub struct PastedArgs {
    /// Accept pasted kubeconfigs whose clusters set `proxy-url` [default: refuse them]
    #[arg(
        long,
        env = "NKVM_PASTED_ALLOW_PROXY_URL",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub pasted_allow_proxy_url: bool,

    /// Accept pasted kubeconfigs whose clusters set `insecure-skip-tls-verify` [default: refuse
    /// them]
    #[arg(
        long,
        env = "NKVM_PASTED_ALLOW_INSECURE_TLS",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub pasted_allow_insecure_tls: bool,

    /// API servers pasted kubeconfigs may name, as HOST or HOST:PORT (comma-separated) [default:
    /// any]
    #[arg(
        long,
        env = "NKVM_PASTED_API_SERVERS",
        value_name = "HOST[:PORT],...",
        value_delimiter = ','
    )]
    pub pasted_api_servers: Vec<String>,
}

impl PastedArgs {
    /// The engine's policy from the options.
    pub fn policy(&self) -> nkvm_engine::connection::PastedPolicy {
        nkvm_engine::connection::PastedPolicy {
            allow_proxy_url: self.pasted_allow_proxy_url,
            allow_insecure_tls: self.pasted_allow_insecure_tls,
            api_servers: self
                .pasted_api_servers
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// Schedules, retention, metrics and notifications of `nkvm serve`.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Serve /metrics on this separate address (e.g. 0.0.0.0:9090) instead of behind a token on
    /// the main listener
    #[arg(long, env = "NKVM_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// File holding the bearer token a scrape must present (or set NKVM_METRICS_TOKEN); required
    /// for /metrics on the main listener, enforced on --metrics-listen when given
    #[arg(long, env = "NKVM_METRICS_TOKEN_FILE", value_name = "PATH")]
    pub metrics_token_file: Option<std::path::PathBuf>,

    /// Webhook receivers of failure, overdue and success notifications (YAML; see
    /// docs/schedules.md)
    #[arg(long, env = "NKVM_NOTIFICATIONS", value_name = "FILE")]
    pub notifications: Option<std::path::PathBuf>,

    /// Seconds between two looks of the scheduler at its schedules (changes made with `nkvm
    /// schedule` apply within this time)
    #[arg(
        long,
        env = "NKVM_SCHEDULE_TICK_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub schedule_tick_seconds: u64,

    /// Seconds between two scans of the cluster by the scheduler (annotations, new PVCs, overdue
    /// PVCs); a due firing always scans first
    #[arg(
        long,
        env = "NKVM_SCHEDULE_REFRESH_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(5..=86_400)
    )]
    pub schedule_refresh_seconds: u64,

    /// Minutes between two retention passes (one also follows every firing)
    #[arg(
        long,
        env = "NKVM_PRUNE_EVERY_MINUTES",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=10_080)
    )]
    pub prune_every_minutes: u64,

    #[command(flatten)]
    pub retention: RetentionDefaults,
}

/// Environment variable holding the metrics bearer token.
pub const METRICS_TOKEN_ENV: &str = "NKVM_METRICS_TOKEN";

impl OpsArgs {
    /// The metrics token, from the file or the environment (never both).
    pub(super) fn metrics_token(
        &self,
    ) -> anyhow::Result<Option<nkvm_engine::destination::secret::Secret>> {
        use nkvm_engine::destination::secret::SecretRef;
        let reference = match (
            &self.metrics_token_file,
            std::env::var_os(METRICS_TOKEN_ENV),
        ) {
            (Some(_), Some(_)) => {
                anyhow::bail!("both {METRICS_TOKEN_ENV} and --metrics-token-file are set; keep one")
            }
            (Some(path), None) => SecretRef::File(path.clone()),
            (None, Some(_)) => SecretRef::Env(METRICS_TOKEN_ENV.to_owned()),
            (None, None) => return Ok(None),
        };
        reference
            .resolve()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("metrics token: {e}"))
    }
}

/// How users log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthKind {
    Local,
    Proxy,
    Oidc,
    None,
}

/// Options of `--auth oidc`. The client secret is never an option value (command lines are
/// visible to every local user): it comes from NKVM_OIDC_CLIENT_SECRET or a file.
#[derive(Debug, Clone, Args)]
pub struct OidcArgs {
    /// The OpenID provider's issuer URL, exactly as its discovery document states it (https; http
    /// only on a loopback host)
    #[arg(long, env = "NKVM_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,

    /// Client id registered at the provider
    #[arg(long, env = "NKVM_OIDC_CLIENT_ID", value_name = "ID")]
    pub oidc_client_id: Option<String>,

    /// File holding the client secret (or set NKVM_OIDC_CLIENT_SECRET; neither: a public client)
    #[arg(long, env = "NKVM_OIDC_CLIENT_SECRET_FILE", value_name = "PATH")]
    pub oidc_client_secret_file: Option<std::path::PathBuf>,

    /// Public URL of nkvm's /auth/oidc/callback, as registered at the provider
    #[arg(long, env = "NKVM_OIDC_REDIRECT_URL", value_name = "URL")]
    pub oidc_redirect_url: Option<String>,

    /// Scopes to request (space- or comma-separated; `openid` is always added)
    #[arg(
        long,
        env = "NKVM_OIDC_SCOPES",
        value_name = "SCOPES",
        default_value = "openid profile email"
    )]
    pub oidc_scopes: String,

    /// Claim holding the nkvm user name (without it, `email`, only when `email_verified` is true)
    #[arg(
        long,
        env = "NKVM_OIDC_USERNAME_CLAIM",
        value_name = "CLAIM",
        default_value = "preferred_username"
    )]
    pub oidc_username_claim: String,

    /// Claim holding the user's groups
    #[arg(
        long,
        env = "NKVM_OIDC_GROUPS_CLAIM",
        value_name = "CLAIM",
        default_value = "groups"
    )]
    pub oidc_groups_claim: String,

    /// Groups whose members are admins
    #[arg(
        long,
        env = "NKVM_OIDC_ADMIN_GROUP",
        value_name = "GROUP,...",
        value_delimiter = ','
    )]
    pub oidc_admin_group: Vec<String>,

    /// Groups whose members are operators
    #[arg(
        long,
        env = "NKVM_OIDC_OPERATOR_GROUP",
        value_name = "GROUP,...",
        value_delimiter = ','
    )]
    pub oidc_operator_group: Vec<String>,

    /// Groups whose members are viewers
    #[arg(
        long,
        env = "NKVM_OIDC_VIEWER_GROUP",
        value_name = "GROUP,...",
        value_delimiter = ','
    )]
    pub oidc_viewer_group: Vec<String>,
}

/// Environment variable holding the OIDC client secret.
pub const OIDC_SECRET_ENV: &str = "NKVM_OIDC_CLIENT_SECRET";

impl OidcArgs {
    /// The settings of `--auth oidc`; `roles` come from the users file.
    pub(super) fn settings(
        &self,
        roles: std::collections::BTreeMap<String, nkvm_engine::auth::Role>,
    ) -> anyhow::Result<nkvm_engine::auth::oidc::OidcSettings> {
        use nkvm_engine::auth::Role;
        use nkvm_engine::auth::oidc::{ClientSecret, OidcSettings, RoleMapping};

        let issuer = self
            .oidc_issuer
            .clone()
            .context("--auth oidc needs --oidc-issuer (NKVM_OIDC_ISSUER)")?;
        let client_id = self
            .oidc_client_id
            .clone()
            .context("--auth oidc needs --oidc-client-id (NKVM_OIDC_CLIENT_ID)")?;
        let redirect_url = self.oidc_redirect_url.clone().context(
            "--auth oidc needs --oidc-redirect-url (NKVM_OIDC_REDIRECT_URL): the public URL of \
             nkvm's /auth/oidc/callback",
        )?;
        let from_env = std::env::var(OIDC_SECRET_ENV).ok();
        let client_secret = match (&self.oidc_client_secret_file, from_env) {
            (Some(_), Some(_)) => anyhow::bail!(
                "both {OIDC_SECRET_ENV} and --oidc-client-secret-file are set; keep one"
            ),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the client secret file {}", path.display())
                })?;
                Some(ClientSecret::new(&text).with_context(|| {
                    format!("the client secret file {} is empty", path.display())
                })?)
            }
            (None, Some(text)) => Some(
                ClientSecret::new(&text)
                    .with_context(|| format!("{OIDC_SECRET_ENV} is set but empty"))?,
            ),
            (None, None) => None,
        };
        let mut mapping = RoleMapping {
            users: roles,
            ..RoleMapping::default()
        };
        for (groups, role) in [
            (&self.oidc_viewer_group, Role::Viewer),
            (&self.oidc_operator_group, Role::Operator),
            (&self.oidc_admin_group, Role::Admin),
        ] {
            for group in groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
                mapping.add_group(group, role);
            }
        }
        if mapping.is_empty() {
            anyhow::bail!(
                "--auth oidc grants nobody a role: list users and their roles in --users-file \
                 (no password hash needed), or name groups with --oidc-admin-group, \
                 --oidc-operator-group or --oidc-viewer-group"
            );
        }
        Ok(OidcSettings {
            issuer,
            client_id,
            client_secret,
            redirect_url,
            scopes: self
                .oidc_scopes
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            username_claim: self.oidc_username_claim.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            roles: mapping,
        })
    }
}
