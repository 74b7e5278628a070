//! Incremental tar stream checker: sees every byte of the archive as it streams past, validates each
//! header (checksum, numeric fields, member paths), counts entries and file bytes, and tells a complete
//! archive (end-of-archive blocks) from a truncated one. Pure: no I/O, memory bounded.
//!
//! Understood formats: GNU tar's default (`gnu`: `ustar  \0` magic, `L`/`K` long names, base-256
//! sizes, `S` sparse headers), POSIX ustar (with the `prefix` field) and pax (`x` extended headers
//! overriding `path`, `linkpath` and `size`; `g` global headers). Data follows a header for regular
//! files and for unknown types (by the `size` field), never for links, directories, devices and FIFOs
//! (as Python's `tarfile` and GNU tar read them).
//!
//! Member paths must be relative to the volume root as `tar -C <mount> .` writes them: `.`, `./` or
//! `./<path>`, without `..` components; hard-link targets follow the same rule (symlink targets are
//! data and may be anything).

use serde::{Deserialize, Serialize};

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Largest payload of a GNU long name (`L`/`K`) or pax header (`x`/`g`) that is buffered.
pub const MAX_META_BYTES: u64 = 1 << 20;

/// What the archive holds, counted as it streamed past.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarCounts {
    /// Entries (members), not counting long-name and pax headers.
    pub entries: u64,
    /// Regular files (including contiguous and GNU sparse files).
    pub regular_files: u64,
    /// Bytes of regular file content in the archive.
    pub file_bytes: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// Devices, FIFOs and entries of unknown type.
    pub other: u64,
    /// Bytes of the tar stream seen so far.
    pub stream_bytes: u64,
}

/// Why a stream is not a complete, safe archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    #[error("invalid tar header at byte {offset}: {reason}")]
    BadHeader { offset: u64, reason: String },
    #[error("member {path:?} (header at byte {offset}) {reason}")]
    UnsafePath {
        offset: u64,
        path: String,
        reason: &'static str,
    },
    #[error("{what} at byte {offset} is {size} bytes; at most {MAX_META_BYTES} are accepted")]
    MetaTooLarge {
        what: &'static str,
        offset: u64,
        size: u64,
    },
    #[error("non-zero data after the end-of-archive blocks at byte {offset}")]
    TrailingData { offset: u64 },
    #[error("truncated: {0}")]
    Truncated(String),
}

/// Extended-header payloads that are buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    LongName,
    LongLink,
    Pax,
    PaxGlobal,
}

