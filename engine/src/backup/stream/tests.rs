//! Tests of `stream`.

use super::*;
use std::process::Command;
use tokio::io::AsyncWriteExt as _;

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

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn writes_a_verified_archive_that_system_tar_extracts() {
    let src = source();
    let stream = tar_of(src.path());
    let out = tempfile::tempdir().unwrap();
    let final_path = out.path().join("a.tar.gz");
    let mut reports = Vec::new();
    let partial = write_partial(
        &stream[..],
        &final_path,
        &config(),
        &CancellationToken::new(),
        std::future::pending(),
        |p| reports.push(*p),
    )
    .await
    .unwrap();
    assert!(partial.partial_path().exists());
    assert_eq!(partial.counts.regular_files, 2);
    assert_eq!(partial.counts.file_bytes, 1_200_005);
    let (sha, bytes) = (partial.sha256.clone(), partial.archive_bytes);
    let committed = partial.commit().await.unwrap();
    assert_eq!(committed, final_path);
    assert!(!partial_path_of(&final_path).exists());
    assert_eq!(std::fs::metadata(&final_path).unwrap().len(), bytes);
    assert_eq!(sha256_file(&final_path), sha);
    let last = reports.last().unwrap();
    assert_eq!(last.bytes_read, stream.len() as u64);
    assert_eq!(last.archive_bytes, bytes);
    assert_eq!(last.files, 2);

    let extracted = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&final_path)
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
    let out = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for level in [0, 9] {
        let cfg = StreamConfig {
            gzip_level: level,
            ..config()
        };
        let path = out.path().join(format!("{level}.tar.gz"));
        let partial = write_partial(
            &stream[..],
            &path,
            &cfg,
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap();
        sizes.push(partial.archive_bytes);
    }
    assert!(sizes[0] > stream.len() as u64, "level 0 stores: {sizes:?}");
    assert!(sizes[1] < sizes[0] / 2, "level 9 compresses: {sizes:?}");
}

#[tokio::test]
async fn truncated_stream_fails_and_removes_the_partial_file() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("t.tar.gz");
    let err = write_partial(
        &stream[..700_000],
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StreamError::Tar(TarError::Truncated(_))),
        "{err}"
    );
    assert!(err.to_string().starts_with("truncated: "), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn garbage_fails_fast() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("g.tar.gz");
    let garbage = vec![0x41u8; 100_000];
    let err = write_partial(
        &garbage[..],
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StreamError::Tar(TarError::BadHeader { .. })));
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_source_stalls() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("s.tar.gz");
    let (_writer, reader) = tokio::io::duplex(1024);
    let cfg = StreamConfig {
        stall_timeout: Duration::from_mins(2),
        ..config()
    };
    let err = write_partial(
        reader,
        &path,
        &cfg,
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "stalled: no data for 120s");
    assert!(!partial_path_of(&path).exists());
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_moving_source_never_stalls() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("slow.tar.gz");
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let feeder = tokio::spawn(async move {
        for piece in stream.chunks(100_000) {
            // Far longer in total than the stall timeout, but never silent that long.
            tokio::time::sleep(Duration::from_secs(3)).await;
            writer.write_all(piece).await.unwrap();
        }
    });
    let partial = write_partial(
        reader,
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap();
    feeder.await.unwrap();
    assert_eq!(partial.counts.regular_files, 2);
}

#[tokio::test(start_paused = true)]
async fn stops_at_the_end_of_archive_without_waiting_for_eof() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("eoa.tar.gz");
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let feeder = tokio::spawn(async move {
        writer.write_all(&stream).await.unwrap();
        // The producer stays alive (as the helper's shell does until told to exit).
        tokio::time::sleep(Duration::from_hours(1)).await;
        drop(writer);
    });
    let partial = write_partial(
        reader,
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(partial.counts.regular_files, 2);
    feeder.abort();
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_exited_mid_archive_ends_the_stream_as_truncated() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("x.tar.gz");
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let feeder = tokio::spawn(async move {
        writer.write_all(&stream[..300_000]).await.unwrap();
        tokio::time::sleep(Duration::from_hours(1)).await;
        drop(writer);
    });
    let exited = tokio::time::sleep(Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    let err = write_partial(
        reader,
        &path,
        &config(),
        &CancellationToken::new(),
        exited,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, StreamError::Tar(TarError::Truncated(_))),
        "{err}"
    );
    // Ended by the drain grace, not by the 5 s stall timeout.
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!partial_path_of(&path).exists());
    feeder.abort();
}

#[tokio::test]
async fn compression_failures_name_their_step() {
    let path = Path::new("/d/a.tar.gz.partial");
    let panicked = tokio::task::spawn_blocking(|| panic!("boom"))
        .await
        .unwrap_err();
    let err = StreamError::compress(
        path,
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
    let err = StreamError::compress(path, PgzipError::Write(io::Error::other("full")));
    assert_eq!(err.to_string(), "writing /d/a.tar.gz.partial failed: full");
}

#[tokio::test]
async fn cancel_stops_and_cleans_up() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("c.tar.gz");
    let (_writer, reader) = tokio::io::duplex(1024);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = write_partial(reader, &path, &config(), &cancel, never(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Cancelled));
    assert!(!partial_path_of(&path).exists());
}

#[tokio::test]
async fn dropping_an_uncommitted_archive_removes_it() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("d.tar.gz");
    let partial = write_partial(
        &stream[..],
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap();
    let partial_path = partial.partial_path().to_owned();
    assert!(partial_path.exists());
    drop(partial);
    assert!(!partial_path.exists());
}

#[tokio::test]
async fn commit_refuses_to_replace_an_archive() {
    let stream = tar_of(source().path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("e.tar.gz");
    std::fs::write(&path, b"existing").unwrap();
    let partial = write_partial(
        &stream[..],
        &path,
        &config(),
        &CancellationToken::new(),
        never(),
        |_| {},
    )
    .await
    .unwrap();
    let err = partial.commit().await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"existing");
    assert!(!partial_path_of(&path).exists());
}
