//! Tests of `pgzip`.

use super::*;
use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};

/// The size of the reads `write_partial` hands over.
const READ_SIZE: usize = 128 * 1024;

/// Deterministic pseudo-random bytes (xorshift64*).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Log-like text: repetitive, but not trivially so.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "2026-11-29T01:{:02}:{:02}Z level=info request_id={:08x} path=/api/v1/items/{} took={}ms\n",
            (i / 60) % 60,
            i % 60,
            i.wrapping_mul(2_654_435_761) % 0xffff_ffff,
            i % 977,
            i % 13
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn encode(data: &[u8], config: PgzipConfig, write_size: usize) -> Vec<u8> {
    let mut encoder = ParallelGzipEncoder::new(Vec::new(), config);
    for piece in data.chunks(write_size.max(1)) {
        encoder.write_all(piece).await.unwrap();
    }
    assert_eq!(encoder.total_in(), data.len() as u64);
    encoder.finish().await.unwrap()
}

fn config(level: u32, threads: usize, block_size: usize) -> PgzipConfig {
    PgzipConfig {
        block_size,
        ..PgzipConfig::new(level, threads)
    }
}

/// Runs the system `gzip` with `args`, `input` on stdin.
fn system_gzip(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

/// Decodes `gz` as exactly one gzip member with nothing after it.
fn single_member(gz: &[u8]) -> Vec<u8> {
    let mut decoder = flate2::read::GzDecoder::new(gz);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).unwrap();
    assert!(decoder.into_inner().is_empty(), "bytes after the member");
    out
}

/// Every decoder must return `data` exactly, and `gzip -t` must accept the CRC and size.
fn assert_round_trip(data: &[u8], gz: &[u8]) {
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    let tested = system_gzip(&["-t"], gz);
    assert!(
        tested.status.success(),
        "gzip -t: {}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let decoded = system_gzip(&["-dc"], gz);
    assert!(decoded.status.success());
    assert!(decoded.stdout == data, "gzip -dc returned other bytes");
    assert!(single_member(gz) == data, "GzDecoder returned other bytes");
    let crc = crc32fast::hash(data);
    let n = gz.len();
    assert_eq!(gz[n - 8..n - 4], crc.to_le_bytes());
    assert_eq!(
        gz[n - 4..],
        u32::try_from(data.len()).unwrap().to_le_bytes()
    );
}

#[tokio::test]
async fn sizes_round_trip_through_gzip_and_a_single_member_decoder() {
    let block = 64 * 1024;
    let mut mixed = text(3 * block);
    mixed.extend(random(2 * block + 17, 7));
    mixed.extend(text(block / 3));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", b"x".to_vec()),
        ("exactly one block", text(block)),
        ("one block and one byte", text(block + 1)),
        ("many blocks and a remainder", mixed),
        ("incompressible", random(5 * block + 3, 42)),
        ("highly compressible", vec![0u8; 7 * block + 5]),
    ];
    for (name, data) in &cases {
        for write_size in [1000, 100_000] {
            let gz = encode(data, config(6, 3, block), write_size).await;
            assert_round_trip(data, &gz);
            println!("{name}: {} -> {} bytes", data.len(), gz.len());
        }
    }
}

#[tokio::test]
async fn the_default_block_size_round_trips() {
    let mut data = text(DEFAULT_BLOCK_SIZE * 2);
    data.extend(random(DEFAULT_BLOCK_SIZE / 2, 3));
    let gz = encode(&data, PgzipConfig::new(6, 2), 128 * 1024).await;
    assert_round_trip(&data, &gz);
}

#[tokio::test]
async fn every_level_round_trips_and_levels_differ() {
    let block = 32 * 1024;
    let mut data = text(5 * block);
    data.extend(random(block, 9));
    let mut sizes = Vec::new();
    for level in 0..=9 {
        let gz = encode(&data, config(level, 2, block), 10_000).await;
        assert_round_trip(&data, &gz);
        sizes.push(gz.len());
    }
    assert!(sizes[0] > data.len(), "level 0 stores: {sizes:?}");
    assert!(sizes[1] < data.len() / 2, "level 1 compresses: {sizes:?}");
    assert!(sizes[9] < sizes[1], "level 9 beats level 1: {sizes:?}");
    // XFL as gzip writes it.
    assert_eq!(header(Compression::new(9))[8], 2);
    assert_eq!(header(Compression::new(1))[8], 4);
    assert_eq!(header(Compression::new(6))[8], 0);
}

