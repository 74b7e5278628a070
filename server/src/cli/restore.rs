//! `nkvm restore RUN_ID --to-pvc NAME ...` (into a new PVC) and `nkvm restore RUN_ID --in-place
//! [--wipe] --yes` (into the backup's own PVC, its workloads scaled down meanwhile; the plan is
//! shown first and nothing happens without `--yes`), and `nkvm drill NS/PVC`. Start-up recovery
//! runs first; progress goes to stderr; the result is a table or the JSON contract, and the exit
//! status is non-zero on failure.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use nkvm_engine::domain::format::format_bytes;
use nkvm_engine::domain::{DrillStatus, PvcRef, RestoreStage, ResultStatus};
use nkvm_engine::restore::{
    DrillResult, InPlacePlan, RestoreEngine, RestoreRequest, RestoreResult, RestoreTarget, Rules,
};
use nkvm_engine::workspace::Connection;

use super::backup::requester;
use super::watch::{self, Watch};
use super::{Output, table};
use crate::config::{BackupTuning, GlobalOptions, OpenDataDir};

#[derive(Debug, Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each flag is one of the command line's switches"
)]
pub struct RestoreArgs {
    /// The backup run to restore (`nkvm history` lists run ids)
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,

    /// Restore into a new PVC of this name (created by nkvm)
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "in_place",
        required_unless_present = "in_place"
    )]
    pub to_pvc: Option<String>,

    /// Namespace of the new PVC [default: the backup's]
    #[arg(long, value_name = "NS", conflicts_with = "in_place")]
    pub to_namespace: Option<String>,

    /// Storage class of the new PVC [default: the backup's PVC's]
    #[arg(long, value_name = "NAME", conflicts_with = "in_place")]
    pub storage_class: Option<String>,

    /// Size of the new PVC [default: the backup's PVC's capacity]
    #[arg(long, value_name = "QUANTITY", conflicts_with = "in_place")]
    pub size: Option<String>,

    /// Restore into the backup's own PVC, scaling its workloads to 0 meanwhile
    #[arg(long)]
    pub in_place: bool,

    /// With --in-place: replace the PVC's contents (everything not in the backup is deleted);
    /// without it, the backup is merged into what is there
    #[arg(long, conflicts_with = "to_pvc")]
    pub wipe: bool,

    /// Confirm an in-place restore (without it, the plan is shown and nothing happens)
    #[arg(long)]
    pub yes: bool,

    /// Restore setuid/setgid files (refused by default)
    #[arg(long)]
    pub allow_setuid: bool,

    /// Restore symlinks pointing outside the volume (refused by default)
    #[arg(long)]
    pub allow_escaping_symlinks: bool,

    /// Keep a new PVC whose restore failed (for inspection) instead of removing it
    #[arg(long, conflicts_with = "in_place")]
    pub keep_failed_pvc: bool,

    #[command(flatten)]
    pub stall: StallArg,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

impl RestoreArgs {
    /// The engine's request.
    pub fn request(&self) -> RestoreRequest {
        RestoreRequest {
            run_id: self.run_id.clone(),
            target: match &self.to_pvc {
                Some(name) => RestoreTarget::NewPvc {
                    name: name.clone(),
                    namespace: self.to_namespace.clone(),
                    storage_class: self.storage_class.clone(),
                    size: self.size.clone(),
                },
                None => RestoreTarget::InPlace { wipe: self.wipe },
            },
            rules: Rules {
                allow_setuid: self.allow_setuid,
                allow_escaping_symlinks: self.allow_escaping_symlinks,
            },
            keep_failed_pvc: self.keep_failed_pvc,
        }
    }
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The PVC whose newest successful backup is drilled
    #[arg(value_name = "NS/PVC", value_parser = PvcRef::parse)]
    pub target: PvcRef,

    #[command(flatten)]
    pub stall: StallArg,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The one backup setting restores and drills choose.
#[derive(Debug, Args)]
pub struct StallArg {
    /// Fail when the archive or the helper move no data for this many seconds
    #[arg(
        long,
        env = "NKVM_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(5..=86_400)
    )]
    pub stall_timeout: u64,
}

/// Backup settings for restores (only the stall timeout is theirs to choose).
pub fn tuning(stall_timeout: u64) -> BackupTuning {
    BackupTuning {
        concurrency: 2,
        compression: crate::config::CompressionArg::Source,
        gzip_level: 6,
        gzip_threads: None,
        stall_timeout,
        stream_cap_factor: nkvm_engine::backup::DEFAULT_STREAM_CAP_FACTOR,
        stream_attempts: nkvm_engine::backup::DEFAULT_STREAM_ATTEMPTS,
    }
}

