//! Global configuration of the `nkvm` binary: command-line options, each also read from an `NKVM_*`
//! environment variable, and their translation into engine settings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use nkvm_engine::backup::pod::HelperResources;
use nkvm_engine::backup::{self, BackupOptions, DEFAULT_HELPER_IMAGE};
use nkvm_engine::connection::{ConnectOptions, ConnectionSource};
use nkvm_engine::datadir::{self, DataDirLock};
use nkvm_engine::destination::Destinations;
use nkvm_engine::inventory::{DEFAULT_MAX_NAMESPACES, DEFAULT_PAGE_SIZE, InventoryOptions};
use nkvm_engine::store::{self, Store};

/// The command line's namespace argument: validated by the engine's one name checker, so a bad
/// name is a usage error (exit status 2) with the same wording everywhere.
pub fn namespace_arg(text: &str) -> Result<String, nkvm_engine::domain::NameError> {
    nkvm_engine::domain::names::check_namespace(text).map(|()| text.to_owned())
}

/// A data directory taken by a writing command (see [`GlobalOptions::open_data_dir`]).
#[derive(Debug)]
pub struct OpenDataDir {
    /// Held for as long as the command writes there.
    pub _lock: DataDirLock,
    pub instance: String,
    pub store: Store,
}

/// Options shared by every subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
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

    /// CPU limit of each backup/restore helper pod: CPUs (`2`, `1.5`) or millicores (`500m`),
    /// 100m-64. With `--compression source`, pigz in the helper gets at most this many threads
    #[arg(
        long,
        env = "NKVM_HELPER_CPU_LIMIT",
        value_name = "CPUS",
        default_value = "1",
        value_parser = HelperResources::check_cpu_limit,
        global = true
    )]
    pub helper_cpu_limit: String,

    /// Memory limit of each backup/restore helper pod (`256Mi`, `1Gi`), 64Mi-64Gi
    #[arg(
        long,
        env = "NKVM_HELPER_MEMORY_LIMIT",
        value_name = "QUANTITY",
        default_value = "256Mi",
        value_parser = HelperResources::check_memory_limit,
        global = true
    )]
    pub helper_memory_limit: String,

    /// Destinations file (YAML: named local, S3, SFTP and FTPS destinations and the default one;
    /// secrets only by reference, see docs/destinations.md) [default: only `local`, under the data
    /// directory]
    #[arg(long, env = "NKVM_DESTINATIONS", value_name = "FILE", global = true)]
    pub destinations: Option<PathBuf>,

    /// Timeout of each Kubernetes API request, in seconds (1-3600)
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

    /// Log format on standard error: `text` for people, `json` (one object per line) for log
    /// collectors
    #[arg(
        long,
        env = "NKVM_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
}

/// Where backup archives are compressed (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    /// The helper pod compresses (pigz, else gzip); nkvm checks and stores the gzip bytes
    Source,
    /// nkvm compresses the raw tar stream it receives
    Server,
}

impl From<CompressionArg> for backup::Compression {
    fn from(arg: CompressionArg) -> Self {
        match arg {
            CompressionArg::Source => Self::Source,
            CompressionArg::Server => Self::Server,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The retention of backups no schedule's own retention covers (unset: keep them all), for
/// `nkvm serve` and `nkvm prune` alike.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionDefaults {
    /// Default retention: keep the N newest backups of each PVC
    #[arg(long, env = "NKVM_DEFAULT_KEEP_LAST", value_name = "N")]
    pub default_keep_last: Option<u32>,
    /// Default retention: keep the newest backup of each of the N newest days
    #[arg(long, env = "NKVM_DEFAULT_KEEP_DAILY", value_name = "N")]
    pub default_keep_daily: Option<u32>,
    /// Default retention: keep the newest backup of each of the N newest ISO weeks
    #[arg(long, env = "NKVM_DEFAULT_KEEP_WEEKLY", value_name = "N")]
    pub default_keep_weekly: Option<u32>,
    /// Default retention: keep the newest backup of each of the N newest months
    #[arg(long, env = "NKVM_DEFAULT_KEEP_MONTHLY", value_name = "N")]
    pub default_keep_monthly: Option<u32>,
}

impl RetentionDefaults {
    pub fn retention(&self) -> nkvm_engine::schedule::Retention {
        nkvm_engine::schedule::Retention {
            keep_last: self.default_keep_last,
            keep_daily: self.default_keep_daily,
            keep_weekly: self.default_keep_weekly,
            keep_monthly: self.default_keep_monthly,
        }
    }
}

/// How backups run, for `nkvm backup` and the web server alike.
#[derive(Debug, Clone, Args)]
pub struct BackupTuning {
    /// Backups running at the same time, 1-64 (per cluster connection in the web server)
    #[arg(
        long,
        env = "NKVM_BACKUP_CONCURRENCY",
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub concurrency: u16,

    /// Where archives are compressed: in the helper pod (`source`: its pigz, else gzip, within its
    /// CPU limit; nkvm checks and stores the gzip bytes it receives) or by nkvm (`server`). Source
    /// falls back to server, with a warning, when the helper image has no usable pigz or gzip
    #[arg(
        long,
        env = "NKVM_COMPRESSION",
        value_name = "WHERE",
        value_enum,
        default_value_t = CompressionArg::Source
    )]
    pub compression: CompressionArg,

