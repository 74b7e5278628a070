//! Global configuration of the `nkvm` binary: command-line options, each also read from an `NKVM_*`
//! environment variable, and their translation into engine settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use nkvm_engine::connection::{ConnectOptions, ConnectionSource};
use nkvm_engine::inventory::{DEFAULT_MAX_NAMESPACES, DEFAULT_PAGE_SIZE, InventoryOptions};

/// Options shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalOptions {
    /// Kubeconfig file [default: the KUBECONFIG list, else ~/.kube/config]
    #[arg(long, env = "NKVM_KUBECONFIG", value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context [default: the current context]
    #[arg(long, env = "NKVM_CONTEXT", value_name = "NAME", global = true)]
    pub context: Option<String>,

    /// Use the pod's service account instead of a kubeconfig
    #[arg(
        long,
        env = "NKVM_IN_CLUSTER",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub in_cluster: bool,

    /// Directory of the SQLite database and local backup artifacts
    #[arg(
        long,
        env = "NKVM_DATA_DIR",
        value_name = "DIR",
        default_value = "./nkvm-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Image of the backup/restore helper pods
    #[arg(long, env = "NKVM_HELPER_IMAGE", value_name = "IMAGE", global = true)]
    pub helper_image: Option<String>,

    /// Timeout of each Kubernetes API request, in seconds
    #[arg(
        long,
        env = "NKVM_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        global = true
    )]
    pub request_timeout: u64,

    /// Only these namespaces may ever be scanned (comma-separated) [default: all]
    #[arg(
        long,
        env = "NKVM_NAMESPACE_ALLOWLIST",
        value_name = "NS,NS,...",
        value_delimiter = ',',
        global = true
    )]
    pub namespace_allowlist: Vec<String>,

    /// Most namespaces one scoped scan may cover
    #[arg(
        long,
        env = "NKVM_MAX_NAMESPACES",
        value_name = "N",
        default_value_t = DEFAULT_MAX_NAMESPACES,
        global = true
    )]
    pub max_namespaces: usize,

    /// Items per page of Kubernetes list calls
    #[arg(
        long,
        env = "NKVM_PAGE_SIZE",
        value_name = "N",
        default_value_t = DEFAULT_PAGE_SIZE,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub page_size: u32,
}

impl GlobalOptions {
    /// Where the cluster credentials come from. `--in-cluster` excludes `--kubeconfig`/`--context`
    /// (checked here rather than by clap, so that `NKVM_IN_CLUSTER=false` does not conflict).
    pub fn connection_source(&self) -> anyhow::Result<ConnectionSource> {
        if self.in_cluster {
            if self.kubeconfig.is_some() || self.context.is_some() {
                anyhow::bail!(
                    "--in-cluster (NKVM_IN_CLUSTER) cannot be combined with --kubeconfig or --context"
                );
            }
            Ok(ConnectionSource::InCluster)
        } else {
            Ok(ConnectionSource::KubeconfigFile {
                path: self.kubeconfig.clone(),
                context: self.context.clone(),
            })
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout)
    }

    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            request_timeout: self.request_timeout(),
            connect_timeout: self.request_timeout().min(Duration::from_secs(10)),
        }
    }

    /// The allowlist, or `None` when no (non-empty) namespace was given.
    pub fn allowlist(&self) -> Option<Vec<String>> {
        let names: Vec<String> = self
            .namespace_allowlist
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// Inventory settings for a request filtered to `namespaces` (empty: every allowed namespace).
    pub fn inventory_options(&self, namespaces: Vec<String>) -> InventoryOptions {
        InventoryOptions {
            allowlist: self.allowlist(),
            namespaces,
            max_namespaces: self.max_namespaces,
            request_timeout: self.request_timeout(),
            page_size: self.page_size,
        }
    }
}