/// Connects, builds the engines and runs start-up recovery (backups and restores). The data
/// directory stays locked for as long as the returned guard lives.
async fn engines(
    global: &GlobalOptions,
    stall_timeout: u64,
    command: &str,
) -> anyhow::Result<(RestoreEngine, OpenDataDir)> {
    let allowlist = global.allowlist();
    let data = global.open_data_dir(command).await?;
    let cluster = super::connect(global).await?;
    let options = global.backup_options(&tuning(stall_timeout), data.instance.clone())?;
    let connection = Connection::new(cluster, data.store.clone(), options)
        .context("cannot set up the restore engine")?;
    recover_all(&connection, allowlist.as_deref()).await?;
    Ok((connection.restores, data))
}

/// Start-up recovery of backups and restores (interrupted runs, helpers, workloads left scaled
/// down, incomplete PVCs, `.partial` files), said on stderr.
pub async fn recover_all(
    connection: &Connection,
    allowlist: Option<&[String]>,
) -> anyhow::Result<()> {
    super::backup::report_recovery(
        &connection
            .backups
            .recover(allowlist)
            .await
            .context("start-up recovery failed (history database)")?,
    );
    let restores = connection
        .restores
        .recover(allowlist)
        .await
        .context("start-up recovery of restores failed (history database)")?;
    if !restores.scaled_back.is_empty() {
        eprintln!(
            "recovery: scaled back workload(s) an interrupted restore left scaled down: {}",
            restores.scaled_back.join(", ")
        );
    }
    if !restores.helpers_deleted.is_empty() {
        eprintln!(
            "recovery: deleted restore helper pod(s): {}",
            restores.helpers_deleted.join(", ")
        );
    }
    if !restores.pvcs_deleted.is_empty() {
        eprintln!(
            "recovery: deleted incomplete restore PVC(s): {}",
            restores.pvcs_deleted.join(", ")
        );
    }
    for warning in &restores.warnings {
        eprintln!("warning: recovery: {warning}");
    }
    Ok(())
}

/// Watches a restore or drill: cancels the engine's jobs on SIGINT, SIGTERM or SIGHUP (they still
/// clean up and scale back) and prints their progress.
fn watch(engine: &RestoreEngine, output: Output) -> Watch {
    let cancelling = engine.clone();
    Watch::start(move || {
        let cancelled = cancelling.cancel_all();
        format!("cancelling {cancelled} job(s), cleaning up and scaling back...")
    })
    .with_progress(output, engine.subscribe())
}

pub async fn run(global: &GlobalOptions, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let (engine, data) = engines(global, args.stall.stall_timeout, "nkvm restore").await?;
    let request = args.request();
    if args.in_place {
        let plan = engine.plan_in_place(&args.run_id).await;
        let plan_text = match &plan {
            Ok(plan) => render_plan(plan, args.wipe),
            Err(message) => message.clone(),
        };
        if !args.yes || plan.as_ref().is_ok_and(|p| p.refusal.is_some()) || plan.is_err() {
            let message = if args.yes {
                format!("in-place restore refused: {plan_text}")
            } else {
                format!("{plan_text}\nnothing was changed; add --yes to run this in-place restore")
            };
            let target = plan
                .as_ref()
                .ok()
                .map(|p| PvcRef::new(&p.namespace, &p.pvc));
            let result = RestoreResult::refused(
                "",
                &request,
                target.as_ref(),
                jiff::Timestamp::now(),
                &message,
            );
            print_result(args.output, &result)?;
            return Ok(ExitCode::FAILURE);
        }
        if args.output != Output::Json {
            eprintln!("{plan_text}");
        }
    }
    let watch = watch(&engine, args.output);
    let result = engine.restore(request, &requester()).await;
    let signal = watch.stop().await;
    print_result(args.output, &result)?;
    drop(data);
    Ok(watch::exit_code(
        signal,
        result.status == ResultStatus::Succeeded,
    ))
}

pub async fn drill(global: &GlobalOptions, args: DrillArgs) -> anyhow::Result<ExitCode> {
    let (engine, data) = engines(global, args.stall.stall_timeout, "nkvm drill").await?;
    let watch = watch(&engine, args.output);
    let result = engine.drill(&args.target, &requester()).await;
    let signal = watch.stop().await;
    match args.output {
        Output::Json => super::emit_json(&result)?,
        Output::Table | Output::Wide => super::emit(&render_drill(&result))?,
    }
    drop(data);
    Ok(watch::exit_code(
        signal,
        result.status == DrillStatus::Passed,
    ))
}

fn print_result(output: Output, result: &RestoreResult) -> anyhow::Result<()> {
    match output {
        Output::Json => super::emit_json(result),
        Output::Table | Output::Wide => super::emit(&render_result(result)),
    }
}

