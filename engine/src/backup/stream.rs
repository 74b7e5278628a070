//! The data path of a backup: tar bytes from the helper's stdout → tar checker → block-parallel
//! gzip ([`super::pgzip`]) → sha256 → `<final>.partial` → fsync → rename → fsync of the directory.
//! Memory stays bounded (one read buffer, the encoder's blocks in flight and a write buffer)
//! whatever the size of the volume.
//!
//! The reader is any `AsyncRead`, so the pipeline is tested without a cluster. A read that returns no
//! byte for `stall_timeout` fails the stream as stalled; there is no wall-clock limit.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufWriter};
use tokio_util::sync::CancellationToken;

use super::pgzip::{ParallelGzipEncoder, PgzipConfig, PgzipError};
use super::tarcheck::{TarChecker, TarCounts, TarError};

/// Size of one read from the exec stream.
pub const READ_CHUNK: usize = 128 * 1024;
/// Write buffer in front of the archive file.
const WRITE_BUFFER: usize = 256 * 1024;

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

/// A complete, checked archive in its `.partial` file, synced to disk. Dropping it without
/// [`PartialArchive::commit`] removes the file.
#[derive(Debug)]
pub struct PartialArchive {
    pub counts: TarCounts,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// Lowercase hex sha256 of the compressed archive.
    pub sha256: String,
    guard: PartialFile,
    final_path: PathBuf,
}

impl PartialArchive {
    /// The `.partial` path.
    pub fn partial_path(&self) -> &Path {
        &self.guard.path
    }

    /// Renames the `.partial` file to its final name (refusing to replace an existing file) and
    /// syncs the directory.
    pub async fn commit(mut self) -> Result<PathBuf, StreamError> {
        let final_path = self.final_path.clone();
        let write_err = |source| StreamError::Write {
            path: final_path.clone(),
            source,
        };
        if tokio::fs::try_exists(&final_path)
            .await
            .map_err(write_err)?
        {
            return Err(write_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an archive with this name already exists",
            )));
        }
        tokio::fs::rename(&self.guard.path, &final_path)
            .await
            .map_err(write_err)?;
        self.guard.disarm();
        sync_dir(&final_path).await.map_err(write_err)?;
        Ok(final_path)
    }
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
    #[error("writing {} failed: {source}", .path.display())]
    Write {
        path: PathBuf,
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
    /// The error of a compression step writing to `path`: a failed write stays a write error.
    fn compress(path: &Path, err: PgzipError) -> Self {
        match err {
            PgzipError::Write(source) => Self::Write {
                path: path.to_owned(),
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

/// Streams `reader` into `<final_path>.partial`: every byte through the tar checker, gzip at the
/// configured level on `gzip_threads` workers (one gzip member), sha256 over the compressed
/// bytes; then flushes and `fsync`s the file. The archive must end with the end-of-archive
/// blocks; reading stops there (what follows is zero padding), at the reader's EOF, or when
/// `exited` has resolved and no byte came for `drain_grace`. On error (or when the future is
/// dropped) the `.partial` file is removed.
pub async fn write_partial<R, E, F>(
    mut reader: R,
    final_path: &Path,
    config: &StreamConfig,
    cancel: &CancellationToken,
    exited: E,
    mut on_progress: F,
) -> Result<PartialArchive, StreamError>
where
    R: AsyncRead + Unpin,
    E: Future<Output = ()>,
    F: FnMut(&StreamProgress),
{
    let partial = partial_path_of(final_path);
    let write_err = |source| StreamError::Write {
        path: partial.clone(),
        source,
    };
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .await
        .map_err(write_err)?;
    let guard = PartialFile {
        path: partial.clone(),
        armed: true,
    };
    let sink = HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    let mut encoder = ParallelGzipEncoder::new(
        sink,
        PgzipConfig::new(config.gzip_level, config.gzip_threads),
    );
    let compress_err = |err| StreamError::compress(&partial, err);
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
        encoder.write_all(chunk).await.map_err(compress_err)?;
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
    let sink = encoder.finish().await.map_err(compress_err)?;
    let archive_bytes = sink.written;
    let sha256 = hex::encode(sink.hasher.finalize());
    let file = sink.inner.into_inner();
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    progress.archive_bytes = archive_bytes;
    on_progress(&progress);
    Ok(PartialArchive {
        counts,
        archive_bytes,
        sha256,
        guard,
        final_path: final_path.to_owned(),
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

/// Removes its file on drop unless disarmed.
#[derive(Debug)]
struct PartialFile {
    path: PathBuf,
    armed: bool,
}

impl PartialFile {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.armed {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(path = %self.path.display(), "removed partial archive"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(
                    path = %self.path.display(),
                    error = %err,
                    "could not remove partial archive (start-up recovery removes it)"
                ),
            }
        }
    }
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
mod tests;
