//! Command-line interface of `nkvm`: subcommand definitions and dispatch.

mod backup;
mod contexts;
mod destinations;
mod history;
mod inventory;
mod prune;
#[cfg(test)]
mod reference;
mod restore;
mod schedule;
mod serve;
mod table;
mod verify;
mod watch;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use nkvm_engine::connection::{self, Cluster};

use crate::config::GlobalOptions;

/// nkvm: inventory and file-level backups of Kubernetes PVCs.
#[derive(Debug, Parser)]
#[command(name = "nkvm", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app
    #[command(after_help = "Examples:
  nkvm serve                                   # http://127.0.0.1:8080, users in ./nkvm-data
  nkvm serve --listen 0.0.0.0:8080 --users-file users.yaml --cookie-secure
  nkvm --in-cluster serve --auth oidc          # in a pod; see docs/deploy.md")]
    Serve(serve::ServeArgs),
    /// List PVCs with their owners, consumers, last backup and flags
    #[command(after_help = "Examples:
  nkvm inventory                               # every PVC the credentials may read
  nkvm inventory -n shop -n blog -o wide       # two namespaces, every column
  nkvm inventory -o json | jq '.[] | select(.flags | index(\"never-backed-up\"))'")]
    Inventory(inventory::InventoryArgs),
    /// Back up PVCs into verified .tar.gz archives (NS/PVC...)
    #[command(after_help = "Examples:
  nkvm backup shop/web-data                    # one PVC
  nkvm backup shop/web-data shop/db-0 --concurrency 2 -o json
  timeout 2h nkvm backup blog/media            # SIGTERM cancels and cleans up (exit 143)")]
    Backup(backup::BackupArgs),
    /// List recent backup runs from the history database
    ///
    /// Every run of the data directory, whichever cluster it was taken from: the CLI is the data
    /// directory's owner. The web UI shows a session only the runs of its connection's cluster.
    #[command(after_help = "Examples:
  nkvm history                                 # the 50 newest runs
  nkvm history --pvc shop/web-data --limit 5
  nkvm history --status failed -o wide")]
    History(history::HistoryArgs),
    /// Manage backup schedules (they run inside `nkvm serve`)
    Schedule {
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// Apply retention now: delete backups no retention keeps (--dry-run: only show)
    Prune(prune::PruneArgs),
    /// List or check the backup destinations (--destinations FILE)
    Destinations(destinations::DestinationsArgs),
    /// Verify stored backups: sha256, gzip, every tar entry, counts against the manifest
    Verify(verify::VerifyArgs),
    /// Restore a backup into a new PVC (--to-pvc) or into its own PVC (--in-place)
    Restore(restore::RestoreArgs),
    /// Restore the newest backup of a PVC into a throwaway PVC, check it, remove it
    Drill(restore::DrillArgs),
    /// Print the argon2id hash of a password read from standard input (for the users file)
    #[command(after_help = "Example:
  printf '%s\\n' \"$PASSWORD\" | nkvm hash-password")]
    HashPassword,
    /// List the kubeconfig's contexts
    #[command(after_help = "Example:
  nkvm --kubeconfig ~/.kube/prod contexts")]
    Contexts {
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Output format of listing subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns that fit a terminal
    Table,
    /// Aligned columns, every one of them
    Wide,
    /// JSON for scripts (the documented contract)
    Json,
}

impl Output {
    /// The table layout for this format and `--no-headers`.
    pub fn layout(self, no_headers: bool) -> table::Layout {
        table::Layout {
            wide: self == Self::Wide,
            no_headers,
        }
    }
}

/// Seconds since an RFC 3339 time as a compact age (`3h`), relative to `now`.
pub fn age_of(text: &str, now: jiff::Timestamp) -> Option<String> {
    let at: jiff::Timestamp = text.parse().ok()?;
    Some(nkvm_engine::domain::format::format_age(
        now.duration_since(at).as_secs(),
    ))
}

impl Cli {
    /// Log level when `RUST_LOG` is unset: `info` for the server, `warn` for one-shot commands.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Serve(args) => serve::run(&self.global, args).await,
            Command::Inventory(args) => inventory::run(&self.global, args).await,
            Command::Backup(args) => backup::run(&self.global, args).await,
            Command::History(args) => history::run(&self.global, args).await,
            Command::Schedule { command } => schedule::run(&self.global, command).await,
            Command::Prune(args) => prune::run(&self.global, args).await,
            Command::Destinations(args) => destinations::run(&self.global, args).await,
            Command::Verify(args) => verify::run(&self.global, args).await,
            Command::Restore(args) => restore::run(&self.global, args).await,
            Command::Drill(args) => restore::drill(&self.global, args).await,
            Command::Contexts { output } => contexts::run(&self.global, output),
            Command::HashPassword => hash_password(),
        }
    }
}

