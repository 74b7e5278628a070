//! `nkvm destinations list|check [NAME]`: the destinations of `--destinations FILE` (names, kinds
//! and non-secret settings), and a probe of each (connect, write, read back, delete) whose exit
//! status is non-zero when any failed. Nothing here ever prints a secret: settings show where a
//! secret is referenced from, errors are the engine's (which hold none).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use nkvm_engine::destination::{Destination, DestinationInfo, Destinations};
use serde::Serialize;

use super::{Output, table};
use crate::config::GlobalOptions;

#[derive(Debug, Args)]
pub struct DestinationsArgs {
    #[command(subcommand)]
    pub command: DestinationsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// List the destinations: name, type, default, location and settings (never a secret)
    List {
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Probe destinations (all, or the one named): connect, write a 64 KiB object, read it back,
    /// delete it; the exit status is non-zero when any failed
    Check {
        /// Only this destination
        name: Option<String>,
        /// Output format
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// The outcome of one destination's probe, as `--output json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: String,
    /// `local`, `s3`, `sftp` or `ftps`.
    pub kind: String,
    /// `ok` or `failed`.
    pub status: &'static str,
    /// The step that failed (`connect`, `verify-server`, `authenticate`, `upload`, …), else null.
    pub step: Option<&'static str>,
    /// What happened; on failure also what to do.
    pub message: String,
    /// Time of the whole probe, in seconds.
    pub elapsed_secs: f64,
}

pub async fn run(global: &GlobalOptions, args: DestinationsArgs) -> anyhow::Result<ExitCode> {
    let destinations = global.destinations()?;
    match args.command {
        DestinationsCommand::List { output } => {
            let described = destinations.describe();
            match output {
                Output::Json => super::emit_json(&described)?,
                Output::Table | Output::Wide => super::emit(&render_list(&described))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        DestinationsCommand::Check { name, output } => {
            let chosen = chosen(&destinations, name.as_deref())?;
            let results =
                futures::future::join_all(chosen.into_iter().map(|d| check_one(d.clone()))).await;
            match output {
                Output::Json => super::emit_json(&results)?,
                Output::Table | Output::Wide => super::emit(&render_checks(&results))?,
            }
            Ok(if results.iter().all(|r| r.status == "ok") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The destinations to probe: the one named, else all.
fn chosen<'a>(
    destinations: &'a Destinations,
    name: Option<&str>,
) -> anyhow::Result<Vec<&'a Destination>> {
    Ok(match name {
        Some(name) => vec![destinations.get(name).context("nkvm destinations check")?],
        None => destinations.iter().collect(),
    })
}

async fn check_one(destination: Destination) -> CheckResult {
    let started = std::time::Instant::now();
    let outcome = destination.check().await;
    let elapsed_secs = started.elapsed().as_secs_f64();
    let (status, step, message) = match outcome {
        Ok(report) => (
            "ok",
            None,
            format!(
                "connected, wrote, read back and deleted {} in {:.2}s",
                report.probe_uri,
                report.elapsed.as_secs_f64()
            ),
        ),
        Err(error) => ("failed", Some(error.step()), error.to_string()),
    };
    CheckResult {
        name: destination.name().to_owned(),
        kind: destination.kind().as_str().to_owned(),
        status,
        step,
        message,
        elapsed_secs,
    }
}

fn render_list(described: &[DestinationInfo]) -> String {
    let rows: Vec<Vec<String>> = described
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.kind.clone(),
                if d.default { "yes" } else { "" }.to_owned(),
                d.location.clone(),
                d.settings
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table::render(&["NAME", "TYPE", "DEFAULT", "LOCATION", "SETTINGS"], &rows)
}

fn render_checks(results: &[CheckResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.kind.clone(),
                r.status.to_owned(),
                table::or_dash(r.step),
                r.message.clone(),
            ]
        })
        .collect();
    table::render(&["NAME", "TYPE", "STATUS", "STEP", "MESSAGE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        crate::cli::Cli::try_parse_from(args)
    }

    #[test]
    fn parses_list_and_check() {
        let cli = parse(&[
            "nkvm",
            "--destinations",
            "/etc/d.yaml",
            "destinations",
            "list",
        ])
        .unwrap();
        assert_eq!(
            cli.global.destinations.as_deref(),
            Some(std::path::Path::new("/etc/d.yaml"))
        );
        let crate::cli::Command::Destinations(args) = &cli.command else {
            panic!("not destinations");
        };
        assert!(matches!(
            args.command,
            DestinationsCommand::List {
                output: Output::Table
            }
        ));
        let cli = parse(&["nkvm", "destinations", "check", "offsite", "-o", "json"]).unwrap();
        let crate::cli::Command::Destinations(args) = &cli.command else {
            panic!("not destinations");
        };
        let DestinationsCommand::Check { name, output } = &args.command else {
            panic!("not check");
        };
        assert_eq!(name.as_deref(), Some("offsite"));
        assert_eq!(*output, Output::Json);
        assert!(parse(&["nkvm", "destinations"]).is_err());
    }

    #[tokio::test]
    async fn a_local_destination_checks_and_an_unknown_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = Destinations::local_only(dir.path());
        let error = chosen(&destinations, Some("offsite")).unwrap_err();
        assert!(
            format!("{error:#}").contains("no destination named \"offsite\""),
            "{error:#}"
        );
        let local = chosen(&destinations, None).unwrap()[0].clone();
        let result = check_one(local).await;
        assert_eq!(result.status, "ok", "{result:?}");
        assert_eq!(result.step, None);
        let text = render_checks(std::slice::from_ref(&result));
        assert!(text.lines().nth(1).unwrap().starts_with("local"), "{text}");

        // A local destination whose directory cannot be created fails at a named step.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let blocked = Destinations::local_only(&dir.path().join("file"));
        let result = check_one(blocked.default_destination().clone()).await;
        assert_eq!(result.status, "failed");
        assert_eq!(result.step, Some("upload"), "{result:?}");
    }

    #[test]
    fn the_listing_shows_references_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let described = Destinations::local_only(dir.path()).describe();
        let text = render_list(&described);
        assert!(text.starts_with("NAME"), "{text}");
        assert!(text.contains("local  local  yes"), "{text}");
        assert!(
            text.contains(&format!("path={}/artifacts", dir.path().display())),
            "{text}"
        );
    }
}