#[tokio::test]
async fn output_does_not_depend_on_workers_or_write_sizes() {
    let block = 16 * 1024;
    let mut data = text(20 * block + 123);
    data.extend(random(3 * block, 5));
    let one = encode(&data, config(6, 1, block), 4096).await;
    let four = encode(&data, config(6, 4, block), 50_000).await;
    let four_again = encode(&data, config(6, 4, block), 1).await;
    assert!(one == four, "1 and 4 workers differ");
    assert!(four == four_again, "write sizes change the output");
    assert_round_trip(&data, &one);
}

/// Like a tar stream of many small files: 512-byte headers, then log lines with varied fields
/// drawn from a pool, or random bytes, 256 B to 12 KiB each, padded to 512 bytes.
fn small_files(len: usize, seed: u64) -> Vec<u8> {
    let r = random(64 * 1024, seed);
    let word = |i: usize| {
        let at = (i * 8) % (r.len() - 8);
        u64::from_le_bytes(r[at..at + 8].try_into().unwrap())
    };
    let levels = ["INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let paths = ["/api/v1/items", "/api/v1/orders", "/healthz", "/login"];
    let pool: Vec<Vec<u8>> = (0..4000)
        .map(|i| {
            let w = word(i);
            format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z {} [w-{}] req={:016x} path={}/{} dur={}ms\n",
                1 + w % 28,
                (w >> 5) % 24,
                (w >> 10) % 60,
                (w >> 16) % 60,
                levels[(w >> 22) as usize % levels.len()],
                (w >> 25) % 64,
                word(i + 7000),
                paths[(w >> 31) as usize % paths.len()],
                (w >> 33) % 99_999,
                (w >> 53) % 3000
            )
            .into_bytes()
        })
        .collect();
    let mut next = seed;
    let mut step = || {
        next = next
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(next >> 33).unwrap()
    };
    let mut out = Vec::with_capacity(len + 16 * 1024);
    let mut n = 0usize;
    while out.len() < len {
        let size = 256 + step() % (12 * 1024 - 256);
        let mut header = format!("./small/d{:03}/f{n:05}.txt\0{size:011o}", n % 300);
        header.push_str(&"\0".repeat(512 - header.len()));
        out.extend_from_slice(header.as_bytes());
        let start = out.len();
        if n % 3 == 2 {
            out.extend(random(size, step() as u64));
        } else {
            while out.len() - start < size {
                out.extend_from_slice(&pool[step() % pool.len()]);
            }
            out.truncate(start + size);
        }
        out.resize(out.len().next_multiple_of(512), 0);
        n += 1;
    }
    out.truncate(len);
    out
}

/// Full-size blocks of tar-like data give the same bytes with 1 and 3 workers. (Reusing reset
/// compressors broke this on the benchmark fixture, though not reproducibly on this data: the
/// guard against that is that every block gets a fresh compressor, see [`Done`].)
#[tokio::test]
async fn output_does_not_depend_on_workers_with_full_blocks() {
    let data = small_files(12 * DEFAULT_BLOCK_SIZE, 77);
    let one = encode(&data, PgzipConfig::new(6, 1), READ_SIZE).await;
    let three = encode(&data, PgzipConfig::new(6, 3), READ_SIZE).await;
    assert!(one == three, "1 and 3 workers differ");
    assert_round_trip(&data, &one);
}

