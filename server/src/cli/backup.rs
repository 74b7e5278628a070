//! `nkvm backup NS/PVC... [--destination NAME]`: start-up recovery, then one batch of backups with
//! bounded concurrency to one destination, printed as a table or as the JSON contract; the exit
//! status is non-zero when any backup failed.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use nkvm_engine::backup::{
    BackupOptions, BackupResult, PvcRef, RecoveryReport, Requester, ResultStatus,
};
use nkvm_engine::domain::Stage;
use nkvm_engine::domain::format::format_bytes;
use nkvm_engine::workspace::Connection;

use super::watch::{self, Watch};
use super::{Output, table};
use crate::config::{BackupTuning, GlobalOptions};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// PVCs to back up, as NAMESPACE/NAME
    #[arg(value_name = "NS/PVC", required = true, value_parser = PvcRef::parse)]
    pub targets: Vec<PvcRef>,

    #[command(flatten)]
    pub tuning: BackupTuning,

    /// Destination of the archives, by name (see `nkvm destinations list`) [default: the
    /// destinations file's default_destination, else local]
    #[arg(long, value_name = "NAME")]
    pub destination: Option<String>,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Who started the runs: the CLI and the local user, for history and the audit trail.
pub(super) fn requester() -> Requester {
    Requester::cli(std::env::var("USER").ok().as_deref())
}

/// Engine settings from the global options and the subcommand's; an unknown `--destination` is
/// refused here, before anything is contacted.
pub fn options(
    global: &GlobalOptions,
    args: &BackupArgs,
    instance: String,
) -> anyhow::Result<BackupOptions> {
    let options = global.backup_options(&args.tuning, instance)?;
    if let Some(name) = &args.destination {
        options
            .destinations()
            .get(name)
            .with_context(|| format!("--destination {name}"))?;
    }
    Ok(options)
}

pub async fn run(global: &GlobalOptions, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let allowlist = global.allowlist();
    // The destinations file is read (and the destination's name checked) before anything else.
    let destinations = global.destinations()?;
    if let Some(name) = &args.destination {
        destinations
            .get(name)
            .with_context(|| format!("--destination {name}"))?;
    }
    let data = global.open_data_dir("nkvm backup").await?;
    let cluster = super::connect(global).await?;
    let connection = Connection::new(
        cluster,
        data.store.clone(),
        options(global, &args, data.instance.clone())?,
    )
    .context("cannot set up the backup engine")?;
    super::restore::recover_all(&connection, allowlist.as_deref()).await?;
    let engine = connection.backups;

    let cancelling = engine.clone();
    let watch = Watch::start(move || {
        let cancelled = cancelling.cancel_all();
        format!("cancelling {cancelled} backup(s) and cleaning up...")
    })
    .with_progress(args.output, engine.subscribe());
    let results = engine
        .run_batch_to(args.targets, args.destination.as_deref(), &requester())
        .await;
    let signalled = watch.stop().await;
    if !engine.sweeper().pending().is_empty() {
        engine.sweeper().sweep_once().await;
        for left in engine.sweeper().pending() {
            eprintln!(
                "warning: helper pod {}/{} could not be deleted ({}); the next nkvm start retries, \
                 or delete it by hand",
                left.namespace, left.pod, left.last_error
            );
        }
    }

    match args.output {
        Output::Json => super::emit_json(&results)?,
        Output::Table | Output::Wide => super::emit(&render_table(&results))?,
    }
    drop(data);
    let succeeded = results.iter().all(|r| r.status == ResultStatus::Succeeded);
    Ok(watch::exit_code(signalled, succeeded))
}

/// Says on stderr what start-up recovery did.
pub fn report_recovery(report: &RecoveryReport) {
    if !report.interrupted.is_empty() {
        eprintln!(
            "recovery: marked {} unfinished run(s) as interrupted",
            report.interrupted.len()
        );
    }
    if !report.helpers_deleted.is_empty() {
        eprintln!(
            "recovery: deleted orphan helper pod(s): {}",
            report.helpers_deleted.join(", ")
        );
    }
    if !report.partials_removed.is_empty() {
        eprintln!(
            "recovery: removed {} partial archive file(s)",
            report.partials_removed.len()
        );
    }
    if !report.uploads_aborted.is_empty() {
        eprintln!(
            "recovery: removed unfinished upload(s): {}",
            report.uploads_aborted.join(", ")
        );
    }
    for warning in &report.warnings {
        eprintln!("warning: recovery: {warning}");
    }
}

