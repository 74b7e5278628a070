//! Tests of the streaming tar checker: hand-built headers, system tar in every format, truncation
//! at every cut point, members reported for the restore pre-scan.

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
        (&b"/etc/passwd"[..], REASON_ABSOLUTE),
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
fn raw_header(name: &str, kind: tokio_tar::EntryType, size: u64, mode: u32) -> tokio_tar::Header {
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

#[test]
fn a_reporting_checker_hands_out_every_member_once() {
    let mut stream = simple_archive();
    // A pax header overriding the owner of the next member.
    let records = format!("{}{}", pax_record("uid", "4242"), pax_record("gid", "77"));
    let mut pax = header(b"./PaxHeaders/o", b'x', records.len() as u64, POSIX).to_vec();
    pax.extend(data_blocks(records.as_bytes()));
    let mut owned = header(b"./owned", b'0', 3, POSIX);
    owned[100..108].copy_from_slice(b"0004755\0");
    set_checksum(&mut owned);
    pax.extend(owned);
    pax.extend(data_blocks(b"abc"));
    let end_at = stream.len() - 2 * BLOCK;
    stream.splice(end_at..end_at, pax);

    let mut checker = TarChecker::reporting();
    let mut members = Vec::new();
    for piece in stream.chunks(100) {
        checker.feed(piece).unwrap();
        members.extend(checker.take_members());
    }
    checker.finish().unwrap();
    let seen: Vec<(&str, MemberKind)> = members.iter().map(|m| (m.path.as_str(), m.kind)).collect();
    assert_eq!(
        seen,
        [
            ("./", MemberKind::Directory),
            ("./a.txt", MemberKind::File),
            ("./empty", MemberKind::File),
            ("./ln", MemberKind::Symlink),
            ("./hard", MemberKind::HardLink),
            ("./fifo", MemberKind::Fifo),
            ("./owned", MemberKind::File),
        ]
    );
    assert_eq!(members[3].link, "/etc/x");
    assert_eq!(members[4].link, "./a.txt");
    assert_eq!(members[1].mode, 0o644);
    assert_eq!(members[1].size, 5);
    let owned = &members[6];
    assert_eq!((owned.uid, owned.gid, owned.mode), (4242, 77, 0o4755));
    assert_eq!(
        owned.offset,
        stream.len() as u64 - 2 * BLOCK as u64 - 2 * BLOCK as u64
    );
    assert!(checker.take_members().is_empty());
    // A plain checker keeps nothing.
    let mut plain = TarChecker::new();
    plain.feed(&stream).unwrap();
    assert!(plain.take_members().is_empty());
}
