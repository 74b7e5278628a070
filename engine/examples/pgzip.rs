//! nkvm's block-parallel gzip encoder as a filter (used by `bench/backup.sh` for the local ceiling).
//!
//! `pgzip -LEVEL [THREADS]` reads stdin to its end and writes one gzip member to stdout through
//! [`ParallelGzipEncoder`], at gzip level LEVEL (0–9) with THREADS workers (default: the machine's
//! available parallelism), as `nkvm backup --compression server` does with the tar stream.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::ExitCode;

use nkvm_engine::backup::pgzip::{ParallelGzipEncoder, PgzipConfig, default_threads};

/// Bytes read from stdin at a time.
const READ_SIZE: usize = 256 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> BoxError {
    "usage: pgzip -LEVEL [THREADS]   (LEVEL 0-9, THREADS >= 1)".into()
}

fn parse_args() -> Result<PgzipConfig, BoxError> {
    let mut args = std::env::args().skip(1);
    let level: u32 = args
        .next()
        .and_then(|a| a.strip_prefix('-').map(str::to_owned))
        .and_then(|a| a.parse().ok())
        .filter(|l| *l <= 9)
        .ok_or_else(usage)?;
    let threads = match args.next() {
        Some(t) => t.parse().ok().filter(|t| *t >= 1).ok_or_else(usage)?,
        None => default_threads(),
    };
    if args.next().is_some() {
        return Err(usage());
    }
    Ok(PgzipConfig::new(level, threads))
}

async fn run(config: PgzipConfig) -> Result<(), BoxError> {
    // A duplicate of stdout as an asynchronous file: the encoder writes to an `AsyncWrite`.
    let stdout = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let mut encoder = ParallelGzipEncoder::new(tokio::fs::File::from_std(stdout), config);
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        // Blocking reads on the runtime's main thread: the workers compress on the blocking pool
        // meanwhile.
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading stdin: {e}").into()),
        };
        encoder.write_all(&buf[..n]).await?;
    }
    encoder.finish().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(config) => run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgzip: {e}");
            ExitCode::FAILURE
        }
    }
}
