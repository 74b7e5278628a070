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
//! data and may be anything). A checker made with [`TarChecker::reporting`] also hands out every
//! member's header ([`Member`]: type, mode, owner, link target) for the restore pre-scan.

use serde::{Deserialize, Serialize};

mod fields;
use fields::{
    REASON_ABSOLUTE, REASON_NOT_RELATIVE, check_member_path, cstr, padding_of, parse_numeric,
    parse_pax, trim_nuls, verify_checksum,
};

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

/// The type of a member, from its header's type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberKind {
    /// A regular file (also contiguous and GNU sparse files).
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
    /// Any other type flag (GNU dumpdir, volume label, multi-volume continuation, …).
    Other(u8),
}

/// One member's header, as a [`TarChecker::reporting`] checker saw it (extended headers applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Offset of the member's own header in the tar stream.
    pub offset: u64,
    /// The member's path (lossy UTF-8).
    pub path: String,
    pub kind: MemberKind,
    /// Permission bits with setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of content (regular files).
    pub size: u64,
    /// Target of a symlink or hard link (lossy UTF-8; empty for other types).
    pub link: String,
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
    pax_uid: Option<u64>,
    pax_gid: Option<u64>,
    failed: Option<TarError>,
    last_member: Option<String>,
    /// Members seen since the last [`TarChecker::take_members`], when reporting.
    members: Option<Vec<Member>>,
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
            pax_uid: None,
            pax_gid: None,
            failed: None,
            last_member: None,
            members: None,
        }
    }

    /// A checker that also keeps each member's header until [`TarChecker::take_members`] (call it
    /// after every [`TarChecker::feed`]: at most one member per 512 bytes fed is kept).
    pub fn reporting() -> Self {
        Self {
            members: Some(Vec::new()),
            ..Self::new()
        }
    }

    /// The members seen since the last call (always empty for a checker made with
    /// [`TarChecker::new`]).
    pub fn take_members(&mut self) -> Vec<Member> {
        self.members
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
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
        self.pax_path.is_some()
            || self.pax_link.is_some()
            || self.pax_size.is_some()
            || self.pax_uid.is_some()
            || self.pax_gid.is_some()
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
        let uid = self.pax_uid.take();
        let gid = self.pax_gid.take();
        let display = String::from_utf8_lossy(&name).into_owned();
        check_member_path(&name).map_err(|reason| TarError::UnsafePath {
            offset,
            path: display.clone(),
            reason,
        })?;
        if let Some(members) = &mut self.members {
            members.push(member_of(&block, offset, &display, &link, size, uid, gid)?);
        }
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
                    reason: if reason == REASON_NOT_RELATIVE || reason == REASON_ABSOLUTE {
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
                        b"size" | b"uid" | b"gid" => {
                            let number = std::str::from_utf8(value)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                                .ok_or_else(|| TarError::BadHeader {
                                    offset,
                                    reason: format!(
                                        "the pax {} record is not a number",
                                        String::from_utf8_lossy(key)
                                    ),
                                })?;
                            match key {
                                b"size" => self.pax_size = Some(number),
                                b"uid" => self.pax_uid = Some(number),
                                _ => self.pax_gid = Some(number),
                            }
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

/// The [`Member`] of header `block` (at `offset`), with extended headers applied.
fn member_of(
    block: &[u8; BLOCK],
    offset: u64,
    path: &str,
    link: &[u8],
    size: u64,
    uid: Option<u64>,
    gid: Option<u64>,
) -> Result<Member, TarError> {
    let field = |range: std::ops::Range<usize>, what: &str| {
        parse_numeric(&block[range]).ok_or_else(|| TarError::BadHeader {
            offset,
            reason: format!("the {what} field is not a valid number"),
        })
    };
    let mode = u32::try_from(field(100..108, "mode")? & 0o7777).unwrap_or(0);
    let uid = match uid {
        Some(uid) => uid,
        None => field(108..116, "uid")?,
    };
    let gid = match gid {
        Some(gid) => gid,
        None => field(116..124, "gid")?,
    };
    let kind = match block[156] {
        b'0' | b'\0' | b'7' | b'S' => MemberKind::File,
        b'1' => MemberKind::HardLink,
        b'2' => MemberKind::Symlink,
        b'3' => MemberKind::CharDevice,
        b'4' => MemberKind::BlockDevice,
        b'5' => MemberKind::Directory,
        b'6' => MemberKind::Fifo,
        other => MemberKind::Other(other),
    };
    let link = if matches!(kind, MemberKind::HardLink | MemberKind::Symlink) {
        String::from_utf8_lossy(link).into_owned()
    } else {
        String::new()
    };
    Ok(Member {
        offset,
        path: path.to_owned(),
        kind,
        mode,
        uid,
        gid,
        size,
        link,
    })
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

#[cfg(test)]
mod tests;
