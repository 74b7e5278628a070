//! One streamed pass over a stored archive, shared by verification and both restore passes: the
//! compressed bytes are read once and fanned out to two workers on blocking threads, one hashing
//! them (sha256) and one decoding them ([`super::gunzip`]) into the tar checker
//! ([`crate::backup::tarcheck`]) and, for restores, the pre-scan's safety rules
//! ([`super::prescan`]). A restore's second pass also forwards the decoded tar stream, piece by
//! piece and only after the piece was checked, to whoever writes it into the helper. Channels are
//! bounded, so memory stays flat whatever the archive's size; a read that delivers nothing for the
//! stall timeout fails the pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::gunzip::{Gunzip, GunzipError};
use super::prescan::{Prescan, Refusal, Rules, Sample};
use crate::backup::tarcheck::{TarChecker, TarCounts, TarError};

/// Bytes read from the archive at a time.
pub const READ_CHUNK: usize = 256 * 1024;
/// Chunks queued for each worker.
const QUEUE: usize = 4;

/// What one pass found: the archive's digest and size, and what decoding it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassOutcome {
    /// Lowercase hex sha256 of the compressed bytes read (all of them, unless the pass stopped
    /// at the first problem).
    pub sha256: String,
    /// Compressed bytes read.
    pub archive_bytes: u64,
    /// The decoded contents, or the first problem decoding, checking or forwarding them.
    pub decoded: Result<Decoded, CheckError>,
}

/// The contents of a complete, intact archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Size of the tar stream inside.
    pub tar_bytes: u64,
    pub counts: TarCounts,
    /// Members kept for the owner/mode spot check (restores only).
    pub samples: Vec<Sample>,
}

