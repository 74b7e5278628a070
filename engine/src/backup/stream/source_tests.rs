//! Tests of `stream` in source mode: gzip from the helper is stored unchanged and checked by
//! decompressing it into the tar checker, with bounded memory.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;

fn source_config() -> StreamConfig {
    StreamConfig {
        compression: Compression::Source,
        gzip_level: 6,
        gzip_threads: 2,
        stall_timeout: Duration::from_secs(5),
        progress_interval: Duration::ZERO,
        drain_grace: Duration::from_secs(2),
    }
}

fn tar_of_source() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let big: Vec<u8> = (0..300_000u32).flat_map(u32::to_le_bytes).collect();
    std::fs::write(dir.path().join("sub/big"), &big).unwrap();
    std::fs::write(dir.path().join("small"), b"hello").unwrap();
    let out = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(dir.path())
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    (dir, out.stdout)
}

/// `program args` with `input` on stdin: its stdout.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{program} failed");
    out.stdout
}

fn gzip_of(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn stored(input: &[u8]) -> (Result<StreamedArchive, StreamError>, Vec<u8>) {
    let mut sink = Vec::new();
    let result = write_archive(
        input,
        &mut sink,
        "memory",
        &source_config(),
        &CancellationToken::new(),
        std::future::pending::<()>(),
        |_| {},
    )
    .await;
    (result, sink)
}

#[tokio::test]
async fn pigz_output_is_stored_unchanged_and_checked() {
    let (_dir, tar) = tar_of_source();
    let gz = pipe("pigz", &["-p", "2", "-6"], &tar);
    let mut reports = Vec::new();
    let mut sink = Vec::new();
    let archive = write_archive(
        &gz[..],
        &mut sink,
        "memory",
        &source_config(),
        &CancellationToken::new(),
        std::future::pending::<()>(),
        |p| reports.push(*p),
    )
    .await
    .unwrap();
    assert!(
        sink == gz,
        "the stored bytes are not the received gzip bytes"
    );
    assert_eq!(archive.archive_bytes, gz.len() as u64);
    assert_eq!(archive.sha256, hex::encode(Sha256::digest(&gz)));
    assert_eq!(archive.counts.regular_files, 2);
    assert_eq!(archive.counts.file_bytes, 1_200_005);
    assert_eq!(archive.counts.stream_bytes, tar.len() as u64);
    let last = reports.last().unwrap();
    assert_eq!(last.bytes_read, tar.len() as u64);
    assert_eq!(last.archive_bytes, gz.len() as u64);
    // gzip (one thread) as well.
    let gz = pipe("gzip", &["-1"], &tar);
    let (result, sink) = stored(&gz).await;
    assert_eq!(result.unwrap().counts.regular_files, 2);
    assert!(sink == gz);
}

#[tokio::test]
async fn a_flipped_byte_fails_the_stream() {
    let (_dir, tar) = tar_of_source();
    let gz = pipe("pigz", &["-6"], &tar);
    for at in [12, gz.len() / 3, gz.len() / 2, gz.len() - 7, gz.len() - 2] {
        let mut bad = gz.clone();
        bad[at] ^= 0x04;
        let (result, _) = stored(&bad).await;
        let err = result.expect_err(&format!("a flipped byte at {at} passed"));
        assert!(
            matches!(err, StreamError::Gzip(_) | StreamError::Tar(_)),
            "byte {at}: {err}"
        );
    }
}

#[tokio::test]
async fn a_truncated_or_empty_stream_fails() {
    let (_dir, tar) = tar_of_source();
    let gz = pipe("pigz", &["-6"], &tar);
    for end in [0, 5, gz.len() / 2, gz.len() - 4] {
        let (result, _) = stored(&gz[..end]).await;
        let err = result.expect_err(&format!("{end} bytes passed"));
        assert!(
            matches!(&err, StreamError::Gzip(m) if m.contains("truncated")),
            "{end} bytes: {err}"
        );
    }
    // A complete gzip member around an incomplete tar stream.
    let (result, _) = stored(&gzip_of(&tar[..tar.len() / 2])).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, StreamError::Tar(TarError::Truncated(_))),
        "{err}"
    );
    // Raw tar where gzip is expected.
    let (result, _) = stored(&tar).await;
    assert!(matches!(result, Err(StreamError::Gzip(_))));
}

#[tokio::test]
async fn a_second_member_or_trailing_bytes_are_refused() {
    let (_dir, tar) = tar_of_source();
    let half = tar.len() / 2;
    let mut two = gzip_of(&tar[..half]);
    two.extend(gzip_of(&tar[half..]));
    let (result, _) = stored(&two).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, StreamError::Gzip(m) if m.contains("one gzip member")),
        "{err}"
    );
    // Zeros after the member are refused too (pigz and gzip write none).
    let mut padded = gzip_of(&tar);
    padded.extend([0u8; 4096]);
    let (result, _) = stored(&padded).await;
    assert!(matches!(result, Err(StreamError::Gzip(_))), "{result:?}");
}

/// A one-file ustar archive of `size` bytes of a repeating 4 KiB pattern, gzip-compressed as it is
/// generated (the uncompressed stream is never held).
fn big_gzipped_tar(size: u64) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..6].copy_from_slice(b"./big\0");
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..265].copy_from_slice(b"ustar\x0000");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let pattern: Vec<u8> = (0..4096u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap())
        .collect();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(&header).unwrap();
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(4096)).unwrap();
        encoder.write_all(&pattern[..n]).unwrap();
        left -= n as u64;
    }
    let pad = usize::try_from((512 - size % 512) % 512).unwrap();
    encoder.write_all(&vec![0u8; pad + 1024]).unwrap();
    encoder.finish().unwrap()
}

/// Set in the child process of [`memory_stays_bounded_whatever_the_size`].
const MEMORY_CHILD: &str = "NKVM_TEST_STREAM_MEMORY_CHILD";
/// What the child prints: the growth of its peak RSS while streaming, in KiB.
const GROWTH_LINE: &str = "nkvm-stream-peak-growth-kib=";

/// The peak resident set size of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs in its own process (so that no other test's memory counts): streams 512 MiB of tar,
/// gzip-compressed, through a source-mode stream and prints how much its peak RSS grew.
#[tokio::test]
async fn memory_child() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        return;
    }
    let size = 512u64 << 20;
    let gz = big_gzipped_tar(size);
    let before = peak_rss_kib();
    let archive = write_archive(
        &gz[..],
        &mut tokio::io::sink(),
        "sink",
        &source_config(),
        &CancellationToken::new(),
        std::future::pending::<()>(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(archive.counts.file_bytes, size);
    assert_eq!(archive.archive_bytes, gz.len() as u64);
    println!("{GROWTH_LINE}{}", peak_rss_kib() - before);
}

#[test]
fn memory_stays_bounded_whatever_the_size() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backup::stream::source_tests::memory_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(MEMORY_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let growth: u64 = stdout
        .lines()
        .find_map(|l| l.split_once(GROWTH_LINE).map(|(_, n)| n.trim()))
        .unwrap_or_else(|| panic!("the child did not report: {stdout}"))
        .parse()
        .unwrap();
    // A read buffer (128 KiB), the decoder's output buffer (256 KiB) and inflate state: a stream
    // that kept what it decompressed would grow by 512 MiB.
    assert!(
        growth < 8 * 1024,
        "peak RSS grew by {growth} KiB for 512 MiB"
    );
}
