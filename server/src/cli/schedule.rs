//! `nkvm schedule add|list|show|pause|resume|rm`: stored schedules in `<data-dir>/nkvm.db`. They run
//! inside `nkvm serve`, which re-reads the schedules every few seconds, so changes made here apply
//! to a running server without a restart. `list` and `show` also include the schedules declared by
//! annotations, as the server last saw them.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use nkvm_engine::domain::PvcRef;
use nkvm_engine::domain::names::check_namespace;
use nkvm_engine::schedule::{self, Definition, Retention, Summary, manage};

use super::{Output, table};
use crate::config::GlobalOptions;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule (runs inside `nkvm serve`)
    Add(Box<AddArgs>),
    /// List schedules with their next run
    List {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one schedule
    Show {
        name: String,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Stop starting a schedule's runs (its PVCs still count as covered, and become overdue)
    Pause { name: String },
    /// Start a paused schedule's runs again
    Resume { name: String },
    /// Remove a schedule (its runs stay in the history)
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Name: 1-63 lower-case letters, digits and `-`
    pub name: String,

    /// Five cron fields: minute hour day-of-month month day-of-week (`0 3 * * *`, `*/15 * * * *`)
    #[arg(long, value_name = "EXPR")]
    pub cron: String,

    /// IANA time zone the cron fields are read in
    #[arg(long, value_name = "TZ", default_value = "UTC")]
    pub timezone: String,

    /// Back up these PVCs
    #[arg(long = "pvc", value_name = "NS/PVC", value_parser = PvcRef::parse, conflicts_with_all = ["namespaces", "all_namespaces", "selector", "owner_kind"])]
    pub pvcs: Vec<PvcRef>,

    /// Back up the PVCs of these namespaces (with --selector and --owner-kind to narrow)
    #[arg(long = "namespace", short = 'n', value_name = "NS", value_parser = |ns: &str| check_namespace(ns).map(|()| ns.to_owned()))]
    pub namespaces: Vec<String>,

    /// Back up matching PVCs of every namespace nkvm may read
    #[arg(long, conflicts_with = "namespaces")]
    pub all_namespaces: bool,

    /// Only PVCs whose labels match (`app=db,tier!=cache`)
    #[arg(long, value_name = "LABELS")]
    pub selector: Option<String>,

    /// Only PVCs one of whose owners has this kind (`StatefulSet`)
    #[arg(long, value_name = "KIND")]
    pub owner_kind: Option<String>,

    /// Destination of the archives [default: the server's default]
    #[arg(long, value_name = "NAME")]
    pub destination: Option<String>,

    /// Runs of this schedule at the same time
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Keep the N newest backups
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest ISO weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,

    /// Recovery point objective in minutes [default: twice the interval]
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub rpo_minutes: Option<u64>,
}

impl AddArgs {
    /// The definition these options describe.
    pub fn definition(&self) -> anyhow::Result<Definition> {
        if self.pvcs.is_empty() && self.namespaces.is_empty() && !self.all_namespaces {
            anyhow::bail!(
                "say what to back up: --pvc NS/PVC..., or --namespace NS... (or \
                 --all-namespaces) with an optional --selector and --owner-kind"
            );
        }
        let mut definition = Definition::new(&self.name, &self.cron);
        definition.timezone.clone_from(&self.timezone);
        definition.pvcs = self.pvcs.iter().map(ToString::to_string).collect();
        definition.namespaces.clone_from(&self.namespaces);
        definition.selector = self.selector.clone().unwrap_or_default();
        definition.owner_kind.clone_from(&self.owner_kind);
        definition.destination.clone_from(&self.destination);
        definition.concurrency = self.concurrency;
        definition.retention = Retention {
            keep_last: self.keep_last,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
        };
        definition.rpo_seconds = self.rpo_minutes.map(|m| m.saturating_mul(60));
        Ok(definition)
    }
}

pub async fn run(global: &GlobalOptions, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let store = global.open_database().await?;
    let who = super::backup::requester();
    let result = match command {
        ScheduleCommand::Add(args) => {
            let definition = args.definition()?;
            let destinations = global.destination_names()?;
            manage::create(&store, &definition, &destinations, &who)
                .await
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    super::emit(&format!(
                        "schedule {} created; `nkvm serve` runs it\n",
                        definition.name
                    ))
                })
        }
        ScheduleCommand::Pause { name } => manage::set_paused(&store, &name, true, &who)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|()| super::emit(&format!("schedule {name} paused\n"))),
        ScheduleCommand::Resume { name } => manage::set_paused(&store, &name, false, &who)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|()| super::emit(&format!("schedule {name} resumed\n"))),
        ScheduleCommand::Rm { name } => manage::remove(&store, &name, &who)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|()| super::emit(&format!("schedule {name} removed\n"))),
        ScheduleCommand::List { output } => {
            let summaries = summaries(&store).await?;
            print_summaries(&summaries, output)?;
            Ok(())
        }
        ScheduleCommand::Show { name, output } => {
            let summaries = summaries(&store).await?;
            let Some(found) = summaries.into_iter().find(|s| s.name == name) else {
                store.close().await;
                anyhow::bail!("no schedule is named {name:?} (`nkvm schedule list` shows them)");
            };
            match output {
                Output::Json => super::emit_json(&found)?,
                Output::Table | Output::Wide => super::emit(&render_one(&found))?,
            }
            Ok(())
        }
    };
    store.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn summaries(store: &nkvm_engine::store::Store) -> anyhow::Result<Vec<Summary>> {
    let now = jiff::Timestamp::now();
    let (schedules, broken) = schedule::catalog(store, None, now)
        .await
        .context("cannot read the schedules")?;
    for b in broken {
        eprintln!("warning: schedule {} cannot run: {}", b.name, b.message);
    }
    Ok(schedules.iter().map(|s| s.summary(now)).collect())
}