impl MetaKind {
    fn describe(self) -> &'static str {
        match self {
            Self::LongName => "a GNU long name (L) header",
            Self::LongLink => "a GNU long link (K) header",
            Self::Pax => "a pax extended header (x)",
            Self::PaxGlobal => "a pax global header (g)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Expecting a header block.
    Header,
    /// Skipping `remaining` bytes of member data and padding.
    Data { remaining: u64, member: String },
    /// Collecting an extended header payload (`payload` bytes), then skipping `padding`.
    Meta {
        kind: MetaKind,
        payload: u64,
        padding: u64,
        buf: Vec<u8>,
        offset: u64,
    },
    /// Expecting GNU sparse extension blocks, then `data` bytes of the member.
    SparseExt { data: u64, member: String },
    /// One zero block seen; a second one ends the archive.
    ZeroBlock,
    /// After the end-of-archive blocks: only zero padding may follow.
    End,
}

/// Checks a tar stream fed in arbitrary chunks. After an error every call returns that error.
#[derive(Debug, Clone)]
pub struct TarChecker {
    state: State,
    block: [u8; BLOCK],
    filled: usize,
    counts: TarCounts,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    failed: Option<TarError>,
    last_member: Option<String>,
}

impl Default for TarChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl TarChecker {
    pub fn new() -> Self {
        Self {
            state: State::Header,
            block: [0; BLOCK],
            filled: 0,
            counts: TarCounts::default(),
            long_name: None,
            long_link: None,
            pax_path: None,
            pax_link: None,
            pax_size: None,
            failed: None,
            last_member: None,
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> TarCounts {
        self.counts
    }

    /// Whether both end-of-archive blocks were seen.
    pub fn is_complete(&self) -> bool {
        self.failed.is_none() && self.state == State::End
    }

    /// Checks the next bytes of the stream.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), TarError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.feed_inner(data) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Ends the stream: the counts when the archive was complete, else why not.
    pub fn finish(&self) -> Result<TarCounts, TarError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let after = match &self.last_member {
            Some(name) => format!(" (last member: {name})"),
            None => String::new(),
        };
        let entries = self.counts.entries;
        let reason = match &self.state {
            State::End => return Ok(self.counts),
            State::Header if self.counts.stream_bytes == 0 => {
                "the stream is empty: tar wrote nothing".to_owned()
            }
            State::Header if self.filled == 0 => format!(
                "the stream ended after {entries} entries without the end-of-archive blocks{after}"
            ),
            State::Header | State::ZeroBlock if self.filled > 0 => format!(
                "the stream ended inside a header block ({} of {BLOCK} bytes) after {entries} \
                 entries{after}",
                self.filled
            ),
            State::Header => unreachable_reason(),
            State::ZeroBlock => {
                "the stream ended after the first of the two end-of-archive blocks".to_owned()
            }
            State::Data { remaining, member } => format!(
                "the stream ended inside the data of {member} ({remaining} bytes of data and \
                 padding missing)"
            ),
            State::Meta { kind, .. } => {
                format!("the stream ended inside {}{after}", kind.describe())
            }
            State::SparseExt { member, .. } => {
                format!("the stream ended inside the sparse map of {member}")
            }
        };
        Err(TarError::Truncated(reason))
    }

    fn feed_inner(&mut self, mut data: &[u8]) -> Result<(), TarError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Data { remaining, .. } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    *remaining -= take as u64;
                    self.counts.stream_bytes += take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                }
                State::Meta {
                    payload,
                    padding,
                    buf,
                    ..
                } => {
                    let take;
                    if *payload > 0 {
                        take = usize::try_from(*payload)
                            .unwrap_or(usize::MAX)
                            .min(data.len());
                        buf.extend_from_slice(&data[..take]);
                        *payload -= take as u64;
                    } else {
                        take = usize::try_from(*padding)
                            .unwrap_or(usize::MAX)
                            .min(data.len());
                        *padding -= take as u64;
                    }
                    self.counts.stream_bytes += take as u64;
                    data = &data[take..];
                    if *payload == 0 && *padding == 0 {
                        self.end_meta()?;
                    }
                }
                State::Header | State::ZeroBlock | State::SparseExt { .. } | State::End => {
                    let take = (BLOCK - self.filled).min(data.len());
                    self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
                    self.filled += take;
                    self.counts.stream_bytes += take as u64;
                    data = &data[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.on_block()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Offset of the block just completed.
    fn block_offset(&self) -> u64 {
        self.counts.stream_bytes - BLOCK as u64
    }

    fn on_block(&mut self) -> Result<(), TarError> {
        let offset = self.block_offset();
        let zero = self.block.iter().all(|b| *b == 0);
        match std::mem::replace(&mut self.state, State::Header) {
            State::End => {
                if !zero {
                    return Err(TarError::TrailingData { offset });
                }
                self.state = State::End;
                Ok(())
            }
            State::ZeroBlock => {
                if !zero {
                    return Err(TarError::BadHeader {
                        offset,
                        reason: "a header follows a single zero block (a damaged archive)"
                            .to_owned(),
                    });
                }
                self.state = State::End;
                Ok(())
            }
            State::SparseExt { data, member } => {
                // GNU sparse extension block: 21 sparse entries, then the `isextended` flag.
                if self.block[504] != 0 {
                    self.state = State::SparseExt { data, member };
                } else {
                    self.start_data(data, member);
                }
                Ok(())
            }
            State::Header => {
                if zero {
                    if self.long_name.is_some() || self.long_link.is_some() || self.has_pax() {
                        return Err(TarError::BadHeader {
                            offset,
                            reason: "an extended header is not followed by its member".to_owned(),
                        });
                    }
                    self.state = State::ZeroBlock;
                    return Ok(());
                }
                self.on_header(offset)
            }
            State::Data { .. } | State::Meta { .. } => unreachable_state(),
        }
    }

    fn has_pax(&self) -> bool {
        self.pax_path.is_some() || self.pax_link.is_some() || self.pax_size.is_some()
    }

    fn on_header(&mut self, offset: u64) -> Result<(), TarError> {
        let block = self.block;
        verify_checksum(&block, offset)?;
        let bad = |reason: &str| TarError::BadHeader {
            offset,
            reason: reason.to_owned(),
        };
        let magic = &block[257..263];
        let posix = magic == b"ustar\0";
        let gnu = magic == b"ustar ";
        if !posix && !gnu && magic.iter().any(|b| *b != 0) {
            return Err(bad("unknown magic (not a ustar, GNU or v7 header)"));
        }
        let typeflag = block[156];
        let header_size = parse_numeric(&block[124..136])
            .ok_or_else(|| bad("the size field is not a valid number"))?;

        match typeflag {
            b'L' | b'K' | b'x' | b'g' => {
                let kind = match typeflag {
                    b'L' => MetaKind::LongName,
                    b'K' => MetaKind::LongLink,
                    b'x' => MetaKind::Pax,
                    _ => MetaKind::PaxGlobal,
                };
                if header_size > MAX_META_BYTES {
                    return Err(TarError::MetaTooLarge {
                        what: kind.describe(),
                        offset,
                        size: header_size,
                    });
                }
                let padding = padding_of(header_size);
                self.state = State::Meta {
                    kind,
                    payload: header_size,
                    padding,
                    buf: Vec::new(),
                    offset,
                };
                if header_size == 0 {
                    self.end_meta()?;
                }
                return Ok(());
            }
            _ => {}
        }

        // A member: its name, link and size with extended headers applied.
        let name = match (self.long_name.take(), self.pax_path.take()) {
            (_, Some(path)) => path,
            (Some(long), None) => long,
            (None, None) => {
                let name = cstr(&block[0..100]);
                let prefix = cstr(&block[345..500]);
                if posix && !prefix.is_empty() {
                    let mut full = prefix.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(name);
                    full
                } else {
                    name.to_vec()
                }
            }
        };
        let link = match (self.long_link.take(), self.pax_link.take()) {
            (_, Some(link)) => link,
            (Some(long), None) => long,
            (None, None) => cstr(&block[157..257]).to_vec(),
        };
        let size = self.pax_size.take().unwrap_or(header_size);
        let display = String::from_utf8_lossy(&name).into_owned();
        check_member_path(&name).map_err(|reason| TarError::UnsafePath {
            offset,
            path: display.clone(),
            reason,
        })?;
        self.counts.entries += 1;
        self.last_member = Some(display.clone());

        match typeflag {
            b'0' | b'\0' | b'7' => {
                self.counts.regular_files += 1;
                self.counts.file_bytes += size;
                self.start_data(size, display);
            }
            b'S' => {
                self.counts.regular_files += 1;
                self.counts.file_bytes += size;
                if block[482] != 0 {
                    self.state = State::SparseExt {
                        data: size,
                        member: display,
                    };
                } else {
                    self.start_data(size, display);
                }
            }
            b'1' => {
                check_member_path(&link).map_err(|reason| TarError::UnsafePath {
                    offset,
                    path: format!("{display} -> {}", String::from_utf8_lossy(&link)),
                    reason: if reason == REASON_NOT_RELATIVE {
                        "is a hard link to a path outside the volume root"
                    } else {
                        reason
                    },
                })?;
                self.counts.hard_links += 1;
            }
            b'2' => self.counts.symlinks += 1,
            b'5' => self.counts.directories += 1,
            b'3' | b'4' | b'6' => self.counts.other += 1,
            _ => {
                self.counts.other += 1;
                self.start_data(size, display);
            }
        }
        Ok(())
    }

    fn start_data(&mut self, size: u64, member: String) {
        let remaining = size + padding_of(size);
        self.state = if remaining == 0 {
            State::Header
        } else {
            State::Data { remaining, member }
        };
    }

    fn end_meta(&mut self) -> Result<(), TarError> {
        let State::Meta {
            kind, buf, offset, ..
        } = std::mem::replace(&mut self.state, State::Header)
        else {
            return Ok(());
        };
        match kind {
            MetaKind::LongName => self.long_name = Some(trim_nuls(&buf).to_vec()),
            MetaKind::LongLink => self.long_link = Some(trim_nuls(&buf).to_vec()),
            MetaKind::Pax => {
                for (key, value) in parse_pax(&buf).map_err(|reason| TarError::BadHeader {
                    offset,
                    reason: reason.to_owned(),
                })? {
                    match key {
                        b"path" => self.pax_path = Some(value.to_vec()),
                        b"linkpath" => self.pax_link = Some(value.to_vec()),
                        b"size" => {
                            let size = std::str::from_utf8(value)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                                .ok_or_else(|| TarError::BadHeader {
                                    offset,
                                    reason: "the pax size record is not a number".to_owned(),
                                })?;
                            self.pax_size = Some(size);
                        }
                        _ => {}
                    }
                }
            }
            MetaKind::PaxGlobal => {
                parse_pax(&buf).map_err(|reason| TarError::BadHeader {
                    offset,
                    reason: reason.to_owned(),
                })?;
            }
        }
        Ok(())
    }
}

fn unreachable_reason() -> String {
    "the stream ended in an unexpected state".to_owned()
}

fn unreachable_state() -> Result<(), TarError> {
    Err(TarError::BadHeader {
        offset: 0,
        reason: "internal checker state error".to_owned(),
    })
}

const REASON_NOT_RELATIVE: &str = "is not relative to the volume root (expected ./...)";

/// A member path written by `tar -C <mount> .`: `.`, `./` or `./…`, with no `..` component.
fn check_member_path(path: &[u8]) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("has an empty name");
    }
    if path != b"." && !path.starts_with(b"./") {
        return Err(REASON_NOT_RELATIVE);
    }
    if path.split(|b| *b == b'/').any(|c| c == b"..") {
        return Err("contains a `..` component");
    }
    Ok(())
}

fn padding_of(size: u64) -> u64 {
    let rem = size % BLOCK as u64;
    if rem == 0 { 0 } else { BLOCK as u64 - rem }
}

/// The bytes before the first NUL.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn trim_nuls(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &data[..end]
}

