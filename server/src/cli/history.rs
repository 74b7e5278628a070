//! `nkvm history`: recent backup runs from `<data-dir>/nkvm.db`, newest first, as a table or as a
//! JSON array of run records.
//!
//! The database is opened read-only and nothing is created: without one, a warning on stderr and an
//! empty list.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use nkvm_engine::domain::format::{format_bytes, format_duration};
use nkvm_engine::domain::{PvcRef, RunStatus};
use nkvm_engine::store::{self, RunFilter, RunRecord};

use super::Output;
use super::table::{self, Column, Layout, col, wide};
use crate::config::GlobalOptions;

/// Runs listed when `--limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs of this PVC
    #[arg(long, value_name = "NS/PVC", value_parser = PvcRef::parse, conflicts_with = "namespace")]
    pub pvc: Option<PvcRef>,

    /// Only runs of PVCs in this namespace
    #[arg(
        short = 'n',
        long,
        value_name = "NS",
        value_parser = crate::config::namespace_arg
    )]
    pub namespace: Option<String>,

    /// Only runs with this status
    #[arg(
        long,
        value_name = "STATUS",
        value_parser = PossibleValuesParser::new(RunStatus::ALL.iter().map(|s| s.as_str()))
            .try_map(|s| s.parse::<RunStatus>())
    )]
    pub status: Option<RunStatus>,

    /// Most runs listed, newest first (0: all)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LIMIT)]
    pub limit: u32,

    /// Runs skipped before the first one listed
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: u32,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Print tables without their header line
    #[arg(long)]
    pub no_headers: bool,
}

impl HistoryArgs {
    /// The store query these options ask for.
    pub fn filter(&self) -> RunFilter {
        RunFilter {
            namespace: self
                .pvc
                .as_ref()
                .map(|p| p.namespace.clone())
                .or_else(|| self.namespace.clone()),
            pvc: self.pvc.as_ref().map(|p| p.name.clone()),
            status: self.status,
            limit: self.limit,
            offset: self.offset,
            ..RunFilter::default()
        }
    }
}

