//! The data path of a backup, in one of two [`Compression`] modes. `server`: tar bytes from the
//! helper's stdout → tar checker → block-parallel gzip ([`super::pgzip`]) → sha256 → a sink (the
//! destination's upload: `local` writes `<final>.partial`, S3 a multipart upload, SFTP/FTPS a
//! temporary file). `source`: the helper compresses; its gzip bytes go unchanged → sha256 → the
//! sink, and a streaming decoder ([`crate::restore::gunzip`]) feeds the tar checker beside them,
//! so the archive is proven (gzip CRC32 and size, one member, a complete tar stream) without being
//! compressed again. Memory stays bounded (one read buffer, the encoder's blocks in flight or the
//! decoder's output buffer and window, and the sink's own buffers) whatever the size of the
//! volume. The sink is only written and flushed here; the caller commits it (or aborts it) once
//! tar's exit status is known.
//!
//! The reader is any `AsyncRead` and the sink any `AsyncWrite`, so the pipeline is tested without a
//! cluster. A read that returns no byte for `stall_timeout` fails the stream as stalled, and a tar
//! stream longer than a multiple of the PVC's capacity ([`StreamCap`]) fails as too large; there
//! is no wall-clock limit.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::exec::ConnectionLost;
use super::pgzip::{ParallelGzipEncoder, PgzipConfig, PgzipError};
use super::tarcheck::{TarChecker, TarCounts, TarError};
use crate::domain::format::{format_bytes, format_bytes_exact};
use crate::restore::gunzip::{Gunzip, GunzipError};

/// Size of one read from the exec stream.
pub const READ_CHUNK: usize = 128 * 1024;

/// Where a backup's archive is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// nkvm compresses the raw tar stream it receives (block-parallel gzip on its own CPUs).
    Server,
    /// The helper pod compresses (`tar | pigz`, else `gzip`, within its CPU limit); nkvm receives,
    /// hashes and stores the gzip bytes as they are, decompressing them only to check them.
    #[default]
    Source,
}

impl Compression {
    /// `server` or `source`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Source => "source",
        }
    }
}

/// Settings of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// What the reader delivers: raw tar (`Server`: compress here) or gzip (`Source`).
    pub compression: Compression,
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
    /// Fail once the tar stream (uncompressed, in both modes) passes this; `None`: no cap.
    pub cap: Option<StreamCap>,
}

/// The most tar bytes one backup may stream: a multiple of its PVC's capacity. A volume cannot hold
/// more than its capacity, so a stream far beyond it means files that grow while they are read, a
/// filesystem that reports more than it stores, or sparse files read by a tar without `--sparse`;
/// without a cap such a stream holds a backup slot for hours and fills the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCap {
    /// The PVC's capacity in bytes.
    pub capacity: u64,
    /// How many times the capacity may stream (at least 1).
    pub factor: u32,
}

impl StreamCap {
    /// The cap of a PVC of `capacity` bytes at `factor`× (`None` when the factor is 0: no cap, or
    /// the capacity is unknown).
    #[must_use]
    pub fn of(capacity: Option<u64>, factor: u32) -> Option<Self> {
        (factor > 0)
            .then_some(capacity)
            .flatten()
            .map(|capacity| Self { capacity, factor })
    }

    /// The cap in bytes.
    #[must_use]
    pub fn bytes(self) -> u64 {
        self.capacity.saturating_mul(u64::from(self.factor))
    }
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
    /// The exec connection ended without the command's exit status: the API server, or the
    /// network to it, went away mid-stream.
    #[error("{ConnectionLost}")]
    ConnectionLost,
    #[error("{0}")]
    Tar(#[from] TarError),
    /// The helper's gzip stream (source compression) is corrupt, truncated or not one member.
    #[error("the gzip stream from the helper is invalid: {0}")]
    Gzip(String),
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
    /// The tar stream passed [`StreamCap::bytes`].
    #[error(
        "the tar stream passed {}, {}× the PVC's capacity of {}",
        format_bytes_exact(.0.bytes()),
        .0.factor,
        format_bytes(.0.capacity)
    )]
    TooLarge(StreamCap),
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

impl From<GunzipError> for StreamError {
    fn from(err: GunzipError) -> Self {
        Self::Gzip(match err {
            GunzipError::Trailing { offset } => format!(
                "more data after the end of its gzip member at byte {offset} (a second member or \
                 other bytes); archives must be one gzip member, as pigz and gzip write them"
            ),
            other => other.to_string(),
        })
    }
}

