//! Block-parallel gzip (pigz style): one gzip member whose deflate stream is compressed in
//! fixed-size blocks on blocking worker threads and written in order, with bounded memory.
//!
//! The input is cut into blocks of [`PgzipConfig::block_size`] bytes. Each block is compressed as
//! raw deflate on its own worker ([`tokio::task::spawn_blocking`]), primed with the last 32 KiB of
//! the input before it as the deflate dictionary, so matches reach back across block boundaries as
//! in a single-threaded stream and the ratio stays that of plain gzip. Every block but the last
//! ends with a sync flush (an empty stored block: byte-aligned and not final), the last one with
//! the stream's end, so the concatenation is one valid deflate stream. A block that does not
//! compress (random or already compressed data: four 16 KiB samples spread over it each save less
//! than 1/64 at level 1) is written as stored deflate blocks instead, which are byte-aligned too:
//! deflate spends more time per byte on such data than on text, for no gain. Each worker also computes
//! its block's CRC32; the CRCs are combined in order into the trailer with the input size mod 2³².
//! The result is an ordinary single-member gzip file that `gzip`, `tar -z` and single-member
//! decoders (such as `flate2`'s `GzDecoder`) read to its end.
//!
//! The output depends only on the input, the level and the block size, not on the number of
//! workers or on how the input was split into writes. At most [`PgzipConfig::threads`] blocks are
//! being compressed at a time; when all workers are busy and the next block is full, writing waits
//! for the oldest block, so memory stays at about `2 × threads + 1` blocks whatever the input size.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use flate2::{Compress, CompressError, Compression, FlushCompress, Status};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Default uncompressed size of one block.
pub const DEFAULT_BLOCK_SIZE: usize = 1024 * 1024;
/// Deflate's window: the dictionary handed from one block to the next.
const DICT_SIZE: usize = 32 * 1024;
/// Windows of a block test-compressed to decide whether it is worth deflating, and their size.
const SAMPLES: usize = 4;
const SAMPLE: usize = 16 * 1024;

/// Workers used when none are configured: the machine's available parallelism (at least 1).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Settings of one encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgzipConfig {
    /// gzip level, 0 (stored) to 9 (smallest); higher values are taken as 9.
    pub level: u32,
    /// Blocks compressed at the same time (at least 1).
    pub threads: usize,
    /// Uncompressed bytes per block (at least 1).
    pub block_size: usize,
}