pub async fn run(global: &GlobalOptions, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (path, runs) = load(global, &args).await?;
    match args.output {
        Output::Json => super::emit_json(&runs)?,
        Output::Table | Output::Wide if runs.is_empty() => {
            super::emit(&format!(
                "No backup runs match (history: {}).\n",
                path.display()
            ))?;
        }
        Output::Table | Output::Wide => super::emit(&render_table(
            &runs,
            args.output.layout(args.no_headers),
            jiff::Timestamp::now(),
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the data directory's database (read-only, creating nothing) and runs the query; no
/// database is an empty history, said on stderr.
async fn load(
    global: &GlobalOptions,
    args: &HistoryArgs,
) -> anyhow::Result<(PathBuf, Vec<RunRecord>)> {
    let Some((path, store)) = super::read_history(global).await? else {
        return Ok((store::database_path(&global.data_dir), Vec::new()));
    };
    let runs = store.recent_runs(&args.filter()).await;
    store.close().await;
    Ok((path, runs?))
}

const COLUMNS: [Column; 13] = [
    col("AGE"),
    wide("STARTED"),
    col("NAMESPACE"),
    col("PVC"),
    col("STATUS"),
    col("STAGE"),
    col("DURATION"),
    col("SIZE"),
    wide("FILES"),
    wide("STARTED BY"),
    col("RUN"),
    wide("ARTIFACT"),
    col("MESSAGE"),
];

fn render_table(runs: &[RunRecord], layout: Layout, now: jiff::Timestamp) -> String {
    let message_width = if layout.wide { 200 } else { 60 };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                super::age_of(&r.started_at, now).unwrap_or_else(|| "-".to_owned()),
                to_seconds(&r.started_at),
                r.namespace.clone(),
                r.pvc.clone(),
                r.status.to_string(),
                r.stage.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                duration(r),
                r.bytes.map_or_else(|| "-".to_owned(), format_bytes),
                r.files.map_or_else(|| "-".to_owned(), |f| f.to_string()),
                r.started_by.clone(),
                r.run_id.clone(),
                table::or_dash(r.artifact.as_deref()),
                table::shorten(r.message.as_deref().unwrap_or(""), message_width),
            ]
        })
        .collect();
    table::render_columns(&COLUMNS, &rows, layout)
}

/// `2026-11-28T23:18:58.123456Z` → `2026-11-28T23:18:58Z` (the table does not need microseconds).
fn to_seconds(stored: &str) -> String {
    match stored.get(..19) {
        Some(head) if stored.len() == nkvm_engine::timestamp::WIDTH => format!("{head}Z"),
        _ => stored.to_owned(),
    }
}

/// Wall-clock time of a finished run (`6s`, `4m 05s`, `1h 02m`), `-` while running.
fn duration(run: &RunRecord) -> String {
    let (Some(start), Some(end)) = (
        nkvm_engine::timestamp::parse(&run.started_at),
        run.finished_at
            .as_deref()
            .and_then(nkvm_engine::timestamp::parse),
    ) else {
        return "-".to_owned();
    };
    format_duration(end.duration_since(start).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use nkvm_engine::domain::Stage;
    use nkvm_engine::store::{NewRun, RunUpdate};

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        global: GlobalOptions,
        #[command(flatten)]
        args: HistoryArgs,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("history").chain(args.iter().copied()))
    }

    fn record(id: i64) -> RunRecord {
        RunRecord {
            id,
            pvc_uid: "uid".to_owned(),
            finished_at: Some("2026-11-28T23:20:03.923456Z".to_owned()),
            bytes: Some(3 << 29),
            files: Some(12),
            ..RunRecord::unrecorded(
                &format!("run-{id}"),
                "shop",
                "data",
                RunStatus::Succeeded,
                "cli:me",
                "2026-11-28T23:18:58.123456Z".to_owned(),
            )
        }
    }

    #[test]
    fn defaults_list_the_50_newest_runs_as_a_table() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.args.output, Output::Table);
        assert_eq!(
            cli.args.filter(),
            RunFilter {
                limit: 50,
                ..RunFilter::default()
            }
        );
    }

    #[test]
    fn options_become_the_store_filter() {
        let cli = parse(&[
            "--pvc",
            "shop/web-data",
            "--status",
            "failed",
            "--limit",
            "5",
            "--offset",
            "10",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.args.output, Output::Json);
        assert_eq!(
            cli.args.filter(),
            RunFilter {
                namespace: Some("shop".to_owned()),
                pvc: Some("web-data".to_owned()),
                status: Some(RunStatus::Failed),
                limit: 5,
                offset: 10,
                ..RunFilter::default()
            }
        );
        let cli = parse(&["-n", "blog", "--limit", "0"]).unwrap();
        assert_eq!(cli.args.filter().namespace.as_deref(), Some("blog"));
        assert_eq!(cli.args.filter().pvc, None);
        assert_eq!(cli.args.filter().limit, 0);
    }

    #[test]
    fn bad_input_is_refused_with_a_clear_message() {
        for (args, needle) in [
            (&["--pvc", "web-data"][..], "NAMESPACE/PVC"),
            (&["--pvc", "Shop/data"][..], "invalid namespace"),
            (&["--pvc", "shop/Data_1"][..], "invalid PVC name"),
            (&["--namespace", "shop_1"][..], "invalid namespace"),
            (&["--status", "ok"][..], "succeeded"),
            (&["--limit", "many"][..], "--limit"),
        ] {
            let message = parse(args).unwrap_err().to_string();
            assert!(message.contains(needle), "{args:?}: {message}");
        }
        let err = parse(&["--pvc", "shop/data", "--namespace", "shop"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn table_shows_one_row_per_run() {
        let mut failed = record(2);
        failed.status = RunStatus::Failed;
        failed.stage = Some(Stage::Exec);
        failed.finished_at = None;
        failed.bytes = None;
        failed.files = None;
        failed.message = Some("tar exited with status 2:\n  file changed as we read it".to_owned());
        let now: jiff::Timestamp = "2026-11-29T02:18:58Z".parse().unwrap();
        let runs = [failed, record(1)];
        let text = render_table(&runs, Layout::default(), now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("AGE  NAMESPACE  PVC   STATUS"),
            "{text}"
        );
        assert!(lines[1].starts_with("2h   shop "), "{}", lines[1]);
        assert!(lines[1].contains(" failed     exec "), "{}", lines[1]);
        assert!(
            lines[1].ends_with("run-2  tar exited with status 2: file changed as we read it"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(" 1m 06s "), "{}", lines[2]);
        assert!(lines[2].contains(" 1.5 GiB "), "{}", lines[2]);
        assert!(text.lines().all(|l| l.chars().count() < 140), "{text}");

        let wide_layout = Layout {
            wide: true,
            no_headers: true,
        };
        let wide_text = render_table(&runs, wide_layout, now);
        assert_eq!(wide_text.lines().count(), 2, "{wide_text}");
        assert!(
            wide_text
                .lines()
                .nth(1)
                .unwrap()
                .contains("2026-11-28T23:18:58Z"),
            "{wide_text}"
        );
        assert!(wide_text.contains("cli:me"), "{wide_text}");
    }

    #[test]
    fn cells_are_compact() {
        let mut r = record(1);
        r.finished_at = Some("2026-11-28T23:18:59.900000Z".to_owned());
        assert_eq!(duration(&r), "2s");
        r.finished_at = Some("2026-11-29T01:20:03.123456Z".to_owned());
        assert_eq!(duration(&r), "2h 01m");
        r.finished_at = None;
        assert_eq!(duration(&r), "-");
        assert_eq!(
            to_seconds("2026-11-28T23:18:58.123456Z"),
            "2026-11-28T23:18:58Z"
        );
    }

    /// A directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let path = std::env::temp_dir()
                .join(format!("nkvm-history-test-{}-{nanos}", std::process::id()));
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn reads_without_creating_anything() {
        let dir = TempDir::new();
        let data_dir = dir.0.join("fresh");
        let data = data_dir.to_str().unwrap();
        let cli = parse(&["--data-dir", data]).unwrap();
        let (path, runs) = load(&cli.global, &cli.args).await.unwrap();
        assert!(runs.is_empty());
        assert_eq!(path, data_dir.join("nkvm.db"));
        assert!(
            !data_dir.exists(),
            "reading history created {}",
            data_dir.display()
        );

        std::fs::create_dir_all(&data_dir).unwrap();
        let store = nkvm_engine::store::Store::open(&path).await.unwrap();
        for (i, (ns, pvc)) in [("shop", "data"), ("blog", "data"), ("shop", "logs")]
            .into_iter()
            .enumerate()
        {
            let id = store
                .insert_run(&NewRun {
                    run_id: format!("r{i}"),
                    pvc_uid: format!("u{i}"),
                    namespace: ns.to_owned(),
                    pvc: pvc.to_owned(),
                    started_by: "cli:me".to_owned(),
                    started_at: nkvm_engine::timestamp::parse(&format!(
                        "2026-11-28T23:18:5{i}.000000Z"
                    ))
                    .unwrap(),
                    cluster: None,
                })
                .await
                .unwrap();
            if i == 1 {
                store
                    .update_run(
                        id,
                        &RunUpdate {
                            status: Some(RunStatus::Cancelled),
                            ..RunUpdate::default()
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        store.close().await;

        let ids = |args: &[&str]| {
            let mut all = vec!["--data-dir", data];
            all.extend_from_slice(args);
            let cli = parse(&all).unwrap();
            async move {
                let (_, runs) = load(&cli.global, &cli.args).await.unwrap();
                runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()
            }
        };
        assert_eq!(ids(&[]).await, ["r2", "r1", "r0"]);
        assert_eq!(ids(&["--pvc", "shop/data"]).await, ["r0"]);
        assert_eq!(ids(&["-n", "shop"]).await, ["r2", "r0"]);
        assert_eq!(ids(&["--status", "cancelled"]).await, ["r1"]);
        assert_eq!(ids(&["--limit", "1", "--offset", "1"]).await, ["r1"]);
    }

    #[test]
    fn json_is_an_array_of_run_records() {
        let json = serde_json::to_value([record(1)]).unwrap();
        let first = &json[0];
        assert_eq!(first["status"], "succeeded");
        assert_eq!(first["started_at"], "2026-11-28T23:18:58.123456Z");
        assert_eq!(first["namespace"], "shop");
        assert_eq!(first["pvc"], "data");
        assert!(first["stage"].is_null());
    }
}
