//! Pinned SSH host keys: an OpenSSH `known_hosts` file (plain and hashed host names, `[host]:port`,
//! `*`/`?` wildcards, `!` negation, `@revoked`) and the verdict for the key a server presents.
//! There is no trust on first use: an unknown host is refused like a changed key.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use russh::keys::{Algorithm, HashAlg, PublicKey};

/// The parsed entries of a `known_hosts` file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    revoked: bool,
    patterns: Vec<String>,
    key: PublicKey,
}

/// Whether a presented host key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// An entry for this host holds exactly this key.
    Trusted,
    /// The key is marked `@revoked` (line number given).
    Revoked { line: usize },
    /// Entries exist for this host, none with this key: the key changed, or a man in the middle.
    Mismatch { known: Vec<String> },
    /// No entry for this host.
    Unknown,
}

impl KnownHosts {
    /// Reads a `known_hosts` file. Lines that cannot be parsed are skipped (as OpenSSH does);
    /// `@cert-authority` lines are ignored (host certificates are not supported).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read known_hosts_file {}: {e}: create it with the server's key, checked \
                 out of band (`ssh-keyscan -p PORT HOST`, then compare the fingerprint with \
                 `ssh-keygen -lf` on the server)",
                path.display()
            )
        })?;
        Ok(Self::parse(&text))
    }

    /// Parses the text of a `known_hosts` file.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut revoked = false;
            if let Some(marker) = first.strip_prefix('@') {
                match marker {
                    "revoked" => revoked = true,
                    _ => continue,
                }
                first = fields.next().unwrap_or_default();
            }
            let (Some(algorithm), Some(blob)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(key) = PublicKey::from_openssh(&format!("{algorithm} {blob}")) else {
                continue;
            };
            entries.push(Entry {
                line: index + 1,
                revoked,
                patterns: first.split(',').map(str::to_owned).collect(),
                key,
            });
        }
        Self { entries }
    }

    /// The verdict for `key` presented by `host:port`.
    #[must_use]
    pub fn verify(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyVerdict {
        let name = lookup_name(host, port);
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| host_matches(&name, &e.patterns))
            .collect();
        if let Some(revoked) = matching.iter().find(|e| e.revoked && same_key(&e.key, key)) {
            return HostKeyVerdict::Revoked { line: revoked.line };
        }
        if matching.iter().any(|e| !e.revoked && same_key(&e.key, key)) {
            return HostKeyVerdict::Trusted;
        }
        let known: Vec<String> = matching
            .iter()
            .filter(|e| !e.revoked)
            .map(|e| format!("{} (line {})", fingerprint(&e.key), e.line))
            .collect();
        if known.is_empty() {
            HostKeyVerdict::Unknown
        } else {
            HostKeyVerdict::Mismatch { known }
        }
    }

    /// The key algorithms pinned for `host:port`, to ask the server for one of those.
    #[must_use]
    pub fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut algorithms = Vec::new();
        for entry in &self.entries {
            if !entry.revoked && host_matches(&name, &entry.patterns) {
                let algorithm = entry.key.algorithm();
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }
}

/// `SHA256:…` fingerprint with the key type, as `ssh-keygen -lf` prints it.
#[must_use]
pub fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise; lower case.
fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether `name` matches a comma-separated pattern list: any positive match and no negated one.
fn host_matches(name: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for pattern in patterns {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(&negated.to_ascii_lowercase(), name) {
                return false;
            }
        } else if let Some(hashed) = pattern.strip_prefix("|1|") {
            matched |= hashed_match(hashed, name);
        } else {
            matched |= wildcard_match(&pattern.to_ascii_lowercase(), name);
        }
    }
    matched
}

/// `|1|salt|hash`: base64 HMAC-SHA1 of the name keyed with the salt.
fn hashed_match(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// `*` (any run) and `?` (any one character) wildcards; everything else literal.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((star_p, star_n)) = star {
            pi = star_p + 1;
            ni = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two throwaway ed25519 public keys (never used anywhere else).
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvV3Z762bju2WPvDLU+4IGBWUKD+Efh7ZCcKtCuDmiK";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzCIjToe5uANeFS7/2HFKgsqaKrhAQsYJ+97DD7ieKO";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let hmac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt),
            name.as_bytes(),
        );
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(hmac.as_ref())
        )
    }

    /// Checks `hosts.verify(host, port, key)` for each case.
    fn verdicts(hosts: &KnownHosts, cases: &[(&str, u16, &str, HostKeyVerdict)]) {
        for (host, port, k, want) in cases {
            assert_eq!(&hosts.verify(host, *port, &key(k)), want, "{host}:{port}");
        }
    }

    #[test]
    fn plain_entries_and_ports() {
        let hosts = KnownHosts::parse(&format!(
            "# comment\n\nnas.example,10.0.0.5 {KEY_A}\n[nas.example]:2222 {KEY_B}\n"
        ));
        verdicts(
            &hosts,
            &[
                ("nas.example", 22, KEY_A, HostKeyVerdict::Trusted),
                ("NAS.example", 22, KEY_A, HostKeyVerdict::Trusted),
                ("10.0.0.5", 22, KEY_A, HostKeyVerdict::Trusted),
                ("nas.example", 2222, KEY_B, HostKeyVerdict::Trusted),
                ("other", 22, KEY_A, HostKeyVerdict::Unknown),
                ("nas.example", 2200, KEY_B, HostKeyVerdict::Unknown),
            ],
        );
        assert!(matches!(
            hosts.verify("nas.example", 2222, &key(KEY_A)),
            HostKeyVerdict::Mismatch { known } if known.len() == 1 && known[0].contains("line 4")
        ));
        assert_eq!(
            hosts.algorithms_for("nas.example", 22),
            vec![Algorithm::Ed25519]
        );
    }

    #[test]
    fn hashed_entries() {
        let text = format!(
            "{} {KEY_A}\n{} {KEY_B}\n",
            hashed("[127.0.0.1]:2022", b"0123456789abcdefghij"),
            hashed("nas.example", b"saltsaltsaltsaltsalt")
        );
        let hosts = KnownHosts::parse(&text);
        verdicts(
            &hosts,
            &[
                ("127.0.0.1", 2022, KEY_A, HostKeyVerdict::Trusted),
                ("nas.example", 22, KEY_B, HostKeyVerdict::Trusted),
                ("127.0.0.1", 22, KEY_A, HostKeyVerdict::Unknown),
            ],
        );
        assert!(matches!(
            hosts.verify("127.0.0.1", 2022, &key(KEY_B)),
            HostKeyVerdict::Mismatch { .. }
        ));
    }

    #[test]
    fn wildcards_negation_revocation_and_garbage() {
        let text = format!(
            "*.example,!evil.example {KEY_A}\n@revoked * {KEY_B}\n@cert-authority *.example {KEY_B}\n\
             broken line\nhost ssh-ed25519 not-base64!\n"
        );
        let hosts = KnownHosts::parse(&text);
        verdicts(
            &hosts,
            &[
                ("nas.example", 22, KEY_A, HostKeyVerdict::Trusted),
                ("evil.example", 22, KEY_A, HostKeyVerdict::Unknown),
                (
                    "nas.example",
                    22,
                    KEY_B,
                    HostKeyVerdict::Revoked { line: 2 },
                ),
            ],
        );
        assert!(wildcard_match("n?s*", "nas.example"));
        assert!(!wildcard_match("n?s", "nas.example"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn fingerprints_look_like_ssh_keygen() {
        let printed = fingerprint(&key(KEY_A));
        assert!(printed.starts_with("ssh-ed25519 SHA256:"), "{printed}");
    }
}