    /// gzip level: 0 (store only) to 9 (smallest)
    #[arg(
        long,
        env = "NKVM_GZIP_LEVEL",
        value_name = "0-9",
        default_value_t = 6,
        value_parser = clap::value_parser!(u32).range(0..=9)
    )]
    pub gzip_level: u32,

    /// Threads compressing each backup's archive, 1-256 (in 1 MiB blocks, one gzip member); the
    /// archive does not depend on it [default: the number of CPUs]
    #[arg(
        long,
        env = "NKVM_GZIP_THREADS",
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub gzip_threads: Option<u16>,

    /// Fail a backup whose stream delivers no data for this many seconds, 5-86400 (there is no
    /// overall time limit)
    #[arg(
        long,
        env = "NKVM_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(5..=86_400)
    )]
    pub stall_timeout: u64,

    /// Fail a backup whose tar stream passes this many times its PVC's capacity, 0-1000 (0: no
    /// cap). Sparse files stream as their data only, so only a volume whose files grow while they
    /// are read, or a filesystem reporting more than it stores, reaches it
    #[arg(
        long,
        env = "NKVM_STREAM_CAP_FACTOR",
        value_name = "N",
        default_value_t = backup::DEFAULT_STREAM_CAP_FACTOR,
        value_parser = clap::value_parser!(u32).range(0..=1000)
    )]
    pub stream_cap_factor: u32,

    /// Streams of a backup run, 1-10: when the connection to the API server is lost mid-stream
    /// (nothing committed yet), tar is run again in the same helper, after a growing delay, until
    /// this many streams were tried
    #[arg(
        long,
        env = "NKVM_STREAM_ATTEMPTS",
        value_name = "N",
        default_value_t = backup::DEFAULT_STREAM_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=10)
    )]
    pub stream_attempts: u32,
}

impl GlobalOptions {
    /// The destinations of `--destinations` (only `local` without it).
    pub fn destinations(&self) -> anyhow::Result<Destinations> {
        let file = self
            .destinations
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty());
        Destinations::load(file, &self.data_dir).context("cannot load the destinations")
    }

    /// Engine settings from the global options and the backup tuning.
    pub fn backup_options(
        &self,
        tuning: &BackupTuning,
        instance: String,
    ) -> anyhow::Result<BackupOptions> {
        Ok(BackupOptions {
            data_dir: self.data_dir.clone(),
            destinations: Some(self.destinations()?),
            helper_image: self
                .helper_image
                .clone()
                .filter(|i| !i.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_HELPER_IMAGE.to_owned()),
            concurrency: usize::from(tuning.concurrency),
            compression: tuning.compression.into(),
            gzip_level: tuning.gzip_level,
            gzip_threads: tuning
                .gzip_threads
                .map_or_else(backup::pgzip::default_threads, usize::from),
            stall_timeout: Duration::from_secs(tuning.stall_timeout),
            stream_cap_factor: tuning.stream_cap_factor,
            stream_attempts: tuning.stream_attempts,
            request_timeout: self.request_timeout(),
            instance: Some(instance),
            allowlist: self.allowlist(),
            resources: HelperResources {
                cpu_limit: self.helper_cpu_limit.clone(),
                memory_limit: self.helper_memory_limit.clone(),
                ..HelperResources::default()
            },
            ..BackupOptions::default()
        })
    }

    /// Takes the data directory for a writing command (`command`, e.g. `nkvm backup`): creates it
    /// if needed, locks it (refused, naming the holder, while another nkvm process writes there),
    /// reads (or creates) its instance id and opens the history database. The lock is held until
    /// the returned value is dropped.
    pub async fn open_data_dir(&self, command: &str) -> anyhow::Result<OpenDataDir> {
        let dir = &self.data_dir;
        let lock = DataDirLock::acquire(dir, command)?;
        let instance = datadir::instance_id(dir)?;
        let store = Store::open(&store::database_path(dir))
            .await
            .context("cannot open the history database")?;
        Ok(OpenDataDir {
            _lock: lock,
            instance,
            store,
        })
    }

    /// Opens the history database (creating the directory and database when missing) for a command
    /// that only changes rows and finished backups — schedules, retention — without the data
    /// directory's lock: it runs beside `nkvm serve` (SQLite serialises the writes) and never
    /// touches a running backup's files, which the lock protects.
    pub async fn open_database(&self) -> anyhow::Result<Store> {
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the data directory {} (set --data-dir or NKVM_DATA_DIR)",
                dir.display()
            )
        })?;
        Store::open(&store::database_path(dir))
            .await
            .context("cannot open the history database")
    }

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

    /// The names of the configured destinations.
    pub fn destination_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .destinations()?
            .iter()
            .map(|d| d.name().to_owned())
            .collect())
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
