//! A streaming gzip decoder for one archive: parses the RFC 1952 header, inflates the deflate
//! stream, and checks the trailer (CRC32 of the output and its size modulo 2^32, `ISIZE`) as a
//! conforming decoder does. Deliberately strict about what follows: nkvm writes archives of exactly
//! one gzip member, so a second member, appended garbage or trailing zeros are errors ("data after
//! the end of the gzip stream"), never silently ignored. Pure (no I/O): input is fed in chunks of
//! any size, output goes to a callback; memory is one output buffer and the inflate state.

use flate2::{Decompress, FlushDecompress, Status};

/// Output buffer of one inflate call.
const OUT_CHUNK: usize = 256 * 1024;

/// Why a gzip stream is not a complete, intact single member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GunzipError {
    #[error("not a gzip file (bad magic bytes at the start)")]
    Magic,
    #[error("unsupported gzip header: {0}")]
    Header(String),
    #[error("the deflate data is corrupt at compressed byte {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    #[error(
        "gzip CRC32 mismatch: the trailer says {stored:08x}, the data gives {computed:08x} (the \
         archive is corrupt or was altered)"
    )]
    Crc { stored: u32, computed: u32 },
    #[error(
        "gzip size mismatch: the trailer says {stored} bytes (mod 2^32), the data has {computed} \
         (the archive is corrupt or was altered)"
    )]
    Size { stored: u32, computed: u64 },
    #[error(
        "data after the end of the gzip stream at byte {offset} (a second gzip member or appended \
         bytes): nkvm archives are one gzip member, so the file was altered"
    )]
    Trailing { offset: u64 },
    #[error("truncated: the gzip stream ended {0}")]
    Truncated(&'static str),
}

#[derive(Debug)]
enum State {
    /// Collecting the fixed 10-byte header, then its optional fields.
    Header(Vec<u8>),
    Deflate,
    /// Collecting the 8-byte trailer.
    Trailer(Vec<u8>),
    Done,
}

/// Decodes one gzip member fed in chunks; see the module documentation.
pub struct Gunzip {
    state: State,
    inflate: Decompress,
    crc: crc32fast::Hasher,
    /// Decompressed bytes so far.
    out_total: u64,
    /// Compressed bytes consumed so far.
    in_total: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzip")
            .field("state", &self.state)
            .field("in_total", &self.in_total)
            .field("out_total", &self.out_total)
            .finish_non_exhaustive()
    }
}

impl Default for Gunzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gunzip {
    pub fn new() -> Self {
        Self {
            state: State::Header(Vec::with_capacity(16)),
            inflate: Decompress::new(false),
            crc: crc32fast::Hasher::new(),
            out_total: 0,
            in_total: 0,
            buf: vec![0; OUT_CHUNK],
        }
    }

    /// Decompressed bytes so far.
    pub fn output_bytes(&self) -> u64 {
        self.out_total
    }

