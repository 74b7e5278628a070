//! `nkvm verify RUN_ID... | --pvc NS/PVC [--all]`: re-reads stored archives (sha256, gzip,
//! every tar entry, counts against the manifest) without a cluster, records each result in the
//! history, and prints a table or the JSON contract; the exit status is non-zero when any failed.

use std::process::ExitCode;

use clap::Args;
use nkvm_engine::backup::is_run_id;
use nkvm_engine::domain::{PvcRef, VerifyStatus};
use nkvm_engine::restore::{VerifyResult, verify_stored};
use tokio_util::sync::CancellationToken;

use super::watch::{self, Watch};
use super::{Output, table};
use crate::config::GlobalOptions;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Backup runs to verify (`nkvm history` lists run ids)
    #[arg(
        value_name = "RUN_ID",
        required_unless_present = "pvc",
        conflicts_with = "pvc"
    )]
    pub run_ids: Vec<String>,

    /// Verify the newest successful backup of this PVC instead
    #[arg(long, value_name = "NS/PVC", value_parser = PvcRef::parse)]
    pub pvc: Option<PvcRef>,

    /// With --pvc: every successful backup of the PVC, newest first
    #[arg(long, conflicts_with = "run_ids")]
    pub all: bool,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The result of a run that could not be verified at all.
fn refused(run_id: &str, message: String, by: &str) -> VerifyResult {
    VerifyResult {
        run_id: run_id.to_owned(),
        namespace: String::new(),
        pvc: String::new(),
        status: VerifyStatus::Failed,
        message,
        sha256: None,
        bytes: None,
        files: None,
        file_bytes: None,
        entries: None,
        verified_at: nkvm_engine::timestamp::rfc3339(jiff::Timestamp::now()),
        verified_by: by.to_owned(),
        history_id: 0,
        problems: Vec::new(),
    }
}

pub async fn run(global: &GlobalOptions, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let data = global.open_data_dir("nkvm verify").await?;
    let store = data.store.clone();
    let options = global.backup_options(&super::restore::tuning(120), data.instance.clone())?;
    let requester = super::backup::requester();
    let run_ids: Vec<String> = match &args.pvc {
        None => args.run_ids.clone(),
        Some(pvc) => {
            let runs = store
                .succeeded_runs_of(&pvc.namespace, &pvc.name)
                .await
                .map_err(|err| anyhow::anyhow!("reading the history failed: {err}"))?;
            if runs.is_empty() {
                anyhow::bail!("{pvc} has no successful backup in this data directory's history");
            }
            let take = if args.all { runs.len() } else { 1 };
            runs.into_iter().take(take).map(|r| r.run_id).collect()
        }
    };
    let cancel = CancellationToken::new();
    let watch = {
        let cancel = cancel.clone();
        Watch::start(move || {
            cancel.cancel();
            "stopping the verification...".to_owned()
        })
    };
    let mut results = Vec::with_capacity(run_ids.len());
    for run_id in &run_ids {
        if !is_run_id(run_id) {
            results.push(refused(
                run_id,
                format!("{run_id:?} is not a run id"),
                &requester.started_by,
            ));
            continue;
        }
        let result = verify_stored(&store, &options, run_id, &requester, &cancel)
            .await
            .unwrap_or_else(|message| refused(run_id, message, &requester.started_by));
        results.push(result);
    }
    let signal = watch.stop().await;
    match args.output {
        Output::Json => super::emit_json(&results)?,
        Output::Table | Output::Wide => super::emit(&render_table(&results))?,
    }
    drop(data);
    let verified = results.iter().all(|r| r.status == VerifyStatus::Verified);
    Ok(watch::exit_code(signal, verified))
}

fn render_table(results: &[VerifyResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                table::or_dash(
                    Some(&format!("{}/{}", r.namespace, r.pvc))
                        .filter(|t| t.len() > 1)
                        .map(String::as_str),
                ),
                r.status.to_string(),
                r.message.clone(),
            ]
        })
        .collect();
    table::render(&["RUN", "PVC", "STATUS", "MESSAGE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(args)
    }

    #[test]
    fn run_ids_or_a_pvc() {
        let cli = parse(&["nkvm", "verify", "a-1", "b-2", "-o", "json"]).unwrap();
        let crate::cli::Command::Verify(args) = cli.command else {
            panic!("not verify");
        };
        assert_eq!(args.run_ids, ["a-1", "b-2"]);
        assert_eq!(args.output, Output::Json);
        let cli = parse(&["nkvm", "verify", "--pvc", "shop/data", "--all"]).unwrap();
        let crate::cli::Command::Verify(args) = cli.command else {
            panic!("not verify");
        };
        assert_eq!(args.pvc, Some(PvcRef::new("shop", "data")));
        assert!(args.all);
        for bad in [
            vec!["nkvm", "verify"],
            vec!["nkvm", "verify", "x", "--pvc", "shop/data"],
            vec!["nkvm", "verify", "x", "--all"],
            vec!["nkvm", "verify", "--pvc", "data"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refused_runs_fail_with_their_reason() {
        let result = refused("zz", "no backup run has id".to_owned(), "cli:me");
        assert_eq!(result.status, VerifyStatus::Failed);
        let text = render_table(&[result]);
        assert!(
            text.contains("zz   -    failed  no backup run has id"),
            "{text}"
        );
    }
}