/// Why a pass failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("reading the archive failed: {0}")]
    Read(String),
    #[error("reading the archive stalled: no data for {}s", .0.as_secs())]
    Stalled(Duration),
    #[error("{0}")]
    Gzip(#[from] GunzipError),
    #[error("the tar stream inside is damaged: {0}")]
    Tar(#[from] TarError),
    #[error("{0}")]
    Unsafe(#[from] Refusal),
    /// The receiver of the forwarded stream went away (the restore's writer failed).
    #[error("the restore stream stopped")]
    ForwardClosed,
    #[error("a check worker failed: {0}")]
    Worker(String),
    #[error("cancelled")]
    Cancelled,
}

/// Counters of a running pass, readable while it runs.
#[derive(Debug, Default)]
pub struct PassProgress {
    /// Compressed bytes read.
    pub archive_bytes: AtomicU64,
    /// Tar bytes decoded (and, when forwarding, checked).
    pub tar_bytes: AtomicU64,
    /// File content bytes seen.
    pub file_bytes: AtomicU64,
    /// Regular files seen.
    pub files: AtomicU64,
}

impl PassProgress {
    fn set(&self, counts: &TarCounts) {
        self.tar_bytes.store(counts.stream_bytes, Ordering::Relaxed);
        self.file_bytes.store(counts.file_bytes, Ordering::Relaxed);
        self.files.store(counts.regular_files, Ordering::Relaxed);
    }
}

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassConfig {
    /// Apply the pre-scan's safety rules to every member (`None`: integrity only).
    pub rules: Option<Rules>,
    pub stall_timeout: Duration,
    /// Least time between two calls of the progress callback.
    pub progress_interval: Duration,
    /// Keep reading and hashing after a decoding problem (verification reports the digest too);
    /// otherwise the pass stops at the first problem.
    pub hash_to_end: bool,
}

/// Decoding, tar checking and the safety rules, fed compressed chunks on a blocking thread.
struct Decoder {
    gunzip: Gunzip,
    tar: TarChecker,
    prescan: Option<Prescan>,
}

impl Decoder {
    fn new(rules: Option<Rules>) -> Self {
        Self {
            gunzip: Gunzip::new(),
            tar: if rules.is_some() {
                TarChecker::reporting()
            } else {
                TarChecker::new()
            },
            prescan: rules.map(Prescan::new),
        }
    }

    /// Decodes `chunk`; each decoded piece is checked, then handed to `forward`.
    fn feed(
        &mut self,
        chunk: &[u8],
        forward: &mut impl FnMut(&[u8]) -> Result<(), CheckError>,
    ) -> Result<(), CheckError> {
        let Self {
            gunzip,
            tar,
            prescan,
        } = self;
        gunzip.feed(chunk, |piece| {
            tar.feed(piece)?;
            if let Some(prescan) = prescan.as_mut() {
                for member in tar.take_members() {
                    prescan.check(&member)?;
                }
            }
            forward(piece)
        })
    }

    fn finish(self) -> Result<Decoded, CheckError> {
        let tar_bytes = self.gunzip.finish()?;
        let counts = self.tar.finish()?;
        let samples = self
            .prescan
            .map(|p| p.samples().to_vec())
            .unwrap_or_default();
        Ok(Decoded {
            tar_bytes,
            counts,
            samples,
        })
    }
}

/// Reads `reader` to its end once: sha256 of the bytes, the gzip member decoded and checked, the
/// tar stream walked to its end-of-archive blocks, and (with rules) every member pre-scanned. With
/// `forward`, each decoded piece is sent there once checked. `on_progress` is called at most every
/// `progress_interval` while reading. Reading failures, stalls and cancellation are errors; what
/// decoding found is in [`PassOutcome::decoded`].
pub async fn pass<R>(
    mut reader: R,
    config: &PassConfig,
    forward: Option<mpsc::Sender<Bytes>>,
    cancel: &CancellationToken,
    progress: Arc<PassProgress>,
    mut on_progress: impl FnMut(&PassProgress),
) -> Result<PassOutcome, CheckError>
where
    R: AsyncRead + Unpin,
{
    let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(QUEUE);
    let (decode_tx, mut decode_rx) = mpsc::channel::<Bytes>(QUEUE);
    let hash_worker = tokio::task::spawn_blocking(move || {
        let mut sha = Sha256::new();
        while let Some(chunk) = hash_rx.blocking_recv() {
            sha.update(&chunk);
        }
        hex::encode(sha.finalize())
    });
    let rules = config.rules;
    let decode_progress = progress.clone();
    let decode_worker = tokio::task::spawn_blocking(move || {
        let mut decoder = Decoder::new(rules);
        let mut send = |piece: &[u8]| match &forward {
            Some(tx) => tx
                .blocking_send(Bytes::copy_from_slice(piece))
                .map_err(|_| CheckError::ForwardClosed),
            None => Ok(()),
        };
        while let Some(chunk) = decode_rx.blocking_recv() {
            decoder.feed(&chunk, &mut send)?;
            decode_progress.set(&decoder.tar.counts());
        }
        decoder.finish()
    });

    let mut archive_bytes = 0u64;
    let mut last_report = Instant::now();
    let mut decoding = true;
    let read_result: Result<(), CheckError> = async {
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let read = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(CheckError::Cancelled),
                read = tokio::time::timeout(config.stall_timeout, reader.read(&mut buf)) => read,
            };
            let n = match read {
                Err(_) => return Err(CheckError::Stalled(config.stall_timeout)),
                Ok(Err(err)) => return Err(CheckError::Read(err.to_string())),
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
            };
            buf.truncate(n);
            let chunk = Bytes::from(buf);
            archive_bytes += n as u64;
            progress
                .archive_bytes
                .store(archive_bytes, Ordering::Relaxed);
            // The decoder stops at its first problem (closing its queue); its error explains why.
            let sent = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(CheckError::Cancelled),
                sent = async {
                    let to_hash = hash_tx.send(chunk.clone()).await.is_ok();
                    if decoding {
                        decoding = decode_tx.send(chunk).await.is_ok();
                    }
                    to_hash
                } => sent,
            };
            if !sent {
                return Err(CheckError::Worker("the hashing worker stopped".to_owned()));
            }
            if !decoding && !config.hash_to_end {
                return Ok(());
            }
            if last_report.elapsed() >= config.progress_interval {
                last_report = Instant::now();
                on_progress(&progress);
            }
        }
    }
    .await;
    drop(hash_tx);
    drop(decode_tx);
    let decoded = decode_worker
        .await
        .map_err(|err| CheckError::Worker(err.to_string()));
    let sha256 = hash_worker
        .await
        .map_err(|err| CheckError::Worker(err.to_string()))?;
    // Cancellation and read failures come first: a decoder starved of input reports truncation.
    read_result?;
    let decoded = decoded?;
    on_progress(&progress);
    Ok(PassOutcome {
        sha256,
        archive_bytes,
        decoded,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn config(rules: Option<Rules>) -> PassConfig {
        PassConfig {
            rules,
            stall_timeout: Duration::from_secs(5),
            progress_interval: Duration::ZERO,
            hash_to_end: true,
        }
    }

    fn tar_of(dir: &std::path::Path) -> Vec<u8> {
        let out = std::process::Command::new("tar")
            .args(["-cf", "-", "-C"])
            .arg(dir)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn volume() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("sub/big"), big).unwrap();
        std::fs::write(dir.path().join("small"), b"hello").unwrap();
        std::os::unix::fs::symlink("sub/big", dir.path().join("link")).unwrap();
        dir
    }

    async fn run(
        archive: &[u8],
        rules: Option<Rules>,
        forward: Option<mpsc::Sender<Bytes>>,
    ) -> Result<Decoded, CheckError> {
        pass(
            archive,
            &config(rules),
            forward,
            &CancellationToken::new(),
            Arc::default(),
            |_| {},
        )
        .await?
        .decoded
    }

    #[tokio::test]
    async fn a_pass_hashes_decodes_and_counts() {
        let tar = tar_of(volume().path());
        let archive = gzip(&tar);
        let outcome = pass(
            &archive[..],
            &config(Some(Rules::default())),
            None,
            &CancellationToken::new(),
            Arc::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(outcome.sha256, hex::encode(Sha256::digest(&archive)));
        assert_eq!(outcome.archive_bytes, archive.len() as u64);
        let facts = outcome.decoded.unwrap();
        assert_eq!(facts.tar_bytes, tar.len() as u64);
        assert_eq!(facts.counts.regular_files, 2);
        assert_eq!(facts.counts.file_bytes, 2_000_005);
        assert_eq!(facts.counts.symlinks, 1);
        assert!(facts.samples.iter().any(|s| s.path == "./sub/big"));
    }

    #[tokio::test]
    async fn forwarding_delivers_exactly_the_checked_tar_stream() {
        let tar = tar_of(volume().path());
        let archive = gzip(&tar);
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let collect = tokio::spawn(async move {
            let mut out = Vec::new();
            while let Some(piece) = rx.recv().await {
                out.extend_from_slice(&piece);
            }
            out
        });
        run(&archive, Some(Rules::default()), Some(tx))
            .await
            .unwrap();
        assert_eq!(collect.await.unwrap(), tar);
    }

    #[tokio::test]
    async fn an_unsafe_member_stops_the_stream_before_its_header_is_forwarded() {
        let dir = volume();
        std::fs::write(dir.path().join("zz-suid"), b"x").unwrap();
        std::fs::set_permissions(
            dir.path().join("zz-suid"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        let tar = tar_of(dir.path());
        let archive = gzip(&tar);
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let err = run(&archive, Some(Rules::default()), Some(tx))
            .await
            .unwrap_err();
        let CheckError::Unsafe(refusal) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(refusal.path, "./zz-suid");
        let mut forwarded = 0u64;
        while let Ok(piece) = rx.try_recv() {
            forwarded += piece.len() as u64;
        }
        // Everything before the refused header may have gone out, never its header block.
        assert!(
            forwarded <= refusal.offset + 511,
            "{forwarded} > {}",
            refusal.offset
        );
        // Integrity only: the same archive passes.
        assert!(run(&archive, None, None).await.is_ok());
    }

    #[tokio::test]
    async fn damage_is_reported_by_the_layer_that_sees_it() {
        let tar = tar_of(volume().path());
        let archive = gzip(&tar);
        let mut truncated = archive.clone();
        truncated.truncate(archive.len() / 2);
        assert!(matches!(
            run(&truncated, None, None).await,
            Err(CheckError::Gzip(GunzipError::Truncated(_)))
        ));
        // A valid gzip of a truncated tar stream.
        let cut = gzip(&tar[..tar.len() / 2]);
        assert!(matches!(
            run(&cut, None, None).await,
            Err(CheckError::Tar(TarError::Truncated(_)))
        ));
        let mut appended = archive.clone();
        appended.extend_from_slice(b"junk");
        assert!(matches!(
            run(&appended, None, None).await,
            Err(CheckError::Gzip(GunzipError::Trailing { .. }))
        ));
        // Verification hashes every byte even after the decoder gave up.
        let mut corrupt = archive.clone();
        corrupt[archive.len() / 3] ^= 0xff;
        let outcome = pass(
            &corrupt[..],
            &config(None),
            None,
            &CancellationToken::new(),
            Arc::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert!(outcome.decoded.is_err());
        assert_eq!(outcome.sha256, hex::encode(Sha256::digest(&corrupt)));
        assert_eq!(outcome.archive_bytes, corrupt.len() as u64);
    }

    #[tokio::test]
    async fn a_silent_reader_stalls_and_cancel_stops() {
        let (_keep, reader) = tokio::io::duplex(64);
        let err = pass(
            reader,
            &PassConfig {
                stall_timeout: Duration::from_millis(200),
                ..config(None)
            },
            None,
            &CancellationToken::new(),
            Arc::default(),
            |_| {},
        )
        .await
        .map(|_| ())
        .unwrap_err();
        assert!(matches!(err, CheckError::Stalled(_)), "{err}");
        let (_keep, reader) = tokio::io::duplex(64);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = pass(reader, &config(None), None, &cancel, Arc::default(), |_| {})
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err, CheckError::Cancelled);
    }
}
