//! The `nkvm` binary: parses the command line and dispatches to the web server or a CLI subcommand.
// The app's view types are deep (with `hydrate` unified in workspace builds, computing their layout
// needs more than the default 128 levels).
#![recursion_limit = "256"]

mod auth;
mod cli;
mod config;
mod memory;
mod ops;
mod signals;
mod web;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // Archives, the history database and the users file are for nkvm's user only: every file and
    // directory nkvm creates is owner-only, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = cli::Cli::parse();
    init_tracing(cli.default_log_level(), cli.global.log_format);
    match cli.run().await {
        Ok(code) => code,
        Err(err) if err.is::<cli::ClosedPipe>() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", cli::describe_error(&err));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: `default_level`, without kube's client
/// builder, which logs every failed request that nkvm reports itself anyway), as text or as one
/// JSON object per line (`--log-format json`). The destinations' directives come last, whatever
/// `RUST_LOG` says: they silence a dependency that would log the FTP password.
fn init_tracing(default_level: &str, format: config::LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let user = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| format!("{default_level},kube_client::client::builder=off"));
    let directives = format!("{user},{}", nkvm_engine::destination::LOG_FILTER_DIRECTIVES);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("warning: RUST_LOG is invalid ({error}); logging at {default_level}");
        EnvFilter::new(format!(
            "{default_level},{}",
            nkvm_engine::destination::LOG_FILTER_DIRECTIVES
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder.json().with_current_span(false).init(),
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