/// The plan of an in-place restore, for people.
pub fn render_plan(plan: &InPlacePlan, wipe: bool) -> String {
    let mut text = format!(
        "in-place restore of backup {} into PVC {}/{} ({}):\n",
        plan.run_id,
        plan.namespace,
        plan.pvc,
        if wipe {
            "its contents are REPLACED: files not in the backup are deleted"
        } else {
            "the backup is merged into its contents"
        }
    );
    if plan.users.is_empty() {
        text.push_str("  no pod uses it now\n");
    } else {
        text.push_str(&format!("  used by pod(s): {}\n", plan.users.join(", ")));
    }
    for scaled in &plan.workloads {
        text.push_str(&format!(
            "  scale {} from {} to 0 replicas, then back to {}\n",
            scaled.workload, scaled.replicas, scaled.replicas
        ));
    }
    if let Some(refusal) = &plan.refusal {
        text.push_str(&format!("  refused: {refusal}\n"));
    }
    text.trim_end().to_owned()
}

fn render_result(result: &RestoreResult) -> String {
    let row = vec![
        result.restore_id.clone(),
        format!("{}/{}", result.namespace, result.pvc),
        result.status.to_string(),
        table::or_dash(result.stage.map(RestoreStage::as_str)),
        table::or_dash(result.files.map(|f| f.to_string()).as_deref()),
        table::or_dash(result.bytes.map(format_bytes).as_deref()),
        result.message.clone(),
    ];
    table::render(
        &[
            "RESTORE", "TARGET", "STATUS", "STAGE", "FILES", "BYTES", "MESSAGE",
        ],
        &[row],
    )
}

fn render_drill(result: &DrillResult) -> String {
    let row = vec![
        format!("{}/{}", result.namespace, result.pvc),
        table::or_dash(result.run_id.as_deref()),
        result.status.to_string(),
        result.message.clone(),
    ];
    table::render(&["PVC", "RUN", "STATUS", "MESSAGE"], &[row])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use nkvm_engine::restore::{ScaledDown, Workload};

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(args)
    }

    fn restore_args(args: &[&str]) -> RestoreArgs {
        let cli = parse(args).unwrap();
        let crate::cli::Command::Restore(args) = cli.command else {
            panic!("not restore");
        };
        args
    }

    #[test]
    fn new_pvc_and_in_place_requests() {
        let args = restore_args(&[
            "nkvm",
            "restore",
            "r-1",
            "--to-pvc",
            "copy",
            "--to-namespace",
            "other",
            "--size",
            "2Gi",
            "--storage-class",
            "fast",
            "--allow-setuid",
            "-o",
            "json",
        ]);
        let request = args.request();
        assert_eq!(
            request.target,
            RestoreTarget::NewPvc {
                name: "copy".into(),
                namespace: Some("other".into()),
                storage_class: Some("fast".into()),
                size: Some("2Gi".into())
            }
        );
        assert!(request.rules.allow_setuid);
        assert!(!request.rules.allow_escaping_symlinks);
        let args = restore_args(&["nkvm", "restore", "r-1", "--in-place", "--wipe", "--yes"]);
        assert_eq!(args.request().target, RestoreTarget::InPlace { wipe: true });
        assert!(args.yes);
        for bad in [
            vec!["nkvm", "restore", "r-1"],
            vec!["nkvm", "restore", "r-1", "--in-place", "--to-pvc", "x"],
            vec!["nkvm", "restore", "r-1", "--to-pvc", "x", "--wipe"],
            vec!["nkvm", "restore", "r-1", "--in-place", "--size", "1Gi"],
            vec!["nkvm", "drill", "data"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        let cli = parse(&["nkvm", "drill", "shop/data", "-o", "json"]).unwrap();
        let crate::cli::Command::Drill(args) = cli.command else {
            panic!("not drill");
        };
        assert_eq!(args.target, PvcRef::new("shop", "data"));
    }

    #[test]
    fn the_plan_names_every_workload_and_the_mode() {
        let plan = InPlacePlan {
            run_id: "r-1".into(),
            namespace: "shop".into(),
            pvc: "data".into(),
            users: vec!["web-1".into()],
            workloads: vec![ScaledDown {
                workload: Workload {
                    kind: "Deployment".parse().unwrap(),
                    name: "web".into(),
                },
                replicas: 3,
            }],
            refusal: None,
        };
        let text = render_plan(&plan, true);
        assert!(text.contains("REPLACED"), "{text}");
        assert!(text.contains("used by pod(s): web-1"), "{text}");
        assert!(
            text.contains("scale Deployment/web from 3 to 0 replicas, then back to 3"),
            "{text}"
        );
        assert!(render_plan(&plan, false).contains("merged"));
    }
}
