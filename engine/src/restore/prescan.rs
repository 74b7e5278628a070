//! The restore pre-scan's safety rules, applied to every member of an archive before any byte of it
//! is written ([`Prescan::check`]), and the sample of members whose owner and mode are compared with
//! the restored volume afterwards ([`Sample`]). Pure; memory grows only with the number of symlinks
//! (one 64-bit hash each).
//!
//! Refused, each with a message naming the entry: absolute paths and `..` components (also in
//! hard-link targets), symlinks whose target leaves the volume (absolute, or more `..` than the
//! link is deep; allowed with [`Rules::allow_escaping_symlinks`]), any member written through or
//! over an earlier symlink of the archive (never produced by `tar -c`), device files, FIFOs and
//! unknown member types, and setuid/setgid bits on anything but a directory (allowed with
//! [`Rules::allow_setuid`]; setgid directories are the usual shared-group layout and always pass).

use std::collections::HashSet;
use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

use crate::backup::tarcheck::{Member, MemberKind};

/// What a restore may accept beyond the safe default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Restore setuid/setgid bits on files.
    pub allow_setuid: bool,
    /// Restore symlinks whose target points outside the volume (absolute targets included).
    pub allow_escaping_symlinks: bool,
}

/// Most symlinks tracked for the "written through a symlink" rule.
pub const MAX_TRACKED_SYMLINKS: usize = 4_000_000;

/// An entry the pre-scan refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe archive entry {path:?} (at byte {offset} of the tar stream): {reason}")]
pub struct Refusal {
    pub path: String,
    pub offset: u64,
    pub reason: String,
}

/// Members kept for the owner/mode spot check.
pub const SAMPLES: usize = 32;

/// A member whose owner and mode are compared with the restored volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Path relative to the volume root, as in the archive (`./dir/file`).
    pub path: String,
    pub directory: bool,
    pub uid: u64,
    pub gid: u64,
    /// `0o7777` bits.
    pub mode: u32,
}

/// Applies the rules to the members of one archive, in order.
#[derive(Debug)]
pub struct Prescan {
    rules: Rules,
    symlinks: HashSet<u64>,
    hasher: std::collections::hash_map::RandomState,
    seen: u64,
    samples: Vec<Sample>,
}

