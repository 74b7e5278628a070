//! Tests of `stream`.

use super::*;
use std::process::Command;

fn config() -> StreamConfig {
    StreamConfig {
        compression: Compression::Server,
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
        let (result, _) = archive_of(&stream[..], &cfg, &CancellationToken::new(), never()).await;
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
    let (result, _) = archive_of(&garbage[..], &config(), &CancellationToken::new(), never()).await;
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
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
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