/// `<final>.partial`.
pub fn partial_path_of(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// What happens to the bytes read, per [`Compression`] mode.
enum Pipeline<'a, W> {
    /// Raw tar in: compress here, hash and write the compressed bytes.
    Server(Box<ParallelGzipEncoder<HashingWriter<&'a mut W>>>),
    /// gzip in: hash and write it unchanged; decompress a copy into the tar checker.
    Source {
        gunzip: Box<Gunzip>,
        out: HashingWriter<&'a mut W>,
    },
}

impl<'a, W: AsyncWrite + Unpin> Pipeline<'a, W> {
    /// Compressed bytes written so far.
    fn written(&self) -> u64 {
        match self {
            Self::Server(encoder) => encoder.get_ref().written,
            Self::Source { out, .. } => out.written,
        }
    }

    /// Takes one chunk of the input: checks it (decompressed, in source mode) and writes it.
    async fn take(
        &mut self,
        chunk: &[u8],
        checker: &mut TarChecker,
        target: &str,
        cancel: &CancellationToken,
    ) -> Result<(), StreamError> {
        match self {
            Self::Server(encoder) => {
                checker.feed(chunk)?;
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Err(StreamError::Cancelled),
                    written = encoder.write_all(chunk) => {
                        written.map_err(|err| StreamError::compress(target, err))
                    }
                }
            }
            Self::Source { gunzip, out } => {
                gunzip.feed(chunk, |tar| checker.feed(tar).map_err(StreamError::Tar))?;
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Err(StreamError::Cancelled),
                    written = out.write_all(chunk) => written.map_err(|source| StreamError::Write {
                        target: target.to_owned(),
                        source,
                    }),
                }
            }
        }
    }

    /// Whether everything that belongs to the archive has arrived: the end-of-archive blocks (and,
    /// in source mode, the end of the gzip member holding them).
    fn is_complete(&self, checker: &TarChecker) -> bool {
        checker.is_complete()
            && match self {
                Self::Server(_) => true,
                Self::Source { gunzip, .. } => gunzip.is_done(),
            }
    }

    /// Ends the archive (source mode: the gzip member must have ended, trailer checked); returns
    /// the hashing writer after flushing the sink.
    async fn finish(self, target: &str) -> Result<HashingWriter<&'a mut W>, StreamError> {
        let hashing = match self {
            Self::Server(encoder) => encoder
                .finish()
                .await
                .map_err(|err| StreamError::compress(target, err))?,
            Self::Source { gunzip, out } => {
                gunzip.finish()?;
                out
            }
        };
        Ok(hashing)
    }
}

/// Streams `reader` into `sink`. `Server` mode: every byte through the tar checker, gzip at the
/// configured level on `gzip_threads` workers (one gzip member), sha256 over the compressed bytes.
/// `Source` mode: the reader delivers gzip, which is hashed and written unchanged while a decoder
/// feeds the tar checker (the gzip member must end with a matching CRC32 and size, and nothing may
/// follow it). Then the sink is flushed. `target` names the sink in errors. The archive must end
/// with the end-of-archive blocks; reading stops there (what follows is zero padding; in source
/// mode, at the end of the gzip member holding them), at the reader's EOF, or when `exited` has
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
    let mut pipeline = match config.compression {
        Compression::Server => Pipeline::Server(Box::new(ParallelGzipEncoder::new(
            HashingWriter::new(sink),
            PgzipConfig::new(config.gzip_level, config.gzip_threads),
        ))),
        Compression::Source => Pipeline::Source {
            gunzip: Box::new(Gunzip::new()),
            out: HashingWriter::new(sink),
        },
    };
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
            Ok(Err(err)) if ConnectionLost::in_error(&err) => {
                return Err(StreamError::ConnectionLost);
            }
            Ok(Err(err)) => return Err(StreamError::Read(err)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        pipeline
            .take(&buf[..n], &mut checker, target, cancel)
            .await?;
        let counts = checker.counts();
        if let Some(cap) = config.cap
            && counts.stream_bytes > cap.bytes()
        {
            return Err(StreamError::TooLarge(cap));
        }
        progress = StreamProgress {
            bytes_read: counts.stream_bytes,
            archive_bytes: pipeline.written(),
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
        };
        if last_report.elapsed() >= config.progress_interval {
            last_report = Instant::now();
            on_progress(&progress);
        }
        if pipeline.is_complete(&checker) {
            break;
        }
    }
    if let Pipeline::Source { gunzip, .. } = &pipeline {
        gunzip.finish()?;
    }
    let counts = checker.finish()?;
    let hashing = pipeline.finish(target).await?;
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
mod source_tests;
#[cfg(test)]
mod tests;
