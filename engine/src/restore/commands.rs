//! The commands a restore runs in its helper, as pure functions (argv vectors, no shell
//! interpolation of data): GNU tar extracting stdin with numeric owners and modes kept, clearing
//! the volume for `--wipe`, and the owner/mode spot check of sampled members, with the parsing of
//! their output.

use super::prescan::Sample;
use crate::backup::exec::EXIT_MARKER;
use crate::backup::pod::MOUNT_PATH;

/// Finds GNU tar in `$PATH` and runs it by its path (BusyBox shells prefer their own `tar`
/// applet), refusing any other tar: only GNU tar restores numeric owners, modes and sparse files
/// as the archive says.
fn gnu_tar_prelude() -> String {
    format!(
        "t=tar; o=$IFS; IFS=:; for d in $PATH; do if [ -x \"$d/tar\" ]; then t=\"$d/tar\"; break; \
         fi; done; IFS=$o; case \"$(\"$t\" --version 2>/dev/null)\" in *'GNU tar'*) ;; *) echo \
         \"nkvm: $t is not GNU tar; use a helper image with GNU tar\" >&2; echo \
         \"{EXIT_MARKER}127\" >&2; exit 127;; esac; "
    )
}

/// `tar -xpf - --numeric-owner --same-owner -C /data` reading the archive from stdin: owners by
/// number, modes (setuid/setgid/sticky included) and times as in the archive, existing files
/// replaced by the archive's, others left alone (a merge). The shell reports tar's exit code on
/// stderr (after `EXIT_MARKER`) before exiting with it.
pub fn extract_command() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "{}\"$t\" -xpf - --numeric-owner --same-owner -C {MOUNT_PATH}; rc=$?; echo \
             \"{EXIT_MARKER}$rc\" >&2; exit $rc",
            gnu_tar_prelude()
        ),
    ]
}

/// Printed by [`wipe_command`] when everything but `lost+found` is gone.
pub const WIPE_DONE: &str = "nkvm-wipe-done";

/// Removes everything in the volume but a top-level `lost+found` (kept for the filesystem's own
/// checks), then prints [`WIPE_DONE`].
pub fn wipe_command() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "cd {MOUNT_PATH} || exit 1; for f in * .[!.]* ..?*; do if [ ! -e \"$f\" ] && [ ! -L \
             \"$f\" ]; then continue; fi; if [ \"$f\" = lost+found ]; then continue; fi; rm -rf \
             -- \"$f\" || exit 1; done; echo {WIPE_DONE}"
        ),
    ]
}

/// One line per path given: `<uid> <gid> <octal mode>` of the path (not following symlinks), or
/// `missing`.
pub fn spot_check_command(samples: &[Sample]) -> Vec<String> {
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "cd {MOUNT_PATH} || exit 1; for f in \"$@\"; do stat -c '%u %g %a' -- \"$f\" \
             2>/dev/null || echo missing; done"
        ),
        "sh".to_owned(),
    ];
    command.extend(samples.iter().map(|s| s.path.clone()));
    command
}

/// What the spot check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotCheck {
    pub checked: usize,
    /// One line per entry whose owner or mode differs from the archive.
    pub differences: Vec<String>,
}

impl SpotCheck {
    /// `owner and mode of 25 sampled entries match the archive`, or the differences.
    pub fn summary(&self) -> String {
        if self.differences.is_empty() {
            format!(
                "owner and mode of {} sampled entries match the archive",
                self.checked
            )
        } else {
            format!(
                "owner or mode of {} of {} sampled entries differ from the archive: {}",
                self.differences.len(),
                self.checked,
                self.differences.join("; ")
            )
        }
    }
}