#[tokio::test]
async fn the_dictionary_carries_matches_across_blocks() {
    // 16 KiB of random bytes repeated: incompressible within any 4 KiB block on its own, almost
    // free with the previous 32 KiB as dictionary, as in a single deflate stream.
    let pattern = random(16 * 1024, 1);
    let data: Vec<u8> = pattern.iter().copied().cycle().take(640 * 1024).collect();
    let parallel = encode(&data, config(6, 2, 4 * 1024), 4096).await;
    assert_round_trip(&data, &parallel);
    let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
    single.write_all(&data).unwrap();
    let single = single.finish().unwrap();
    // The first pattern is stored as is; then a few bytes per block (matches + sync marker).
    let allowed = single.len() + 64 * (data.len() / 4096);
    assert!(
        parallel.len() <= allowed,
        "parallel {} vs single {}",
        parallel.len(),
        single.len()
    );
    // Without the dictionary every block would be stored: about the input size.
    assert!(parallel.len() < data.len() / 10, "{}", parallel.len());
}

#[tokio::test]
async fn incompressible_blocks_are_stored_and_mixed_ones_deflated() {
    let data = random(3 * DEFAULT_BLOCK_SIZE, 21);
    let gz = encode(&data, PgzipConfig::new(6, 2), 128 * 1024).await;
    assert_round_trip(&data, &gz);
    // Header, three blocks of 16 full stored blocks + 1 of 16 bytes (5 bytes of framing each),
    // the empty final block deflated (2 bytes), trailer.
    let stored = DEFAULT_BLOCK_SIZE + 5 * DEFAULT_BLOCK_SIZE.div_ceil(65_535);
    assert_eq!(gz.len(), 10 + 3 * stored + 2 + 8);

    // Text in the first sample, random bytes in the others: deflated.
    let mut mixed = text(DEFAULT_BLOCK_SIZE / 4);
    mixed.extend(random(DEFAULT_BLOCK_SIZE * 3 / 4, 22));
    let gz = encode(&mixed, PgzipConfig::new(6, 1), 128 * 1024).await;
    assert_round_trip(&mixed, &gz);
    let random_part = DEFAULT_BLOCK_SIZE * 3 / 4;
    assert!(
        gz.len() < random_part + DEFAULT_BLOCK_SIZE / 16,
        "text not compressed: {}",
        gz.len()
    );
}

#[tokio::test]
async fn the_sink_receives_blocks_while_writing_and_memory_stays_bounded() {
    let block = 8 * 1024;
    let data = random(200 * block, 11);
    let mut encoder = ParallelGzipEncoder::new(Vec::new(), config(1, 2, block));
    let mut most_in_flight = 0;
    for piece in data.chunks(block) {
        encoder.write_all(piece).await.unwrap();
        most_in_flight = most_in_flight.max(encoder.in_flight.len());
    }
    assert!(most_in_flight <= 2, "{most_in_flight} blocks in flight");
    // All but the blocks still in flight (and the one being filled) are written already.
    assert!(
        encoder.get_ref().len() > 190 * block,
        "{}",
        encoder.get_ref().len()
    );
    let gz = encoder.finish().await.unwrap();
    assert_round_trip(&data, &gz);
}

fn panicking_worker(job: Job) -> Result<Done, PgzipError> {
    assert!(job.index != 1, "injected failure in block 1");
    deflate_block(job)
}

#[tokio::test]
async fn a_worker_panic_is_an_error_not_a_hang() {
    let data = text(64 * 1024);
    let mut encoder =
        ParallelGzipEncoder::with_worker(Vec::new(), config(6, 2, 4096), panicking_worker);
    let result = async {
        encoder.write_all(&data).await?;
        encoder.finish().await
    };
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), result)
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(err, PgzipError::Worker { block: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the compression worker of block 1 failed: "),
        "{err}"
    );
}

/// A sink that refuses every write.
struct Broken;

impl AsyncWrite for Broken {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Ready(Err(io::Error::other("disk on fire")))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_sink_is_a_write_error() {
    let encoder = ParallelGzipEncoder::new(Broken, PgzipConfig::new(6, 1));
    let err = encoder.finish().await.err().unwrap();
    assert!(matches!(err, PgzipError::Write(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "writing compressed data failed: disk on fire"
    );
}

#[test]
fn config_clamps_level_threads_and_defaults() {
    let config = PgzipConfig::new(12, 0);
    assert_eq!((config.level, config.threads), (9, 1));
    assert_eq!(config.block_size, DEFAULT_BLOCK_SIZE);
    assert!(default_threads() >= 1);
}