impl PgzipConfig {
    /// `level` (capped at 9) with `threads` workers (at least 1) and [`DEFAULT_BLOCK_SIZE`] blocks.
    pub fn new(level: u32, threads: usize) -> Self {
        Self {
            level: level.min(9),
            threads: threads.max(1),
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// Why compressing failed.
#[derive(Debug, thiserror::Error)]
pub enum PgzipError {
    #[error("deflate failed on block {block}: {source}")]
    Deflate {
        block: u64,
        #[source]
        source: CompressError,
    },
    #[error("deflate made no progress on block {block}")]
    NoProgress { block: u64 },
    /// The worker panicked or was cancelled (e.g. the runtime shut down).
    #[error("the compression worker of block {block} failed: {source}")]
    Worker {
        block: u64,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("writing compressed data failed: {0}")]
    Write(#[source] io::Error),
}

/// One block handed to a worker.
struct Job {
    index: u64,
    level: Compression,
    dict: Vec<u8>,
    input: Vec<u8>,
    output: Vec<u8>,
    last: bool,
}

/// A compressed block, with the buffers to reuse. Compressors are not reused: a reset zlib-rs
/// state is not the same as a fresh one (on the benchmark fixture, reset-and-reused compressors
/// made the archive depend on which worker had compressed which block), and the archive must
/// depend on the input only. A fresh state costs about 1 % more CPU than a reused one.
struct Done {
    /// Time the worker spent on the block.
    busy: Duration,
    output: Vec<u8>,
    crc: crc32fast::Hasher,
    input: Vec<u8>,
}

type Worker = fn(Job) -> Result<Done, PgzipError>;

/// Writes one gzip member to `W`; see the module documentation. Call [`Self::finish`] at the end:
/// dropping the encoder abandons the member (workers still running finish their block and their
/// result is dropped).
pub struct ParallelGzipEncoder<W> {
    sink: W,
    level: Compression,
    threads: usize,
    block_size: usize,
    worker: Worker,
    /// The block being filled.
    block: Vec<u8>,
    /// The last (up to) 32 KiB of the input before `block`.
    dict: Vec<u8>,
    in_flight: VecDeque<(u64, JoinHandle<Result<Done, PgzipError>>)>,
    next_index: u64,
    header_written: bool,
    crc: crc32fast::Hasher,
    total_in: u64,
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
    /// Worker time summed over the blocks written, and time spent waiting for workers: logged at
    /// the end to tell a compression-bound stream from one waiting for input.
    busy: Duration,
    waited: Duration,
}

impl<W: AsyncWrite + Unpin> ParallelGzipEncoder<W> {
    pub fn new(sink: W, config: PgzipConfig) -> Self {
        Self::with_worker(sink, config, deflate_block)
    }

    fn with_worker(sink: W, config: PgzipConfig, worker: Worker) -> Self {
        Self {
            sink,
            level: Compression::new(config.level.min(9)),
            threads: config.threads.max(1),
            block_size: config.block_size.max(1),
            worker,
            block: Vec::new(),
            dict: Vec::new(),
            in_flight: VecDeque::new(),
            next_index: 0,
            header_written: false,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
            busy: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }

    /// The sink (compressed bytes reach it in order, block by block).
    pub fn get_ref(&self) -> &W {
        &self.sink
    }

    /// Uncompressed bytes accepted so far.
    pub fn total_in(&self) -> u64 {
        self.total_in
    }

    /// Accepts `data`; hands every full block to a worker, waiting for the oldest block (and
    /// writing it to the sink) while all workers are busy.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), PgzipError> {
        while !data.is_empty() {
            if self.block.capacity() == 0 {
                self.block = self
                    .spare_inputs
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(self.block_size));
            }
            let take = (self.block_size - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            self.total_in += take as u64;
            data = &data[take..];
            if self.block.len() == self.block_size {
                self.submit(false).await?;
            }
        }
        Ok(())
    }

    /// Compresses what is left as the final block, writes every block and the trailer in order,
    /// flushes the sink and returns it.
    pub async fn finish(mut self) -> Result<W, PgzipError> {
        self.submit(true).await?;
        while !self.in_flight.is_empty() {
            self.write_oldest().await?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input size modulo 2^32 (RFC 1952): the truncating cast is the definition.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "ISIZE is the size modulo 2^32"
        )]
        let isize = self.total_in as u32;
        trailer[4..].copy_from_slice(&isize.to_le_bytes());
        self.sink
            .write_all(&trailer)
            .await
            .map_err(PgzipError::Write)?;
        self.sink.flush().await.map_err(PgzipError::Write)?;
        tracing::debug!(
            blocks = self.next_index,
            bytes_in = self.total_in,
            threads = self.threads,
            worker_secs = self.busy.as_secs_f64(),
            waited_secs = self.waited.as_secs_f64(),
            "gzip member finished"
        );
        Ok(self.sink)
    }

    /// Hands the current block to a worker (after waiting for a free one).
    async fn submit(&mut self, last: bool) -> Result<(), PgzipError> {
        while self.in_flight.len() >= self.threads {
            self.write_oldest().await?;
        }
        let input = mem::take(&mut self.block);
        // The next block's dictionary: the last 32 KiB of everything so far.
        let keep = DICT_SIZE.saturating_sub(input.len()).min(self.dict.len());
        let mut next_dict = Vec::with_capacity(DICT_SIZE);
        next_dict.extend_from_slice(&self.dict[self.dict.len() - keep..]);
        next_dict.extend_from_slice(&input[input.len().saturating_sub(DICT_SIZE)..]);
        let dict = mem::replace(&mut self.dict, next_dict);
        let job = Job {
            index: self.next_index,
            level: self.level,
            dict,
            input,
            output: self.spare_outputs.pop().unwrap_or_default(),
            last,
        };
        let worker = self.worker;
        let handle = tokio::task::spawn_blocking(move || worker(job));
        self.in_flight.push_back((self.next_index, handle));
        self.next_index += 1;
        Ok(())
    }

    /// Waits for the oldest block and writes it (after the header, the first time).
    async fn write_oldest(&mut self) -> Result<(), PgzipError> {
        let Some((block, handle)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let started = Instant::now();
        let done = handle
            .await
            .map_err(|source| PgzipError::Worker { block, source })??;
        self.waited += started.elapsed();
        self.busy += done.busy;
        if !self.header_written {
            self.sink
                .write_all(&header(self.level))
                .await
                .map_err(PgzipError::Write)?;
            self.header_written = true;
        }
        self.sink
            .write_all(&done.output)
            .await
            .map_err(PgzipError::Write)?;
        self.crc.combine(&done.crc);
        let mut input = done.input;
        input.clear();
        self.spare_inputs.push(input);
        self.spare_outputs.push(done.output);
        Ok(())
    }
}

/// The 10-byte gzip header: no name, no time, OS unknown; XFL says "best" or "fastest" as gzip
/// does.
fn header(level: Compression) -> [u8; 10] {
    let xfl = match level.level() {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]
}

/// Compresses one block as raw deflate (the worker's job): stored when it does not compress,
/// else deflated with the previous 32 KiB as dictionary.
fn deflate_block(job: Job) -> Result<Done, PgzipError> {
    let started = Instant::now();
    let Job {
        index,
        level,
        dict,
        input,
        mut output,
        last,
    } = job;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&input);
    output.clear();
    // Enough for stored blocks and for the worst case of deflate, so one call normally does it.
    output.reserve(input.len() + input.len() / 64 + 1024);
    let incompressible = level.level() > 0
        && looks_incompressible(&input, &mut output).map_err(|source| PgzipError::Deflate {
            block: index,
            source,
        })?;
    if incompressible {
        write_stored(&input, last, &mut output);
    } else {
        deflate_into(index, level, &dict, &input, last, &mut output)?;
    }
    Ok(Done {
        busy: started.elapsed(),
        output,
        crc,
        input,
    })
}

/// Whether `input` is not worth deflating (random or already compressed data): each of
/// [`SAMPLES`] windows of [`SAMPLE`] bytes spread over it saves less than 1/64 at level 1. Deflate
/// spends more time per byte on such data than on text, for nothing. Blocks smaller than the
/// samples are never judged. `scratch` is left empty.
fn looks_incompressible(input: &[u8], scratch: &mut Vec<u8>) -> Result<bool, CompressError> {
    if input.len() < SAMPLE * SAMPLES {
        return Ok(false);
    }
    scratch.reserve(SAMPLE + SAMPLE / 8 + 1024);
    // One compressor per block, reset between the samples: its state depends on this block only.
    let mut sampler = Compress::new(Compression::fast(), false);
    let step = (input.len() - SAMPLE) / (SAMPLES - 1);
    for i in 0..SAMPLES {
        let sample = &input[i * step..i * step + SAMPLE];
        sampler.reset();
        scratch.clear();
        let status = sampler.compress_vec(sample, scratch, FlushCompress::Finish)?;
        // With room for the worst case the call ends the stream; if not, it did not compress.
        if status == Status::StreamEnd && scratch.len() < sample.len() - sample.len() / 64 {
            scratch.clear();
            return Ok(false);
        }
    }
    scratch.clear();
    Ok(true)
}

/// Appends `input` as stored deflate blocks (at most 65,535 bytes each), the very last one final
/// when `last`. The output starts and ends on a byte boundary, as after a sync flush.
fn write_stored(input: &[u8], last: bool, output: &mut Vec<u8>) {
    let mut chunks = input.chunks(usize::from(u16::MAX)).peekable();
    while let Some(chunk) = chunks.next() {
        let is_final = last && chunks.peek().is_none();
        // BFINAL in bit 0, BTYPE 00 (stored), then padding to the byte boundary.
        output.push(u8::from(is_final));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        output.extend_from_slice(&len.to_le_bytes());
        output.extend_from_slice(&(!len).to_le_bytes());
        output.extend_from_slice(chunk);
    }
}

/// Deflates `input` into `output` with a fresh compressor primed with `dict`; ends with a sync
/// flush, or with the end of the stream when `last`.
fn deflate_into(
    index: u64,
    level: Compression,
    dict: &[u8],
    input: &[u8],
    last: bool,
    output: &mut Vec<u8>,
) -> Result<(), PgzipError> {
    let deflate_err = |source| PgzipError::Deflate {
        block: index,
        source,
    };
    let mut compress = Compress::new(level, false);
    if !dict.is_empty() {
        compress.set_dictionary(dict).map_err(deflate_err)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let (in_before, out_before) = (compress.total_in(), compress.total_out());
        let consumed = usize::try_from(in_before)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let status = compress
            .compress_vec(&input[consumed..], output, flush)
            .map_err(deflate_err)?;
        let all_in = usize::try_from(compress.total_in()).is_ok_and(|n| n == input.len());
        let done = if last {
            status == Status::StreamEnd
        } else {
            // A flush is complete when it returns with output space left.
            all_in && output.len() < output.capacity()
        };
        if done {
            return Ok(());
        }
        let progressed = (compress.total_in(), compress.total_out()) != (in_before, out_before);
        if !progressed && output.len() < output.capacity() {
            return Err(PgzipError::NoProgress { block: index });
        }
        output.reserve(64 * 1024);
    }
}

#[cfg(test)]
mod tests;