/// An octal field (NUL/space padded) or GNU base-256 (high bit set, positive only).
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for byte in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*byte))?;
        }
        return Some(value);
    }
    let text = field
        .iter()
        .skip_while(|b| **b == b' ' || **b == 0)
        .take_while(|b| **b != b' ' && **b != 0)
        .copied()
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Some(0);
    }
    let mut value: u64 = 0;
    for digit in text {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}

fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let stored = parse_numeric(&block[148..156]).ok_or_else(|| TarError::BadHeader {
        offset,
        reason: "the checksum field is not a valid number (not a tar stream?)".to_owned(),
    })?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { *byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte.cast_signed());
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(TarError::BadHeader {
            offset,
            reason: format!(
                "checksum mismatch (stored {stored}, computed {unsigned}): not a tar stream, or \
                 corrupted"
            ),
        })
    }
}

/// A pax record's key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// Pax records `"<len> <key>=<value>\n"`.
fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord<'_>>, &'static str> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a pax record has no length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a pax record length is not a number")?;
        if len <= space + 1 || len > rest.len() {
            return Err("a pax record length is out of range");
        }
        let record = &rest[space + 1..len];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err("a pax record does not end with a newline");
        };
        let eq = body
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a pax record has no `=`")?;
        records.push((&body[..eq], &body[eq + 1..]));
        rest = &rest[len..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A raw header block with a valid checksum.
    fn header(name: &[u8], typeflag: u8, size: u64, magic: [u8; 8]) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[..name.len()].copy_from_slice(name);
        block[100..108].copy_from_slice(b"0000644\0");
        block[108..116].copy_from_slice(b"0000000\0");
        block[116..124].copy_from_slice(b"0000000\0");
        let size_field = format!("{size:011o}\0");
        block[124..136].copy_from_slice(size_field.as_bytes());
        block[136..148].copy_from_slice(b"00000000000\0");
        block[156] = typeflag;
        block[257..265].copy_from_slice(&magic);
        set_checksum(&mut block);
        block
    }

    fn set_checksum(block: &mut [u8; BLOCK]) {
        block[148..156].copy_from_slice(b"        ");
        let sum: u64 = block.iter().map(|b| u64::from(*b)).sum();
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
    }

    const GNU: [u8; 8] = *b"ustar  \0";
    const POSIX: [u8; 8] = *b"ustar\x0000";

    fn data_blocks(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.resize(
            data.len() + usize::try_from(padding_of(data.len() as u64)).unwrap(),
            0,
        );
        out
    }

    fn end() -> Vec<u8> {
        vec![0u8; BLOCK * 2]
    }

    fn check_all(stream: &[u8]) -> Result<TarCounts, TarError> {
        let mut checker = TarChecker::new();
        checker.feed(stream)?;
        checker.finish()
    }

    /// Feeds byte by byte and in odd chunk sizes: the result must not depend on chunking.
    fn check_chunked(stream: &[u8]) -> Result<TarCounts, TarError> {
        let whole = check_all(stream);
        for chunk in [1, 7, 511, 512, 513, 4096] {
            let mut checker = TarChecker::new();
            let mut fed = Ok(());
            for piece in stream.chunks(chunk) {
                fed = checker.feed(piece);
                if fed.is_err() {
                    break;
                }
            }
            let result = fed.and_then(|()| checker.finish());
            assert_eq!(result, whole, "chunk size {chunk}");
        }
        whole
    }

    fn simple_archive() -> Vec<u8> {
        let mut stream = Vec::new();
        stream.extend(header(b"./", b'5', 0, GNU));
        stream.extend(header(b"./a.txt", b'0', 5, GNU));
        stream.extend(data_blocks(b"hello"));
        stream.extend(header(b"./empty", b'0', 0, GNU));
        let mut link = header(b"./ln", b'2', 0, GNU);
        link[157..163].copy_from_slice(b"/etc/x");
        set_checksum(&mut link);
        stream.extend(link);
        let mut hard = header(b"./hard", b'1', 0, GNU);
        hard[157..166].copy_from_slice(b"./a.txt\0\0");
        set_checksum(&mut hard);
        stream.extend(hard);
        stream.extend(header(b"./fifo", b'6', 0, GNU));
        stream.extend(end());
        stream
    }

    #[test]
    fn counts_a_hand_built_archive() {
        let counts = check_chunked(&simple_archive()).unwrap();
        assert_eq!(
            counts,
            TarCounts {
                entries: 6,
                regular_files: 2,
                file_bytes: 5,
                directories: 1,
                symlinks: 1,
                hard_links: 1,
                other: 1,
                stream_bytes: simple_archive().len() as u64,
            }
        );
    }

    #[test]
    fn accepts_trailing_zero_padding() {
        let mut stream = simple_archive();
        stream.extend(vec![0u8; 10240 - stream.len() % 10240]);
        assert!(check_chunked(&stream).is_ok());
    }

    #[test]
    fn rejects_non_zero_data_after_the_end() {
        let mut stream = simple_archive();
        let offset = stream.len() as u64;
        stream.extend(header(b"./late", b'0', 0, GNU));
        assert_eq!(
            check_chunked(&stream),
            Err(TarError::TrailingData { offset })
        );
    }

    #[test]
    fn every_cut_point_of_a_complete_archive_is_truncated() {
        let stream = simple_archive();
        // The archive is complete only once both zero blocks are in.
        let complete_at = stream.len();
        for cut in 0..complete_at {
            let mut checker = TarChecker::new();
            checker.feed(&stream[..cut]).unwrap();
            match checker.finish() {
                Err(TarError::Truncated(reason)) => {
                    assert!(!reason.is_empty());
                    if cut == 0 {
                        assert!(reason.contains("empty"), "{reason}");
                    }
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn truncation_inside_data_names_the_member() {
        let stream = simple_archive();
        let cut = BLOCK * 2 + 3; // inside a.txt's data
        let mut checker = TarChecker::new();
        checker.feed(&stream[..cut]).unwrap();
        let err = checker.finish().unwrap_err().to_string();
        assert!(err.contains("inside the data of ./a.txt"), "{err}");
        assert!(err.contains("509 bytes"), "{err}");
    }

    #[test]
    fn one_zero_block_is_not_an_end() {
        let mut stream = simple_archive();
        stream.truncate(stream.len() - BLOCK);
        let err = check_chunked(&stream).unwrap_err().to_string();
        assert!(
            err.contains("first of the two end-of-archive blocks"),
            "{err}"
        );
    }

    #[test]
    fn rejects_absolute_and_parent_paths() {
        for (name, reason) in [
            (&b"/etc/passwd"[..], REASON_NOT_RELATIVE),
            (b"a/b", REASON_NOT_RELATIVE),
            (b"./a/../../b", "contains a `..` component"),
            (b"./..", "contains a `..` component"),
        ] {
            let mut stream = header(name, b'0', 0, GNU).to_vec();
            stream.extend(end());
            match check_all(&stream) {
                Err(TarError::UnsafePath { reason: got, .. }) => assert_eq!(got, reason),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(name)),
            }
        }
        // Dots inside names are fine.
        let mut stream = header(b"./a..b/.c", b'0', 0, GNU).to_vec();
        stream.extend(end());
        assert!(check_all(&stream).is_ok());
    }

    #[test]
    fn rejects_hard_links_leaving_the_root() {
        let mut hard = header(b"./x", b'1', 0, GNU);
        hard[157..168].copy_from_slice(b"/etc/shadow");
        set_checksum(&mut hard);
        let mut stream = hard.to_vec();
        stream.extend(end());
        let err = check_all(&stream).unwrap_err().to_string();
        assert!(err.contains("hard link"), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
        assert!(matches!(
            check_chunked(&garbage),
            Err(TarError::BadHeader { offset: 0, .. })
        ));
        let text = b"tar: Cannot open: Permission denied\n".repeat(40);
        assert!(matches!(check_all(&text), Err(TarError::BadHeader { .. })));
    }

    #[test]
    fn rejects_a_corrupted_checksum() {
        let mut stream = simple_archive();
        stream[BLOCK + 10] ^= 0x01; // inside a.txt's header name
        let err = check_chunked(&stream).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(err.contains("byte 512"), "{err}");
    }

    #[test]
    fn gnu_long_names_and_links() {
        let long = format!("./{}", "n".repeat(300));
        let target = format!("./{}", "t".repeat(200));
        let mut stream = Vec::new();
        let mut payload = long.as_bytes().to_vec();
        payload.push(0);
        stream.extend(header(b"././@LongLink", b'L', payload.len() as u64, GNU));
        stream.extend(data_blocks(&payload));
        stream.extend(header(&long.as_bytes()[..100], b'0', 3, GNU));
        stream.extend(data_blocks(b"abc"));
        let mut link_payload = target.as_bytes().to_vec();
        link_payload.push(0);
        stream.extend(header(
            b"././@LongLink",
            b'K',
            link_payload.len() as u64,
            GNU,
        ));
        stream.extend(data_blocks(&link_payload));
        stream.extend(header(b"./s", b'2', 0, GNU));
        stream.extend(end());
        let counts = check_chunked(&stream).unwrap();
        assert_eq!(counts.entries, 2);
        assert_eq!(counts.regular_files, 1);
        assert_eq!(counts.file_bytes, 3);
        assert_eq!(counts.symlinks, 1);
    }

    #[test]
    fn a_long_name_applies_to_path_checks() {
        let mut stream = Vec::new();
        let payload = b"/abs/olute\0";
        stream.extend(header(b"././@LongLink", b'L', payload.len() as u64, GNU));
        stream.extend(data_blocks(payload));
        stream.extend(header(b"./fine", b'0', 0, GNU));
        stream.extend(end());
        match check_chunked(&stream) {
            Err(TarError::UnsafePath { path, .. }) => assert_eq!(path, "/abs/olute"),
            other => panic!("{other:?}"),
        }
    }

    fn pax_record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    #[test]
    fn pax_path_and_size_override_the_header() {
        let records = format!(
            "{}{}",
            pax_record("path", "./über/ファイル"),
            pax_record("size", "700")
        );
        let mut stream = Vec::new();
        stream.extend(header(b"./PaxHeaders/x", b'x', records.len() as u64, POSIX));
        stream.extend(data_blocks(records.as_bytes()));
        stream.extend(header(b"./short", b'0', 0, POSIX));
        stream.extend(data_blocks(&[7u8; 700]));
        let global = pax_record("comment", "hi");
        stream.extend(header(b"./g", b'g', global.len() as u64, POSIX));
        stream.extend(data_blocks(global.as_bytes()));
        stream.extend(end());
        let counts = check_chunked(&stream).unwrap();
        assert_eq!(counts.entries, 1);
        assert_eq!(counts.file_bytes, 700);
    }

    #[test]
    fn malformed_pax_is_rejected() {
        let records = "99 path=./x\n";
        let mut stream = header(b"./p", b'x', records.len() as u64, POSIX).to_vec();
        stream.extend(data_blocks(records.as_bytes()));
        stream.extend(header(b"./x", b'0', 0, POSIX));
        stream.extend(end());
        assert!(matches!(
            check_chunked(&stream),
            Err(TarError::BadHeader { .. })
        ));
    }

    #[test]
    fn oversized_extended_headers_are_rejected_before_buffering() {
        let stream = header(b"./p", b'x', MAX_META_BYTES + 1, POSIX);
        assert!(matches!(
            check_all(&stream),
            Err(TarError::MetaTooLarge { .. })
        ));
    }

    #[test]
    fn ustar_prefix_is_joined() {
        let mut block = header(b"file", b'0', 0, POSIX);
        block[345..350].copy_from_slice(b"./dir");
        set_checksum(&mut block);
        let mut stream = block.to_vec();
        stream.extend(end());
        assert!(check_all(&stream).is_ok());
        // Without the prefix the same name would be rejected.
        let mut stream = header(b"file", b'0', 0, POSIX).to_vec();
        stream.extend(end());
        assert!(check_all(&stream).is_err());
    }

    #[test]
    fn base256_sizes() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x01;
        field[10] = 0x02;
        assert_eq!(parse_numeric(&field), Some(0x0201));
        field[0] = 0xc0;
        assert_eq!(parse_numeric(&field), None);
        assert_eq!(parse_numeric(b"00000000012\0"), Some(10));
        assert_eq!(parse_numeric(b"     12 \0\0\0\0"), Some(10));
        assert_eq!(parse_numeric(b"0000000009\0\0"), None);
    }

    #[test]
    fn gnu_sparse_extension_blocks_are_skipped() {
        let mut block = header(b"./sparse", b'S', 600, GNU);
        block[482] = 1;
        set_checksum(&mut block);
        let mut stream = block.to_vec();
        let mut ext = [0u8; BLOCK];
        ext[504] = 1;
        stream.extend(ext); // non-zero only in the flag: another extension follows
        stream.extend([0u8; BLOCK]); // last extension (looks like a zero block, but is not one)
        stream.extend(data_blocks(&[1u8; 600]));
        stream.extend(end());
        let counts = check_chunked(&stream).unwrap();
        assert_eq!(counts.regular_files, 1);
        assert_eq!(counts.file_bytes, 600);
    }

    fn system_tar(dir: &Path, format: Option<&str>) -> Vec<u8> {
        let mut command = Command::new("tar");
        command.arg("-cf").arg("-");
        if let Some(format) = format {
            command.arg(format!("--format={format}"));
        }
        let output = command
            .arg("-C")
            .arg(dir)
            .arg(".")
            .output()
            .expect("run tar");
        assert!(output.status.success(), "{output:?}");
        output.stdout
    }

    fn fixture_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let deep = root.join("a").join("b".repeat(120)).join("c".repeat(120));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("d".repeat(200)), vec![5u8; 70_000]).unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("ünïcødé ✓.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/absolute/target", root.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("t".repeat(150), root.join("long-link")).unwrap();
        std::fs::hard_link(root.join("empty"), root.join("hard")).unwrap();
        dir
    }

    #[test]
    fn archives_from_gnu_tar_in_every_format() {
        let dir = fixture_dir();
        for format in [None, Some("gnu"), Some("pax"), Some("posix")] {
            let stream = system_tar(dir.path(), format);
            let counts = check_chunked(&stream).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(counts.regular_files, 3, "{format:?}");
            assert_eq!(counts.file_bytes, 70_001, "{format:?}");
            assert_eq!(counts.symlinks, 2, "{format:?}");
            assert_eq!(counts.hard_links, 1, "{format:?}");
            assert_eq!(counts.directories, 4, "{format:?}");
            assert_eq!(counts.stream_bytes, stream.len() as u64);
        }
    }

    #[test]
    fn system_tar_truncated_at_many_points() {
        let dir = fixture_dir();
        let stream = system_tar(dir.path(), None);
        // The last bytes are zero padding: cut only before the end-of-archive blocks are complete.
        let mut checker = TarChecker::new();
        let mut complete_at = None;
        for (i, byte) in stream.iter().enumerate() {
            checker.feed(&[*byte]).unwrap();
            if checker.is_complete() {
                complete_at = Some(i + 1);
                break;
            }
        }
        let complete_at = complete_at.expect("archive completes");
        for cut in (0..complete_at).step_by(97).chain([complete_at - 1]) {
            let mut checker = TarChecker::new();
            checker.feed(&stream[..cut]).unwrap();
            assert!(
                matches!(checker.finish(), Err(TarError::Truncated(_))),
                "cut at {cut}"
            );
        }
    }

    /// astral-tokio-tar normalises `./` away in its path setters, so names are written raw.
    fn raw_header(
        name: &str,
        kind: tokio_tar::EntryType,
        size: u64,
        mode: u32,
    ) -> tokio_tar::Header {
        let mut head = tokio_tar::Header::new_gnu();
        head.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        head.set_size(size);
        head.set_mode(mode);
        head.set_entry_type(kind);
        head.set_cksum();
        head
    }

    #[tokio::test]
    async fn archives_from_astral_tokio_tar() {
        let mut builder = tokio_tar::Builder::new(Vec::new());
        let dir = raw_header("./dir/", tokio_tar::EntryType::Directory, 0, 0o2750);
        builder.append(&dir, &b""[..]).await.unwrap();
        let file = raw_header("./dir/f", tokio_tar::EntryType::Regular, 4, 0o600);
        builder.append(&file, &b"data"[..]).await.unwrap();
        let empty = raw_header("./e", tokio_tar::EntryType::Regular, 0, 0o644);
        builder.append(&empty, &b""[..]).await.unwrap();
        let stream = builder.into_inner().await.unwrap();
        let counts = check_chunked(&stream).unwrap();
        assert_eq!(counts.regular_files, 2);
        assert_eq!(counts.directories, 1);
        assert_eq!(counts.file_bytes, 4);
        assert!(TarChecker::new().feed(&stream).is_ok());
    }

    #[tokio::test]
    async fn astral_tokio_tar_names_without_dot_slash_are_refused() {
        let mut builder = tokio_tar::Builder::new(Vec::new());
        let mut head = tokio_tar::Header::new_gnu();
        head.set_size(1);
        head.set_cksum();
        builder
            .append_data(&mut head, "./x", &b"1"[..])
            .await
            .unwrap();
        let stream = builder.into_inner().await.unwrap();
        assert!(matches!(
            check_all(&stream),
            Err(TarError::UnsafePath { .. })
        ));
    }
}