fn print_summaries(summaries: &[Summary], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => super::emit_json(&summaries)?,
        Output::Table | Output::Wide if summaries.is_empty() => {
            super::emit("No schedules. Create one with `nkvm schedule add NAME --cron ...`.\n")?;
        }
        Output::Table | Output::Wide => {
            let rows: Vec<Vec<String>> = summaries
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        format!("{} ({})", s.cron, s.timezone),
                        s.target.clone(),
                        if s.paused {
                            "paused".to_owned()
                        } else {
                            table::or_dash(s.next_run.as_deref())
                        },
                        s.retention.to_string(),
                        s.source.clone(),
                    ]
                })
                .collect();
            super::emit(&table::render(
                &["NAME", "CRON", "TARGET", "NEXT RUN", "RETENTION", "SOURCE"],
                &rows,
            ))?;
        }
    }
    Ok(())
}

fn render_one(s: &Summary) -> String {
    let rows = [
        ("Name", s.name.clone()),
        (
            "Source",
            match &s.declared_on {
                Some(object) => format!("annotations on {object} (read-only)"),
                None => format!(
                    "stored, created by {}",
                    table::or_dash(s.created_by.as_deref())
                ),
            },
        ),
        (
            "Cron",
            format!("{} ({}): {}", s.cron, s.timezone, s.cron_description),
        ),
        ("Target", s.target.clone()),
        (
            "Destination",
            s.destination
                .clone()
                .unwrap_or_else(|| "(default)".to_owned()),
        ),
        ("Concurrency", s.concurrency.to_string()),
        ("Retention", s.retention.to_string()),
        (
            "RPO",
            s.rpo_seconds.map_or_else(
                || "-".to_owned(),
                |secs| nkvm_engine::domain::format::format_duration(secs as f64),
            ),
        ),
        ("Paused", if s.paused { "yes" } else { "no" }.to_owned()),
        ("Next run", table::or_dash(s.next_run.as_deref())),
        (
            "Last firing",
            table::or_dash(s.last_scheduled_at.as_deref()),
        ),
    ];
    let mut text = String::new();
    for (key, value) in rows {
        text.push_str(&format!("{key:<12} {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ScheduleCommand,
    }

    fn add(args: &[&str]) -> anyhow::Result<Definition> {
        let cli = TestCli::try_parse_from(["schedule", "add"].iter().chain(args))?;
        match cli.command {
            ScheduleCommand::Add(args) => args.definition(),
            other => panic!("not add: {other:?}"),
        }
    }

    #[test]
    fn add_follows_the_contract() {
        let d = add(&[
            "nightly",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/Berlin",
            "--namespace",
            "shop",
            "--namespace",
            "web",
            "--selector",
            "app=db",
            "--destination",
            "offsite",
            "--keep-last",
            "7",
            "--keep-daily",
            "14",
            "--keep-weekly",
            "8",
            "--keep-monthly",
            "12",
        ])
        .unwrap();
        assert_eq!(d.name, "nightly");
        assert_eq!(d.timezone, "Europe/Berlin");
        assert_eq!(d.namespaces, ["shop", "web"]);
        assert_eq!(d.selector, "app=db");
        assert_eq!(d.destination.as_deref(), Some("offsite"));
        assert_eq!(
            d.retention.to_string(),
            "last 7, daily 14, weekly 8, monthly 12"
        );
        d.compile().unwrap();
        let d = add(&[
            "two", "--cron", "@hourly", "--pvc", "shop/a", "--pvc", "shop/b",
        ])
        .unwrap();
        assert_eq!(d.pvcs, ["shop/a", "shop/b"]);
        assert_eq!(d.timezone, "UTC");
        assert!(
            add(&["x", "--cron", "@daily"])
                .unwrap_err()
                .to_string()
                .contains("say what to back up")
        );
        assert!(add(&["x", "--cron", "@daily", "--pvc", "a/b", "--namespace", "a"]).is_err());
        assert!(add(&["x", "--cron", "@daily", "--pvc", "nope"]).is_err());
        assert!(
            add(&[
                "x",
                "--cron",
                "@daily",
                "--all-namespaces",
                "--owner-kind",
                "StatefulSet"
            ])
            .is_ok()
        );
    }
}