    /// Whether the member's trailer was read and checked.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feeds the next compressed bytes; every piece of output goes to `sink` in order. An error of
    /// the sink stops decoding and is returned as it is.
    pub fn feed<E: From<GunzipError>>(
        &mut self,
        mut input: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !input.is_empty() {
            match &mut self.state {
                State::Header(header) => {
                    let used = header_bytes(header, input)?;
                    self.in_total += used as u64;
                    input = &input[used..];
                    if let Some(complete) = header_complete(header)? {
                        debug_assert_eq!(complete, header.len());
                        self.state = State::Deflate;
                    }
                }
                State::Deflate => {
                    let before_in = self.inflate.total_in();
                    let before_out = self.inflate.total_out();
                    let status = self
                        .inflate
                        .decompress(input, &mut self.buf, FlushDecompress::None)
                        .map_err(|err| GunzipError::Corrupt {
                            offset: self.in_total,
                            message: err.to_string(),
                        })?;
                    let used =
                        usize::try_from(self.inflate.total_in() - before_in).unwrap_or(input.len());
                    let produced = usize::try_from(self.inflate.total_out() - before_out)
                        .unwrap_or(0)
                        .min(self.buf.len());
                    self.in_total += used as u64;
                    input = &input[used..];
                    if produced > 0 {
                        let out = &self.buf[..produced];
                        self.crc.update(out);
                        self.out_total += produced as u64;
                        sink(out)?;
                    }
                    if status == Status::StreamEnd {
                        self.state = State::Trailer(Vec::with_capacity(8));
                    } else if used == 0 && produced == 0 {
                        return Err(GunzipError::Corrupt {
                            offset: self.in_total,
                            message: "the decoder made no progress".to_owned(),
                        }
                        .into());
                    }
                }
                State::Trailer(trailer) => {
                    let take = (8 - trailer.len()).min(input.len());
                    trailer.extend_from_slice(&input[..take]);
                    self.in_total += take as u64;
                    input = &input[take..];
                    if trailer.len() == 8 {
                        let stored_crc =
                            u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
                        let stored_size =
                            u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                        let computed = self.crc.clone().finalize();
                        if stored_crc != computed {
                            return Err(GunzipError::Crc {
                                stored: stored_crc,
                                computed,
                            }
                            .into());
                        }
                        // ISIZE is the size modulo 2^32: the truncation is the check.
                        #[allow(
                            clippy::cast_possible_truncation,
                            reason = "ISIZE is defined modulo 2^32"
                        )]
                        let low = self.out_total as u32;
                        if stored_size != low {
                            return Err(GunzipError::Size {
                                stored: stored_size,
                                computed: self.out_total,
                            }
                            .into());
                        }
                        self.state = State::Done;
                    }
                }
                State::Done => {
                    return Err(GunzipError::Trailing {
                        offset: self.in_total,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Ends the input: the member must be complete.
    pub fn finish(&self) -> Result<u64, GunzipError> {
        match &self.state {
            State::Done => Ok(self.out_total),
            State::Header(h) if h.is_empty() && self.in_total == 0 => Err(GunzipError::Truncated(
                "before its header (the file is empty)",
            )),
            State::Header(_) => Err(GunzipError::Truncated("inside its header")),
            State::Deflate => Err(GunzipError::Truncated("inside the compressed data")),
            State::Trailer(_) => Err(GunzipError::Truncated("inside its trailer")),
        }
    }
}

const FTEXT_FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;
/// Longest optional header field accepted (name, comment, extra).
const MAX_FIELD: usize = 64 * 1024;

/// Takes input bytes into `header` until the header may be complete; returns how many were used.
/// Takes one byte at a time past the fixed part, since the optional fields' lengths are only known
/// as they arrive (headers are tiny).
fn header_bytes(header: &mut Vec<u8>, input: &[u8]) -> Result<usize, GunzipError> {
    let mut used = 0;
    while used < input.len() {
        if header_complete(header)?.is_some() {
            break;
        }
        header.push(input[used]);
        used += 1;
        if header.len() > 10 + 3 * MAX_FIELD + 2 {
            return Err(GunzipError::Header(
                "its optional fields are too long".to_owned(),
            ));
        }
    }
    Ok(used)
}

/// The header's length once `header` holds all of it; `None` while more bytes are needed.
fn header_complete(header: &[u8]) -> Result<Option<usize>, GunzipError> {
    if header.len() >= 2 && (header[0] != 0x1f || header[1] != 0x8b) {
        return Err(GunzipError::Magic);
    }
    if header.len() >= 3 && header[2] != 8 {
        return Err(GunzipError::Header(format!(
            "compression method {} (only deflate, 8, exists)",
            header[2]
        )));
    }
    if header.len() < 10 {
        return Ok(None);
    }
    let flags = header[3];
    if flags & RESERVED != 0 {
        return Err(GunzipError::Header(format!(
            "reserved flag bits set ({flags:#04x})"
        )));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        if header.len() < at + 2 {
            return Ok(None);
        }
        at += 2 + usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
        if header.len() < at {
            return Ok(None);
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match header[at.min(header.len())..].iter().position(|b| *b == 0) {
                Some(nul) => at += nul + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FTEXT_FHCRC != 0 {
        at += 2;
    }
    Ok((header.len() >= at).then_some(at))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn decode(stream: &[u8], chunk: usize) -> Result<Vec<u8>, GunzipError> {
        let mut gunzip = Gunzip::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            gunzip.feed(piece, |o| {
                out.extend_from_slice(o);
                Ok::<(), GunzipError>(())
            })?;
        }
        gunzip.finish()?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        (0..700_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn decodes_in_any_chunking() {
        let data = sample();
        let stream = gzip(&data);
        for chunk in [1, 7, 512, 65_536, stream.len()] {
            assert_eq!(decode(&stream, chunk).unwrap(), data, "chunk {chunk}");
        }
    }

    #[test]
    fn decodes_system_gzip_with_a_file_name_and_pigz_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("name.bin");
        std::fs::write(&path, sample()).unwrap();
        // `gzip -c FILE` stores the name (FNAME).
        let out = std::process::Command::new("gzip")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout[3] & FNAME, FNAME);
        assert_eq!(decode(&out.stdout, 4096).unwrap(), sample());
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_or_the_deflate_data() {
        let stream = gzip(&sample());
        for at in [20, stream.len() / 2, stream.len() - 6] {
            let mut bad = stream.clone();
            bad[at] ^= 0x10;
            let err = decode(&bad, 4096).unwrap_err();
            assert!(
                matches!(
                    err,
                    GunzipError::Crc { .. }
                        | GunzipError::Corrupt { .. }
                        | GunzipError::Size { .. }
                ),
                "byte {at}: {err}"
            );
        }
        let mut bad = stream.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x01; // ISIZE
        assert!(matches!(decode(&bad, 4096), Err(GunzipError::Size { .. })));
    }

    #[test]
    fn anything_after_the_member_is_refused() {
        let stream = gzip(b"hello");
        let mut two = stream.clone();
        two.extend(gzip(b"world"));
        assert_eq!(
            decode(&two, 3),
            Err(GunzipError::Trailing {
                offset: stream.len() as u64
            })
        );
        let mut zeros = stream.clone();
        zeros.extend([0u8; 4]);
        assert!(matches!(
            decode(&zeros, 4096),
            Err(GunzipError::Trailing { .. })
        ));
    }

    #[test]
    fn truncation_and_garbage_are_named() {
        let stream = gzip(&sample());
        assert_eq!(
            decode(&[], 1),
            Err(GunzipError::Truncated(
                "before its header (the file is empty)"
            ))
        );
        assert_eq!(
            decode(&stream[..5], 1),
            Err(GunzipError::Truncated("inside its header"))
        );
        assert_eq!(
            decode(&stream[..stream.len() / 2], 999),
            Err(GunzipError::Truncated("inside the compressed data"))
        );
        assert_eq!(
            decode(&stream[..stream.len() - 3], 999),
            Err(GunzipError::Truncated("inside its trailer"))
        );
        assert_eq!(decode(b"PK\x03\x04 zip", 2), Err(GunzipError::Magic));
        let mut reserved = stream.clone();
        reserved[3] |= 0x80;
        assert!(matches!(
            decode(&reserved, 100),
            Err(GunzipError::Header(_))
        ));
    }

    #[test]
    fn sink_errors_stop_decoding() {
        #[derive(Debug, PartialEq)]
        enum Stop {
            Sink,
            Gz(GunzipError),
        }
        impl From<GunzipError> for Stop {
            fn from(err: GunzipError) -> Self {
                Self::Gz(err)
            }
        }
        let stream = gzip(&sample());
        let mut gunzip = Gunzip::new();
        assert_eq!(gunzip.feed(&stream, |_| Err(Stop::Sink)), Err(Stop::Sink));
    }
}
