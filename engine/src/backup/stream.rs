//! The data path of a backup: tar bytes from the helper's stdout → tar checker → block-parallel
//! gzip ([`super::pgzip`]) → sha256 → a sink (the destination's upload: `local` writes
//! `<final>.partial`, S3 a multipart upload, SFTP/FTPS a temporary file). Memory stays bounded (one
//! read buffer, the encoder's blocks in flight, and the sink's own buffers) whatever the size of
//! the volume. The sink is only written and flushed here; the caller commits it (or aborts it) once
//! tar's exit status is known.
//!
//! The reader is any `AsyncRead` and the sink any `AsyncWrite`, so the pipeline is tested without a
//! cluster. A read that returns no byte for `stall_timeout` fails the stream as stalled; there is
//! no wall-clock limit.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::pgzip::{ParallelGzipEncoder, PgzipConfig, PgzipError};
use super::tarcheck::{TarChecker, TarCounts, TarError};

/// Size of one read from the exec stream.
pub const READ_CHUNK: usize = 128 * 1024;

/// Settings of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// gzip level, 0 (store) to 9 (smallest).
    pub gzip_level: u32,
    /// Blocks compressed in parallel (at least 1); the archive does not depend on it.
    pub gzip_threads: usize,
    /// Fail when no byte arrives for this long.
    pub stall_timeout: Duration,
    /// Least time between two progress callbacks.
    pub progress_interval: Duration,
    /// After the producer is known to have exited, a read that returns nothing for this long ends
    /// the stream (the bytes still in flight have arrived by then, or never will).
    pub drain_grace: Duration,
}

/// Where a stream is, passed to the progress callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Tar bytes read from the source.
    pub bytes_read: u64,
    /// Compressed bytes written so far.
    pub archive_bytes: u64,
    pub files: u64,
    /// File content bytes seen in the tar stream.
    pub source_bytes: u64,
}