fn render_table(results: &[BackupResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let detail = match (&r.artifact, r.status) {
                (Some(artifact), ResultStatus::Succeeded) => artifact.clone(),
                _ => r.message.clone(),
            };
            vec![
                r.namespace.clone(),
                r.pvc.clone(),
                r.status.to_string(),
                table::or_dash(r.stage.map(Stage::as_str)),
                table::or_dash(r.files.map(|f| f.to_string()).as_deref()),
                table::or_dash(r.bytes.map(format_bytes).as_deref()),
                detail,
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "NAMESPACE",
            "PVC",
            "STATUS",
            "STAGE",
            "FILES",
            "ARCHIVE",
            "ARTIFACT / MESSAGE",
        ],
        &rows,
    );
    for r in results {
        for warning in &r.warnings {
            out.push_str(&format!("warning: {}/{}: {warning}\n", r.namespace, r.pvc));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use nkvm_engine::backup::{self, DEFAULT_HELPER_IMAGE};
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(args)
    }

    #[test]
    fn parses_targets_and_flags() {
        let cli = parse(&[
            "nkvm",
            "--helper-image",
            "nkvm.local/helper:1",
            "backup",
            "shop/data",
            "ops/logs-0",
            "--concurrency",
            "3",
            "--gzip-level",
            "1",
            "--gzip-threads",
            "3",
            "--stall-timeout",
            "30",
            "--compression",
            "server",
            "--stream-cap-factor",
            "2",
            "--helper-cpu-limit",
            "2500m",
            "--helper-memory-limit",
            "1Gi",
            "--output",
            "json",
        ])
        .unwrap();
        let crate::cli::Command::Backup(args) = &cli.command else {
            panic!("not backup");
        };
        assert_eq!(
            args.targets,
            [PvcRef::new("shop", "data"), PvcRef::new("ops", "logs-0")]
        );
        let options = options(&cli.global, args, "inst".to_owned()).unwrap();
        assert_eq!(options.concurrency, 3);
        assert_eq!(options.gzip_level, 1);
        assert_eq!(options.gzip_threads, 3);
        assert_eq!(options.compression, backup::Compression::Server);
        assert_eq!(options.stall_timeout, Duration::from_secs(30));
        assert_eq!(options.stream_cap_factor, 2);
        assert_eq!(options.helper_image, "nkvm.local/helper:1");
        // The helper's limits reach its pod spec; its requests stay the defaults.
        assert_eq!(options.resources.cpu_limit, "2500m");
        assert_eq!(options.resources.memory_limit, "1Gi");
        assert_eq!(options.resources.cpu_limit_cores(), Some(3));
        assert_eq!(
            options.resources.cpu_request,
            backup::pod::HelperResources::default().cpu_request
        );
        assert_eq!(options.instance.as_deref(), Some("inst"));
        assert_eq!(options.data_dir, std::path::PathBuf::from("./nkvm-data"));
    }

    #[test]
    fn defaults() {
        let cli = parse(&["nkvm", "backup", "shop/data"]).unwrap();
        let crate::cli::Command::Backup(args) = &cli.command else {
            panic!("not backup");
        };
        assert_eq!(args.tuning.concurrency, 2);
        assert_eq!(args.tuning.gzip_level, 6);
        assert_eq!(args.tuning.stall_timeout, 120);
        if std::env::var_os("NKVM_STREAM_CAP_FACTOR").is_none() {
            assert_eq!(args.tuning.stream_cap_factor, 4);
        }
        assert_eq!(args.output, Output::Table);
        let options = options(&cli.global, args, "i".to_owned()).unwrap();
        if std::env::var_os("NKVM_COMPRESSION").is_none() {
            assert_eq!(options.compression, backup::Compression::Source);
        }
        if std::env::var_os("NKVM_GZIP_THREADS").is_none() {
            assert_eq!(args.tuning.gzip_threads, None);
            assert_eq!(options.gzip_threads, backup::pgzip::default_threads());
        }
        if std::env::var_os("NKVM_HELPER_IMAGE").is_none() {
            assert_eq!(options.helper_image, DEFAULT_HELPER_IMAGE);
        }
        if std::env::var_os("NKVM_HELPER_CPU_LIMIT").is_none()
            && std::env::var_os("NKVM_HELPER_MEMORY_LIMIT").is_none()
        {
            assert_eq!(options.resources, backup::pod::HelperResources::default());
        }
    }

    #[test]
    fn rejects_bad_targets_and_levels() {
        for bad in [
            vec!["nkvm", "backup"],
            vec!["nkvm", "backup", "data"],
            vec!["nkvm", "backup", "Shop/data"],
            vec!["nkvm", "backup", "shop/data", "--gzip-level", "10"],
            vec!["nkvm", "backup", "shop/data", "--gzip-threads", "0"],
            vec!["nkvm", "backup", "shop/data", "--concurrency", "0"],
            vec!["nkvm", "backup", "shop/data", "--compression", "helper"],
            vec!["nkvm", "backup", "shop/data", "--helper-cpu-limit", "50m"],
            vec!["nkvm", "backup", "shop/data", "--helper-cpu-limit", "1Gi"],
            vec!["nkvm", "backup", "shop/data", "--helper-memory-limit", "1"],
            vec![
                "nkvm",
                "backup",
                "shop/data",
                "--helper-memory-limit",
                "lots",
            ],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn table_shows_artifact_or_message() {
        let base = BackupResult {
            namespace: "shop".into(),
            pvc: "data".into(),
            status: ResultStatus::Succeeded,
            stage: None,
            message: "ok".into(),
            artifact: Some("/d/a.tar.gz".into()),
            sha256: Some("ab".into()),
            bytes: Some(2 * 1024 * 1024),
            files: Some(3),
            started_at: String::new(),
            finished_at: String::new(),
            run_id: None,
            pvc_uid: None,
            source_bytes: None,
            node: None,
            helper_pod: None,
            cancelled: false,
            warnings: vec!["helper left".into()],
            destination: Some("local".into()),
        };
        let failed = BackupResult {
            pvc: "gone".into(),
            status: ResultStatus::Failed,
            stage: Some(Stage::Preflight),
            message: "PVC not found".into(),
            artifact: None,
            bytes: None,
            files: None,
            warnings: vec![],
            ..base.clone()
        };
        let text = render_table(&[base, failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("succeeded"), "{text}");
        assert!(lines[1].contains("2.0 MiB"), "{text}");
        assert!(lines[1].ends_with("/d/a.tar.gz"), "{text}");
        assert!(lines[2].contains("failed"), "{text}");
        assert!(lines[2].contains("preflight"), "{text}");
        assert!(lines[2].ends_with("PVC not found"), "{text}");
        assert_eq!(lines[3], "warning: shop/data: helper left");
    }
}
