//! Command-line interface of `nkvm`: subcommand definitions and dispatch.

mod backup;
mod contexts;
mod history;
mod inventory;
mod restore;
mod serve;
mod table;
mod verify;

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
    Serve(serve::ServeArgs),
    /// List PVCs with their owners, consumers and flags
    Inventory(inventory::InventoryArgs),
    /// Back up PVCs into verified .tar.gz archives (NS/PVC...)
    Backup(backup::BackupArgs),
    /// List recent backup runs from the history database
    History(history::HistoryArgs),
    /// Verify stored backups: sha256, gzip, every tar entry, counts against the manifest
    Verify(verify::VerifyArgs),
    /// Restore a backup into a new PVC (--to-pvc) or into its own PVC (--in-place)
    Restore(restore::RestoreArgs),
    /// Restore the newest backup of a PVC into a throwaway PVC, check it, remove it
    Drill(restore::DrillArgs),
    /// Print the argon2id hash of a password read from standard input (for the users file)
    HashPassword,
    /// List the kubeconfig's contexts
    Contexts {
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Output format of listing subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people
    Table,
    /// JSON for scripts
    Json,
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
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// Connects with the global options' credentials.
pub async fn connect(global: &GlobalOptions) -> anyhow::Result<Cluster> {
    let source = global.connection_source()?;
    connection::connect(&source, &global.connect_options())
        .await
        .with_context(|| format!("cannot connect to the cluster ({})", source.label()))
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