impl Prescan {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            symlinks: HashSet::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            seen: 0,
            samples: Vec::new(),
        }
    }

    /// The members kept for the spot check: the first files and directories, then ever sparser
    /// ones (the 32nd, 64th, 128th, … member), at most [`SAMPLES`].
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Checks the next member; a refusal names it and says why.
    pub fn check(&mut self, member: &Member) -> Result<(), Refusal> {
        let refuse = |reason: String| Refusal {
            path: member.path.clone(),
            offset: member.offset,
            reason,
        };
        let relative = relative_components(&member.path).map_err(refuse)?;
        if let Some(link) = self.through_symlink(&relative) {
            return Err(refuse(format!(
                "it would be written through or over the symlink {link:?} of the same archive"
            )));
        }
        match member.kind {
            MemberKind::File | MemberKind::Directory => {}
            MemberKind::HardLink => {
                let target = relative_components(&member.link).map_err(|reason| {
                    refuse(format!("hard link to {:?}: {reason}", member.link))
                })?;
                if let Some(link) = self.through_symlink(&target) {
                    return Err(refuse(format!(
                        "hard link to {:?}, which lies through the symlink {link:?}",
                        member.link
                    )));
                }
            }
            MemberKind::Symlink => {
                if !self.rules.allow_escaping_symlinks
                    && let Some(why) = symlink_escapes(&relative, &member.link)
                {
                    return Err(refuse(format!(
                        "symlink to {:?} {why}; restore it only if you trust the archive \
                         (--allow-escaping-symlinks)",
                        member.link
                    )));
                }
                if self.symlinks.len() >= MAX_TRACKED_SYMLINKS {
                    return Err(refuse(format!(
                        "the archive holds more than {MAX_TRACKED_SYMLINKS} symlinks, more than \
                         the pre-scan tracks; restore it by hand (see the restore procedure)"
                    )));
                }
                let key = self.key(&relative);
                self.symlinks.insert(key);
            }
            MemberKind::CharDevice | MemberKind::BlockDevice => {
                return Err(refuse(
                    "is a device file; nkvm never creates device nodes in a volume".to_owned(),
                ));
            }
            MemberKind::Fifo => {
                return Err(refuse(
                    "is a FIFO (named pipe); nkvm does not restore FIFOs: recreate it with mkfifo \
                     after the restore if the application needs it"
                        .to_owned(),
                ));
            }
            MemberKind::Other(flag) => {
                return Err(refuse(format!(
                    "has the unsupported tar member type {:?}",
                    char::from(flag)
                )));
            }
        }
        if member.kind != MemberKind::Directory
            && member.mode & 0o6000 != 0
            && !self.rules.allow_setuid
        {
            let bits = match member.mode & 0o6000 {
                0o4000 => "setuid",
                0o2000 => "setgid",
                _ => "setuid and setgid",
            };
            return Err(refuse(format!(
                "is {bits} (mode {:04o}); restore such files only if you trust the archive \
                 (--allow-setuid)",
                member.mode
            )));
        }
        self.sample(member);
        Ok(())
    }

    fn sample(&mut self, member: &Member) {
        self.seen += 1;
        let wanted = matches!(member.kind, MemberKind::File | MemberKind::Directory)
            && (self.samples.len() < SAMPLES / 2
                || (self.seen.is_power_of_two() && self.samples.len() < SAMPLES));
        if wanted {
            self.samples.push(Sample {
                path: member.path.clone(),
                directory: member.kind == MemberKind::Directory,
                uid: member.uid,
                gid: member.gid,
                mode: member.mode,
            });
        }
    }

    fn key(&self, components: &[&str]) -> u64 {
        self.hasher.hash_one(components)
    }

    /// The first prefix of `components` (the path itself included) that is an earlier symlink.
    fn through_symlink(&self, components: &[&str]) -> Option<String> {
        if self.symlinks.is_empty() {
            return None;
        }
        (1..=components.len())
            .find(|n| self.symlinks.contains(&self.key(&components[..*n])))
            .map(|n| format!("./{}", components[..n].join("/")))
    }
}

/// The components of a member path below the volume root (`./a/b/` → `[a, b]`), or why the path
/// leaves it.
fn relative_components(path: &str) -> Result<Vec<&str>, String> {
    if path.starts_with('/') {
        return Err("is an absolute path (it would be written outside the volume)".to_owned());
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains a `..` component".to_owned()),
            other => parts.push(other),
        }
    }
    Ok(parts)
}

