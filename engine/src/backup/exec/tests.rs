//! Unit tests of the helper commands: exit markers, the pre-scan, and the scripts run under the
//! local shells (dash, BusyBox ash) with stand-in programs.

use serde_json::json;

use super::*;

#[test]
fn exit_codes_come_from_the_status_causes() {
    let status: Status = serde_json::from_value(json!({
        "status": "Failure", "message": "command terminated with non-zero exit code",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}))
    .unwrap();
    assert_eq!(exit_code(&status), Some(2));
    let outcome = ExecOutcome {
        status: Some(status),
        reported_exit: None,
        compressor_exit: None,
        stderr: String::new(),
        transport_error: None,
        connection_lost: false,
    };
    assert!(!outcome.succeeded());
    assert_eq!(outcome.exit_code(), Some(2));
}

#[test]
fn the_reported_exit_code_decides() {
    let outcome = ExecOutcome {
        status: None,
        reported_exit: Some(0),
        compressor_exit: None,
        stderr: String::new(),
        transport_error: Some("reset".into()),
        connection_lost: false,
    };
    assert!(outcome.succeeded());
    assert_eq!(outcome.exit_code(), None);
    let failed = ExecOutcome {
        reported_exit: Some(2),
        ..outcome
    };
    assert!(!failed.succeeded());
    assert_eq!(failed.exit_code(), Some(2));
}

#[test]
fn exit_marker_parses_and_is_hidden() {
    let stderr = "tar: ./x: Cannot open: Permission denied\ntar: Exiting with failure status\nnkvm-tar-exit=2\n";
    assert_eq!(parse_exit_marker(stderr), Some(2));
    assert_eq!(parse_exit_marker("nothing"), None);
    assert!(!without_marker(stderr).contains("nkvm-tar-exit"));
    assert!(without_marker(stderr).contains("Permission denied"));
    let command = tar_command();
    assert_eq!(command[0], "sh");
    assert!(
        command[2].contains("\"$t\" $s -cf - -C /data .;"),
        "{}",
        command[2]
    );
    assert!(command[2].contains("cat >/dev/null"), "{}", command[2]);
}

#[test]
fn prescan_output_parses() {
    assert_eq!(
        parse_prescan("123456\n42\n"),
        Some(Totals {
            bytes: 123_456,
            files: 42
        })
    );
    assert_eq!(
        parse_prescan("12\t/data\n  7\n"),
        Some(Totals {
            bytes: 12,
            files: 7
        })
    );
    assert_eq!(parse_prescan("\n3\n"), None);
    assert_eq!(parse_prescan("x\n3\n"), None);
}

/// Runs `command` (an `sh -c` script) under each local shell (dash, and BusyBox ash when
/// installed), `/data` replaced by `data`, with `path` as `$PATH` and stdin closed: (exit
/// code, stdout, stderr) per shell.
fn under_each_shell(
    command: &[String],
    data: &std::path::Path,
    path: &str,
) -> Vec<(i32, Vec<u8>, String)> {
    let script = command[2].replace(
        &format!(" -C {MOUNT_PATH} "),
        &format!(" -C {} ", data.display()),
    );
    let mut shells = vec![vec!["/bin/sh"]];
    if std::path::Path::new("/bin/busybox").exists() {
        shells.push(vec!["/bin/busybox", "sh"]);
    }
    shells
        .into_iter()
        .map(|shell| {
            let out = std::process::Command::new(shell[0])
                .args(&shell[1..])
                .args(["-c", &script])
                .env("PATH", path)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                out.stdout,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

/// A directory holding executables named `names` that link to the system's programs, or to a
/// script exiting with `fail` for names in `failing`.
fn bin_dir(names: &[&str], failing: &[(&str, i32)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let target = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{name} is not installed"));
        std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
    }
    for (name, code) in failing {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    dir
}

#[test]
fn the_compressor_check_prefers_pigz_then_gzip_and_tries_the_level() {
    let data = tempfile::tempdir().unwrap();
    let both = bin_dir(&["pigz", "gzip", "printf"], &[]);
    let gzip_only = bin_dir(&["gzip", "printf"], &[]);
    let neither = bin_dir(&["printf"], &[]);
    let broken = bin_dir(&["printf"], &[("pigz", 1), ("gzip", 2)]);
    for (bins, level, expected) in [
        (&both, 6, Some(Compressor::Pigz { threads: 2 })),
        (&gzip_only, 6, Some(Compressor::Gzip)),
        // GNU gzip refuses -0; pigz stores.
        (&gzip_only, 0, None),
        (&both, 0, Some(Compressor::Pigz { threads: 2 })),
        (&neither, 6, None),
        (&broken, 6, None),
    ] {
        let path = bins.path().display().to_string();
        for (code, out, _) in
            under_each_shell(&compressor_check_command(level, 2), data.path(), &path)
        {
            let found = parse_compressor(&String::from_utf8_lossy(&out), 2);
            assert_eq!(found, expected, "{path} level {level}");
            assert_eq!(code == 0, expected.is_some());
        }
    }
}

#[test]
fn the_source_command_compresses_and_reports_both_exit_codes() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), b"hello source compression").unwrap();
    let good = bin_dir(&["tar", "pigz", "gzip", "cat"], &[]);
    for compressor in [Compressor::Pigz { threads: 2 }, Compressor::Gzip] {
        let command = source_tar_command(compressor, 6);
        let path = good.path().display().to_string();
        for (code, out, err) in under_each_shell(&command, data.path(), &path) {
            assert_eq!(code, 0, "{err}");
            assert_eq!(parse_exit_marker(&err), Some(0), "{err}");
            assert_eq!(parse_marker(&err, GZIP_EXIT_MARKER), Some(0), "{err}");
            assert_eq!(without_marker(&err), "");
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut tar)
                .unwrap();
            assert!(
                tar.windows(24).any(|w| w == b"hello source compression"),
                "{compressor:?}"
            );
        }
    }
    // tar fails: its code wins; the compressor still ends.
    let tar_fails = bin_dir(&["pigz", "cat"], &[("tar", 2)]);
    let path = tar_fails.path().display().to_string();
    let command = source_tar_command(Compressor::Pigz { threads: 1 }, 6);
    for (code, _, err) in under_each_shell(&command, data.path(), &path) {
        assert_eq!(code, 2, "{err}");
        assert_eq!(parse_exit_marker(&err), Some(2), "{err}");
        assert_eq!(parse_marker(&err, GZIP_EXIT_MARKER), Some(0), "{err}");
    }
    // The compressor fails: tar's 0 is reported, and the shell exits with the compressor's code.
    let gzip_fails = bin_dir(&["tar", "cat"], &[("pigz", 3)]);
    let path = gzip_fails.path().display().to_string();
    for (code, _, err) in under_each_shell(&command, data.path(), &path) {
        assert_eq!(code, 3, "{err}");
        assert_eq!(parse_marker(&err, GZIP_EXIT_MARKER), Some(3), "{err}");
        let outcome = ExecOutcome {
            status: None,
            reported_exit: parse_exit_marker(&err),
            compressor_exit: parse_marker(&err, GZIP_EXIT_MARKER),
            stderr: without_marker(&err),
            transport_error: None,
            connection_lost: false,
        };
        assert!(!outcome.succeeded());
    }
}