/// Reads one password line from stdin (without its line ending) and prints its argon2id hash.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let hash =
        nkvm_engine::auth::users::hash_password(password).context("cannot hash the password")?;
    emit(&format!("{hash}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// A write to stdout found the reading end closed (`nkvm inventory | head`): the reader has what
/// it wanted, so the command ends quietly.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct ClosedPipe;

/// An error and its causes on one line, "outer: cause: root cause", for people: a Kubernetes
/// client error is put in words ([`nkvm_engine::kubeapi::describe`], never its debug dump), and a
/// cause already said by the text before it is not repeated.
pub fn describe_error(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        // The Kubernetes client's own errors end the chain: put in words, with their root cause.
        let last = cause.is::<kube::Error>() || cause.is::<kube::config::KubeconfigError>();
        let said = if let Some(kube_error) = cause.downcast_ref::<kube::Error>() {
            nkvm_engine::kubeapi::describe(kube_error)
        } else if last {
            nkvm_engine::kubeapi::root_cause(cause)
        } else {
            cause.to_string()
        };
        if !said.is_empty() && !text.contains(&said) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        if last {
            break;
        }
    }
    text
}

/// Writes command output to stdout; a closed pipe becomes [`ClosedPipe`] instead of a panic.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        other => Ok(other?),
    }
}

/// Writes `value` as pretty JSON and a newline to stdout (see [`emit`]).
pub fn emit_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(&text)
}

/// The data directory's history database opened read-only, with its path; `None` (and a warning on
/// stderr) when there is none yet. Reading never creates files.
pub async fn read_history(
    global: &GlobalOptions,
) -> anyhow::Result<Option<(std::path::PathBuf, nkvm_engine::store::Store)>> {
    let path = nkvm_engine::store::database_path(&global.data_dir);
    if let Some(store) = nkvm_engine::store::Store::open_read_only(&path).await? {
        return Ok(Some((path, store)));
    }
    eprintln!(
        "warning: no history at {}; backup ages unknown (set --data-dir or NKVM_DATA_DIR to the \
         directory backups write to)",
        path.display()
    );
    Ok(None)
}

/// Connects with the global options' credentials and checks the connection with one request
/// (`GET /version`), so that a wrong address, an untrusted certificate or rejected credentials are
/// reported once, naming the API server, before any work starts.
pub async fn connect(global: &GlobalOptions) -> anyhow::Result<Cluster> {
    let source = global.connection_source()?;
    let cluster = connection::connect(&source, &global.connect_options())
        .await
        .with_context(|| format!("cannot connect to the cluster ({})", source.label()))?;
    cluster.probe(global.request_timeout()).await?;
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_inventory_with_globals_anywhere() {
        let cli = Cli::try_parse_from([
            "nkvm",
            "--context",
            "dev",
            "inventory",
            "-n",
            "a",
            "-n",
            "b",
            "--output",
            "json",
            "--namespace-allowlist",
            "a,b,c",
            "--max-namespaces",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("dev"));
        let Command::Inventory(args) = &cli.command else {
            panic!("not inventory: {cli:?}");
        };
        assert_eq!(args.namespaces, ["a", "b"]);
        assert_eq!(args.output, Output::Json);
        let options = cli.global.inventory_options(args.namespaces.clone());
        assert_eq!(
            options.allowlist,
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(options.max_namespaces, 7);
    }

    #[test]
    fn serve_defaults_to_loopback_8080() {
        let cli = Cli::try_parse_from(["nkvm", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(!args.allow_pasted_kubeconfig, "pasting is opt-in");
        assert_eq!(
            args.stale_after(),
            Some(std::time::Duration::from_hours(24))
        );
        assert_eq!(cli.global.data_dir, std::path::PathBuf::from("./nkvm-data"));
    }

    #[test]
    fn trusted_proxies_parse_and_empty_means_none() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve");
            };
            args.trusted_proxy_networks()
        };
        assert!(parse(&["nkvm", "serve"]).unwrap().is_empty());
        assert!(
            parse(&["nkvm", "serve", "--trusted-proxies", ""])
                .unwrap()
                .is_empty()
        );
        let two = parse(&["nkvm", "serve", "--trusted-proxies", "10.0.0.0/8, fd00::/8"]).unwrap();
        assert_eq!(two.len(), 2);
        assert!(parse(&["nkvm", "serve", "--trusted-proxies", "10.0.0.0/33"]).is_err());
    }

    #[test]
    fn in_cluster_conflicts_with_kubeconfig() {
        let cli =
            Cli::try_parse_from(["nkvm", "--in-cluster", "--kubeconfig", "x", "contexts"]).unwrap();
        let err = cli.global.connection_source().unwrap_err();
        assert_eq!(
            err.to_string(),
            "--in-cluster (NKVM_IN_CLUSTER) cannot be combined with --kubeconfig or --context"
        );
        let cli = Cli::try_parse_from(["nkvm", "--in-cluster", "contexts"]).unwrap();
        assert_eq!(
            cli.global.connection_source().unwrap(),
            nkvm_engine::connection::ConnectionSource::InCluster
        );
    }

    #[test]
    fn empty_allowlist_means_none() {
        let cli = Cli::try_parse_from(["nkvm", "--namespace-allowlist", "", "contexts"]).unwrap();
        assert_eq!(cli.global.allowlist(), None);
    }
}
