//! `nkvm prune [--dry-run]`: applies retention now — each schedule's own retention to the backups it
//! made, the default retention (the `--default-keep-*` options, as for `nkvm serve`) to the others —
//! deleting archive, sidecar and manifest at their destination and marking the history rows as
//! pruned. Never removes a PVC's newest successful (nor newest verified) backup. `--dry-run` only
//! shows the plan. JSON: one object per backup considered (`action` keep/delete, `reasons`,
//! `status` kept/planned/deleted/failed). Exit status non-zero when a deletion failed.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use nkvm_engine::schedule::prune::{self, PruneAction, PruneItem, PruneStatus};
use nkvm_engine::schedule::{self};

use super::{Output, table};
use crate::config::{GlobalOptions, RetentionDefaults};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub defaults: RetentionDefaults,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

pub async fn run(global: &GlobalOptions, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = global.open_database().await?;
    let result = async {
        let (schedules, _) = schedule::catalog(&store, None, jiff::Timestamp::now())
            .await
            .context("cannot read the schedules")?;
        let default = args.defaults.retention();
        let allowlist = global.allowlist();
        let planned = prune::plan(&store, &schedules, &default, allowlist.as_deref())
            .await
            .context("cannot read the history")?;
        if args.dry_run {
            return Ok(planned);
        }
        let destinations = global.destinations()?;
        let actor = super::backup::requester().actor;
        let mut done = Vec::with_capacity(planned.len());
        let (deletes, keeps): (Vec<PruneItem>, Vec<PruneItem>) = planned
            .into_iter()
            .partition(|i| i.action == PruneAction::Delete);
        done.extend(keeps);
        done.extend(prune::execute(&store, &destinations, &global.data_dir, deletes, &actor).await);
        done.sort_by(|a, b| {
            a.namespace
                .cmp(&b.namespace)
                .then_with(|| a.pvc.cmp(&b.pvc))
                .then_with(|| b.finished_at.cmp(&a.finished_at))
        });
        Ok::<_, anyhow::Error>(done)
    }
    .await;
    store.close().await;
    let items = result?;
    match args.output {
        Output::Json => super::emit_json(&items)?,
        Output::Table | Output::Wide if items.is_empty() => super::emit(
            "Nothing to prune: no successful backup falls under a retention policy (set \
             --keep-* on schedules, or --default-keep-*).\n",
        )?,
        Output::Table | Output::Wide => super::emit(&render(&items))?,
    }
    let failed = items.iter().any(|i| i.status == PruneStatus::Failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(items: &[PruneItem]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                format!("{}/{}", i.namespace, i.pvc),
                i.finished_at.clone(),
                i.policy.clone(),
                i.status.to_string(),
                if i.reasons.is_empty() {
                    table::or_dash(i.message.as_deref())
                } else {
                    i.reasons.join("; ")
                },
            ]
        })
        .collect();
    table::render(&["PVC", "FINISHED", "POLICY", "STATUS", "WHY"], &rows)
}