/// Compares the spot check's output with the samples, line by line.
pub fn judge_spot_check(samples: &[Sample], output: &str) -> SpotCheck {
    let lines: Vec<&str> = output.lines().collect();
    let mut differences = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let expected = format!("{}:{} {:o}", sample.uid, sample.gid, sample.mode);
        let got = lines.get(i).map_or("no answer", |l| l.trim());
        let parsed = got.split_whitespace().collect::<Vec<_>>();
        let matches = match parsed.as_slice() {
            [uid, gid, mode] => {
                uid.parse::<u64>().ok() == Some(sample.uid)
                    && gid.parse::<u64>().ok() == Some(sample.gid)
                    && u32::from_str_radix(mode, 8).ok() == Some(sample.mode)
            }
            _ => false,
        };
        if !matches {
            let got = match parsed.as_slice() {
                [uid, gid, mode] => format!("{uid}:{gid} {mode}"),
                _ => got.to_owned(),
            };
            differences.push(format!(
                "{:?} is {got}, the archive says {expected}",
                sample.path
            ));
        }
    }
    SpotCheck {
        checked: samples.len(),
        differences,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn sample(path: &str, uid: u64, gid: u64, mode: u32) -> Sample {
        Sample {
            path: path.to_owned(),
            directory: false,
            uid,
            gid,
            mode,
        }
    }

    #[test]
    fn the_spot_check_compares_owner_and_mode_line_by_line() {
        let samples = [
            sample("./", 0, 0, 0o755),
            sample("./a", 1000, 1000, 0o600),
            sample("./b c", 0, 2000, 0o2775),
            sample("./gone", 0, 0, 0o644),
        ];
        let output = "0 0 755\n1000 1000 644\n0 2000 2775\nmissing\n";
        let check = judge_spot_check(&samples, output);
        assert_eq!(check.checked, 4);
        assert_eq!(
            check.differences,
            [
                "\"./a\" is 1000:1000 644, the archive says 1000:1000 600",
                "\"./gone\" is missing, the archive says 0:0 644"
            ]
        );
        assert!(check.summary().starts_with("owner or mode of 2 of 4"));
        let ok = judge_spot_check(&samples[..1], "0 0 755\n");
        assert_eq!(
            ok.summary(),
            "owner and mode of 1 sampled entries match the archive"
        );
    }

    /// The commands run with the system's shell and GNU tar against a directory standing in for
    /// the volume (the paths are rewritten from /data).
    fn local(
        command: &[String],
        dir: &std::path::Path,
        stdin: Option<&[u8]>,
    ) -> (i32, String, String) {
        use std::io::Write;
        let script = command[2].replace(MOUNT_PATH, &dir.display().to_string());
        let mut child = Command::new(&command[0])
            .arg(&command[1])
            .arg(script)
            .args(&command[3..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn extract_wipe_and_spot_check_work_with_gnu_tar() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("d")).unwrap();
        std::fs::write(source.path().join("d/f"), b"data").unwrap();
        std::fs::set_permissions(
            source.path().join("d/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        let tar = Command::new("tar")
            .args(["-cf", "-", "-C"])
            .arg(source.path())
            .arg(".")
            .output()
            .unwrap()
            .stdout;
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join("old"), b"old").unwrap();
        std::fs::write(target.path().join(".hidden"), b"h").unwrap();
        std::fs::create_dir(target.path().join("lost+found")).unwrap();

        let (code, _, stderr) = local(&extract_command(), target.path(), Some(&tar));
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains(&format!("{EXIT_MARKER}0")), "{stderr}");
        assert_eq!(std::fs::read(target.path().join("d/f")).unwrap(), b"data");
        assert!(
            target.path().join("old").exists(),
            "a merge keeps other files"
        );

        let (code, stdout, _) = local(&wipe_command(), target.path(), None);
        assert_eq!(code, 0);
        assert_eq!(stdout.trim(), WIPE_DONE);
        let left: Vec<String> = std::fs::read_dir(target.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["lost+found"]);

        let (code, _, _) = local(&extract_command(), target.path(), Some(&tar));
        assert_eq!(code, 0);
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let samples = [
            sample("./d/f", u64::from(me.0), u64::from(me.1), 0o640),
            sample("./nope", 0, 0, 0o644),
        ];
        let (code, stdout, _) = local(&spot_check_command(&samples), target.path(), None);
        assert_eq!(code, 0);
        let check = judge_spot_check(&samples, &stdout);
        assert_eq!(check.differences.len(), 1, "{check:?}");
        assert!(check.differences[0].contains("./nope"));

        let (code, _, stderr) = local(&extract_command(), target.path(), Some(b"not a tar"));
        assert_ne!(code, 0);
        assert!(stderr.contains(EXIT_MARKER), "{stderr}");
    }
}