/// Why a symlink at `location` pointing to `target` leaves the volume, if it does.
fn symlink_escapes(location: &[&str], target: &str) -> Option<&'static str> {
    if target.starts_with('/') {
        return Some("is absolute, so it points outside the volume");
    }
    // The link resolves relative to its own directory.
    let mut depth = location.len().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Some("climbs above the volume root");
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(path: &str, kind: MemberKind, mode: u32, link: &str) -> Member {
        Member {
            offset: 1024,
            path: path.to_owned(),
            kind,
            mode,
            uid: 1000,
            gid: 1000,
            size: 0,
            link: link.to_owned(),
        }
    }

    fn file(path: &str) -> Member {
        member(path, MemberKind::File, 0o644, "")
    }

    fn symlink(path: &str, target: &str) -> Member {
        member(path, MemberKind::Symlink, 0o777, target)
    }

    /// One rule per row: the entry, the rules, and `None` (accepted) or a text the refusal holds.
    #[test]
    fn rules_table() {
        let strict = Rules::default();
        let lenient = Rules {
            allow_setuid: true,
            allow_escaping_symlinks: true,
        };
        let cases: Vec<(Member, Rules, Option<&str>)> = vec![
            (file("./a/b.txt"), strict, None),
            (member("./", MemberKind::Directory, 0o755, ""), strict, None),
            (file("/etc/x"), lenient, Some("absolute path")),
            (file("./../x"), lenient, Some("`..`")),
            (file("./a/../../x"), lenient, Some("`..`")),
            (symlink("./l", "/"), strict, Some("is absolute")),
            (symlink("./l", "/"), lenient, None),
            (symlink("./a/l", "../../etc"), strict, Some("climbs above")),
            (symlink("./a/l", "../b"), strict, None),
            (symlink("./l", "a/./../b"), strict, None),
            (symlink("./l", ".."), strict, Some("climbs above")),
            (
                member("./h", MemberKind::HardLink, 0o644, "/etc/shadow"),
                lenient,
                Some("hard link"),
            ),
            (
                member("./h", MemberKind::HardLink, 0o644, "./x/../../y"),
                lenient,
                Some("`..`"),
            ),
            (
                member("./h", MemberKind::HardLink, 0o644, "./a/b.txt"),
                strict,
                None,
            ),
            (
                member("./dev/null", MemberKind::CharDevice, 0o666, ""),
                lenient,
                Some("device file"),
            ),
            (
                member("./sda", MemberKind::BlockDevice, 0o660, ""),
                lenient,
                Some("device file"),
            ),
            (
                member("./pipe", MemberKind::Fifo, 0o644, ""),
                lenient,
                Some("FIFO"),
            ),
            (
                member("./v", MemberKind::Other(b'V'), 0o644, ""),
                lenient,
                Some("unsupported tar member type 'V'"),
            ),
            (
                member("./suid", MemberKind::File, 0o4755, ""),
                strict,
                Some("is setuid (mode 4755)"),
            ),
            (
                member("./sgid", MemberKind::File, 0o2755, ""),
                strict,
                Some("is setgid"),
            ),
            (
                member("./both", MemberKind::File, 0o6755, ""),
                strict,
                Some("setuid and setgid"),
            ),
            (
                member("./suid", MemberKind::File, 0o4755, ""),
                lenient,
                None,
            ),
            (
                member("./shared", MemberKind::Directory, 0o2775, ""),
                strict,
                None,
            ),
        ];
        for (entry, rules, expected) in cases {
            let got = Prescan::new(rules).check(&entry);
            match (expected, got) {
                (None, Ok(())) => {}
                (Some(text), Err(refusal)) => {
                    let message = refusal.to_string();
                    assert!(message.contains(text), "{entry:?}: {message}");
                    assert!(message.contains(&format!("{:?}", entry.path)), "{message}");
                }
                (expected, got) => {
                    panic!("{entry:?} with {rules:?}: {got:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn nothing_is_written_through_an_earlier_symlink() {
        let mut scan = Prescan::new(Rules {
            allow_escaping_symlinks: true,
            ..Rules::default()
        });
        scan.check(&symlink("./etc", "/etc")).unwrap();
        scan.check(&file("./etcetera")).unwrap();
        let err = scan.check(&file("./etc/passwd")).unwrap_err();
        assert!(
            err.reason.contains("through or over the symlink \"./etc\""),
            "{err}"
        );
        let err = scan
            .check(&member("./etc/", MemberKind::Directory, 0o755, ""))
            .unwrap_err();
        assert!(err.reason.contains("./etc"), "{err}");
        let err = scan
            .check(&member("./h", MemberKind::HardLink, 0o644, "./etc/shadow"))
            .unwrap_err();
        assert!(err.reason.contains("through the symlink"), "{err}");
        // A chain: an in-volume link to `.` then a relative link that looks harmless from its
        // lexical place.
        let mut chain = Prescan::new(Rules::default());
        chain.check(&symlink("./a", ".")).unwrap();
        assert!(chain.check(&symlink("./a/b", "../c")).is_err());
    }

    #[test]
    fn samples_are_the_first_and_then_sparser_members() {
        let mut scan = Prescan::new(Rules::default());
        for i in 0..10_000 {
            scan.check(&file(&format!("./f{i}"))).unwrap();
        }
        let paths: Vec<&str> = scan.samples().iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths.len(), 16 + 9, "{paths:?}");
        assert_eq!(paths[0], "./f0");
        assert_eq!(paths[15], "./f15");
        assert_eq!(
            &paths[16..],
            [
                "./f31", "./f63", "./f127", "./f255", "./f511", "./f1023", "./f2047", "./f4095",
                "./f8191"
            ]
        );
        assert!(scan.samples().len() <= SAMPLES);
        let mut few = Prescan::new(Rules::default());
        few.check(&symlink("./l", "x")).unwrap();
        assert!(few.samples().is_empty(), "symlinks are not sampled");
    }
}