#[test]
fn tail_keeps_the_last_bytes() {
    let tail = Tail::new(10);
    tail.push(b"0123456789");
    tail.push(b"abc");
    assert_eq!(tail.text(), "3456789abc");
}

/// A 64 MiB file holding 4 KiB of data in its middle, the rest holes.
fn sparse_volume() -> tempfile::TempDir {
    use std::io::{Seek, SeekFrom, Write};
    let data = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(data.path().join("sparse")).unwrap();
    file.set_len(64 << 20).unwrap();
    file.seek(SeekFrom::Start(32 << 20)).unwrap();
    file.write_all(&[0xab; 4096]).unwrap();
    data
}

#[test]
fn gnu_tar_archives_holes_as_holes_and_they_extract_as_the_same_bytes() {
    let data = sparse_volume();
    let gnu = bin_dir(&["tar", "cat", "pigz"], &[]);
    let path = gnu.path().display().to_string();
    let raw = under_each_shell(&tar_command(), data.path(), &path);
    let compressed = under_each_shell(
        &source_tar_command(Compressor::Pigz { threads: 1 }, 6),
        data.path(),
        &path,
    );
    for ((code, out, err), (zcode, zout, zerr)) in raw.into_iter().zip(compressed) {
        assert_eq!((code, zcode), (0, 0), "{err} {zerr}");
        // Without --sparse the stream would carry all 64 MiB of zeros.
        assert!(out.len() < 64 * 1024, "{} bytes", out.len());
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zout[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, out);
        // GNU sparse member ('S'), accepted by the tar checker.
        assert_eq!(out[512 + 156], b'S', "the file's header");
        let mut checker = crate::backup::tarcheck::TarChecker::new();
        checker.feed(&out).unwrap();
        let counts = checker.finish().unwrap();
        assert_eq!(counts.regular_files, 1);
        assert_eq!(counts.file_bytes, 4096);
        // GNU tar (as the restore helper runs it) extracts the same bytes, holes included.
        let restored = tempfile::tempdir().unwrap();
        let mut tar = std::process::Command::new("tar")
            .args(["-xf", "-", "-C"])
            .arg(restored.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &out).unwrap();
        drop(tar.stdin.take());
        assert!(tar.wait().unwrap().success());
        let got = std::fs::read(restored.path().join("sparse")).unwrap();
        assert_eq!(got.len(), 64 << 20);
        assert_eq!(got, std::fs::read(data.path().join("sparse")).unwrap());
    }
}

#[test]
fn other_tars_run_without_the_sparse_option() {
    if !std::path::Path::new("/bin/busybox").exists() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), b"busybox tar").unwrap();
    let bin = bin_dir(&["cat"], &[]);
    std::os::unix::fs::symlink("/bin/busybox", bin.path().join("tar")).unwrap();
    let path = bin.path().display().to_string();
    for (code, out, err) in under_each_shell(&tar_command(), data.path(), &path) {
        assert_eq!(code, 0, "{err}");
        assert_eq!(parse_exit_marker(&err), Some(0), "{err}");
        assert!(out.windows(11).any(|w| w == b"busybox tar"));
    }
}

/// tar names the tenant's files on stderr (BusyBox tar without quoting them): what is kept of it
/// has no control character left but the line breaks between tar's own lines.
#[test]
fn stderr_lines_have_control_characters_escaped() {
    let stderr = "tar: can't open './evil\x1b[31m\rname': Permission denied\n\
                  tar: error exit delayed from previous errors\nnkvm-tar-exit=1\n";
    assert_eq!(
        without_marker(stderr),
        "tar: can't open './evil\\x1b[31m\\rname': Permission denied\n\
         tar: error exit delayed from previous errors"
    );
}