/// A complete, checked archive, written and flushed into its sink (not yet committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedArchive {
    pub counts: TarCounts,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// Lowercase hex sha256 of the compressed archive.
    pub sha256: String,
}

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stalled: no data for {}s", .0.as_secs())]
    Stalled(Duration),
    #[error("reading the tar stream failed: {0}")]
    Read(#[source] io::Error),
    #[error("{0}")]
    Tar(#[from] TarError),
    /// Writing to the sink failed; `target` names it (a path or a destination URI).
    #[error("writing {target} failed: {source}")]
    Write {
        target: String,
        #[source]
        source: io::Error,
    },
    /// Compressing failed (not writing: that is [`StreamError::Write`]), e.g. a worker panicked.
    #[error("compressing the archive failed: {0}")]
    Compress(#[source] PgzipError),
    #[error("cancelled")]
    Cancelled,
}

impl StreamError {
    /// The error of a compression step writing to `target`: a failed write stays a write error.
    fn compress(target: &str, err: PgzipError) -> Self {
        match err {
            PgzipError::Write(source) => Self::Write {
                target: target.to_owned(),
                source,
            },
            other => Self::Compress(other),
        }
    }
}

/// `<final>.partial`.
pub fn partial_path_of(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Streams `reader` into `sink`: every byte through the tar checker, gzip at the configured level
/// on `gzip_threads` workers (one gzip member), sha256 over the compressed bytes; then flushes the
/// sink. `target` names the sink in errors. The archive must end with the end-of-archive blocks;
/// reading stops there (what follows is zero padding), at the reader's EOF, or when `exited` has
/// resolved and no byte came for `drain_grace`. On error the sink holds an incomplete archive: the
/// caller aborts it.
pub async fn write_archive<R, W, E, F>(
    mut reader: R,
    sink: &mut W,
    target: &str,
    config: &StreamConfig,
    cancel: &CancellationToken,
    exited: E,
    mut on_progress: F,
) -> Result<StreamedArchive, StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: Future<Output = ()>,
    F: FnMut(&StreamProgress),
{
    let write_err = |source| StreamError::Write {
        target: target.to_owned(),
        source,
    };
    let mut encoder = ParallelGzipEncoder::new(
        HashingWriter::new(sink),
        PgzipConfig::new(config.gzip_level, config.gzip_threads),
    );
    let compress_err = |err| StreamError::compress(target, err);
    let mut checker = TarChecker::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut progress = StreamProgress::default();
    let mut last_report = Instant::now();
    let mut exited = std::pin::pin!(exited);
    let mut producer_done = false;

    loop {
        let limit = if producer_done {
            config.drain_grace
        } else {
            config.stall_timeout
        };
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(StreamError::Cancelled),
            () = &mut exited, if !producer_done => {
                producer_done = true;
                continue;
            }
            read = tokio::time::timeout(limit, reader.read(&mut buf)) => read,
        };
        let n = match read {
            Err(_elapsed) if producer_done => break,
            Err(_elapsed) => return Err(StreamError::Stalled(config.stall_timeout)),
            Ok(Err(err)) => return Err(StreamError::Read(err)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        checker.feed(chunk)?;
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(StreamError::Cancelled),
            written = encoder.write_all(chunk) => written.map_err(compress_err)?,
        }
        let counts = checker.counts();
        progress = StreamProgress {
            bytes_read: counts.stream_bytes,
            archive_bytes: encoder.get_ref().written,
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
        };
        if last_report.elapsed() >= config.progress_interval {
            last_report = Instant::now();
            on_progress(&progress);
        }
        if checker.is_complete() {
            break;
        }
    }
    let counts = checker.finish()?;
    let hashing = encoder.finish().await.map_err(compress_err)?;
    hashing.inner.flush().await.map_err(write_err)?;
    let archive_bytes = hashing.written;
    let sha256 = hex::encode(hashing.hasher.finalize());
    progress.archive_bytes = archive_bytes;
    on_progress(&progress);
    Ok(StreamedArchive {
        counts,
        archive_bytes,
        sha256,
    })
}

/// `fsync` of the directory holding `path`, so that a rename survives a crash.
pub async fn sync_dir(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// Counts and hashes every byte written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.hasher.update(&buf[..n]);
            this.written += n as u64;
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn config() -> StreamConfig {
        StreamConfig {
            gzip_level: 6,
            gzip_threads: 2,
            stall_timeout: Duration::from_secs(5),
            progress_interval: Duration::ZERO,
            drain_grace: Duration::from_secs(2),
        }
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    fn tar_of(dir: &Path) -> Vec<u8> {
        let out = Command::new("tar")
            .args(["-cf", "-", "-C"])
            .arg(dir)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn source() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut big = Vec::new();
        for i in 0..300_000u32 {
            big.extend_from_slice(&i.to_le_bytes());
        }
        std::fs::write(dir.path().join("sub/big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), b"hello").unwrap();
        dir
    }

    /// Streams `input` into a byte vector.
    async fn archive_of(
        input: impl AsyncRead + Unpin,
        cfg: &StreamConfig,
        cancel: &CancellationToken,
        exited: impl Future<Output = ()>,
    ) -> (Result<StreamedArchive, StreamError>, Vec<u8>) {
        let mut sink = Vec::new();
        let result = write_archive(input, &mut sink, "memory", cfg, cancel, exited, |_| {}).await;
        (result, sink)
    }

    #[tokio::test]
    async fn writes_a_verified_archive_that_system_tar_extracts() {
        let src = source();
        let stream = tar_of(src.path());
        let mut sink = Vec::new();
        let mut reports = Vec::new();
        let archive = write_archive(
            &stream[..],
            &mut sink,
            "memory",
            &config(),
            &CancellationToken::new(),
            never(),
            |p| reports.push(*p),
        )
        .await
        .unwrap();
        assert_eq!(archive.counts.regular_files, 2);
        assert_eq!(archive.counts.file_bytes, 1_200_005);
        assert_eq!(archive.archive_bytes, sink.len() as u64);
        assert_eq!(archive.sha256, hex::encode(Sha256::digest(&sink)));
        let last = reports.last().unwrap();
        assert_eq!(last.bytes_read, stream.len() as u64);
        assert_eq!(last.archive_bytes, archive.archive_bytes);
        assert_eq!(last.files, 2);

        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("a.tar.gz");
        std::fs::write(&file, &sink).unwrap();
        let extracted = tempfile::tempdir().unwrap();
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&file)
            .arg("-C")
            .arg(extracted.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(extracted.path().join("sub/big")).unwrap(),
            std::fs::read(src.path().join("sub/big")).unwrap()
        );
    }

    #[tokio::test]
    async fn gzip_level_is_applied() {
        let stream = tar_of(source().path());
        let mut sizes = Vec::new();
        for level in [0, 9] {
            let cfg = StreamConfig {
                gzip_level: level,
                ..config()
            };
            let (result, _) =
                archive_of(&stream[..], &cfg, &CancellationToken::new(), never()).await;
            sizes.push(result.unwrap().archive_bytes);
        }
        assert!(sizes[0] > stream.len() as u64, "level 0 stores: {sizes:?}");
        assert!(sizes[1] < sizes[0] / 2, "level 9 compresses: {sizes:?}");
    }

    #[tokio::test]
    async fn truncated_stream_fails() {
        let stream = tar_of(source().path());
        let (result, _) = archive_of(
            &stream[..700_000],
            &config(),
            &CancellationToken::new(),
            never(),
        )
        .await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, StreamError::Tar(TarError::Truncated(_))),
            "{err}"
        );
        assert!(err.to_string().starts_with("truncated: "), "{err}");
    }

    #[tokio::test]
    async fn garbage_fails_fast() {
        let garbage = vec![0x41u8; 100_000];
        let (result, _) =
            archive_of(&garbage[..], &config(), &CancellationToken::new(), never()).await;
        assert!(matches!(
            result.unwrap_err(),
            StreamError::Tar(TarError::BadHeader { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_source_stalls() {
        let (_writer, reader) = tokio::io::duplex(1024);
        let cfg = StreamConfig {
            stall_timeout: Duration::from_mins(2),
            ..config()
        };
        let (result, _) = archive_of(reader, &cfg, &CancellationToken::new(), never()).await;
        assert_eq!(result.unwrap_err().to_string(), "stalled: no data for 120s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_moving_source_never_stalls() {
        let stream = tar_of(source().path());
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            for piece in stream.chunks(100_000) {
                // Far longer in total than the stall timeout, but never silent that long.
                tokio::time::sleep(Duration::from_secs(3)).await;
                writer.write_all(piece).await.unwrap();
            }
        });
        let (result, _) = archive_of(reader, &config(), &CancellationToken::new(), never()).await;
        feeder.await.unwrap();
        assert_eq!(result.unwrap().counts.regular_files, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_end_of_archive_without_waiting_for_eof() {
        let stream = tar_of(source().path());
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            writer.write_all(&stream).await.unwrap();
            // The producer stays alive (as the helper's shell does until told to exit).
            tokio::time::sleep(Duration::from_hours(1)).await;
            drop(writer);
        });
        let (result, _) = archive_of(reader, &config(), &CancellationToken::new(), never()).await;
        assert_eq!(result.unwrap().counts.regular_files, 2);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_producer_that_exited_mid_archive_ends_the_stream_as_truncated() {
        let stream = tar_of(source().path());
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            writer.write_all(&stream[..300_000]).await.unwrap();
            tokio::time::sleep(Duration::from_hours(1)).await;
            drop(writer);
        });
        let exited = tokio::time::sleep(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let (result, _) = archive_of(reader, &config(), &CancellationToken::new(), exited).await;
        let err = result.unwrap_err();
        assert!(
            matches!(err, StreamError::Tar(TarError::Truncated(_))),
            "{err}"
        );
        // Ended by the drain grace, not by the 5 s stall timeout.
        assert!(started.elapsed() < Duration::from_secs(4));
        feeder.abort();
    }

    #[tokio::test]
    async fn compression_failures_name_their_step() {
        let panicked = tokio::task::spawn_blocking(|| panic!("boom"))
            .await
            .unwrap_err();
        let err = StreamError::compress(
            "/d/a.tar.gz",
            PgzipError::Worker {
                block: 3,
                source: panicked,
            },
        );
        assert!(matches!(err, StreamError::Compress(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("compressing the archive failed: the compression worker of block 3"),
            "{err}"
        );
        let err = StreamError::compress(
            "s3://b/a.tar.gz",
            PgzipError::Write(io::Error::other("full")),
        );
        assert_eq!(err.to_string(), "writing s3://b/a.tar.gz failed: full");
    }

    #[tokio::test]
    async fn cancel_stops() {
        let (_writer, reader) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let (result, _) = archive_of(reader, &config(), &cancel, never()).await;
        assert!(matches!(result.unwrap_err(), StreamError::Cancelled));
    }

    /// A sink that refuses every write, as an upload whose server went away.
    struct Refusing;

    impl AsyncWrite for Refusing {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::Error::other("the server went away")))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_refusing_sink_fails_as_a_write_naming_the_target() {
        let stream = tar_of(source().path());
        let err = write_archive(
            &stream[..],
            &mut Refusing,
            "s3://bucket/ns/pvc/a.tar.gz",
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StreamError::Write { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "writing s3://bucket/ns/pvc/a.tar.gz failed: the server went away"
        );
    }
}
