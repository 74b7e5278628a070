//! What a pasted kubeconfig may point at, beyond the fields refused always
//! ([`super::validate_pasted_kubeconfig`]): `proxy-url` and `insecure-skip-tls-verify` are refused
//! unless the server opts in, and an optional allowlist confines the API server addresses. A
//! pasted kubeconfig is an admin's, but its server address is chosen freely: without these, the
//! server could be pointed through a proxy of the paster's choice, at a server whose certificate
//! is not checked, or at any address its network reaches.

use kube::config::Kubeconfig;

/// The server's rules for pasted kubeconfigs (`nkvm serve --pasted-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PastedPolicy {
    /// Accept clusters with `proxy-url`.
    pub allow_proxy_url: bool,
    /// Accept clusters with `insecure-skip-tls-verify: true`.
    pub allow_insecure_tls: bool,
    /// API servers pasted kubeconfigs may name: `host` (any port) or `host:port`, lowercase;
    /// empty: any.
    pub api_servers: Vec<String>,
}

/// Why a pasted kubeconfig breaks the server's [`PastedPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the pasted kubeconfig's cluster {entry:?} sets `proxy-url`, which this server refuses \
         (its API traffic would go through a proxy of the kubeconfig's choice); remove it, or \
         start nkvm with --pasted-allow-proxy-url"
    )]
    ProxyUrl { entry: String },
    #[error(
        "the pasted kubeconfig's cluster {entry:?} sets `insecure-skip-tls-verify`, which this \
         server refuses (the API server's certificate would not be checked); paste its \
         certificate-authority-data instead, or start nkvm with --pasted-allow-insecure-tls"
    )]
    InsecureTls { entry: String },
    #[error(
        "the pasted kubeconfig's cluster {entry:?} names an API server this server may not \
         connect to (allowed: {allowed})"
    )]
    ServerNotAllowed { entry: String, allowed: String },
}

/// The lowercase `host` and port of an API server URL (`https://h:6443` → `("h", 6443)`; the
/// scheme's port when none is given).
fn host_port(server: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(server).ok()?;
    let host = url
        .host_str()?
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    Some((host, url.port_or_known_default()?))
}

impl PastedPolicy {
    /// Checks every cluster entry of `kubeconfig` (used or not).
    ///
    /// # Errors
    /// The first entry that breaks the policy.
    pub fn check(&self, kubeconfig: &Kubeconfig) -> Result<(), PolicyError> {
        for named in &kubeconfig.clusters {
            let Some(cluster) = &named.cluster else {
                continue;
            };
            let entry = || named.name.clone();
            if cluster.proxy_url.is_some() && !self.allow_proxy_url {
                return Err(PolicyError::ProxyUrl { entry: entry() });
            }
            if cluster.insecure_skip_tls_verify == Some(true) && !self.allow_insecure_tls {
                return Err(PolicyError::InsecureTls { entry: entry() });
            }
            if !self.api_servers.is_empty() {
                let allowed =
                    cluster
                        .server
                        .as_deref()
                        .and_then(host_port)
                        .is_some_and(|(host, port)| {
                            self.api_servers.iter().any(|pattern| {
                                match pattern.rsplit_once(':').filter(|(h, _)| !h.contains(':')) {
                                    Some((h, p)) => *h == host && p.parse() == Ok(port),
                                    None => pattern.trim_matches(['[', ']']) == host,
                                }
                            })
                        });
                if !allowed {
                    return Err(PolicyError::ServerNotAllowed {
                        entry: entry(),
                        allowed: self.api_servers.join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(cluster: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(&format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n{cluster}\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn proxy_url_and_insecure_tls_are_refused_unless_allowed() {
        let proxied =
            kubeconfig("    server: https://k.example:6443\n    proxy-url: http://p:3128");
        let insecure =
            kubeconfig("    server: https://k.example:6443\n    insecure-skip-tls-verify: true");
        let strict = PastedPolicy::default();
        let err = strict.check(&proxied).unwrap_err();
        assert!(
            err.to_string().contains("--pasted-allow-proxy-url"),
            "{err}"
        );
        let err = strict.check(&insecure).unwrap_err();
        assert!(
            err.to_string().contains("--pasted-allow-insecure-tls"),
            "{err}"
        );
        let lax = PastedPolicy {
            allow_proxy_url: true,
            allow_insecure_tls: true,
            api_servers: Vec::new(),
        };
        assert_eq!(lax.check(&proxied), Ok(()));
        assert_eq!(lax.check(&insecure), Ok(()));
        assert_eq!(
            strict.check(&kubeconfig("    server: https://k.example:6443")),
            Ok(())
        );
    }

    #[test]
    fn the_server_allowlist_matches_host_and_port() {
        let policy = PastedPolicy {
            api_servers: vec!["k.example:6443".to_owned(), "10.0.0.1".to_owned()],
            ..PastedPolicy::default()
        };
        for ok in [
            "https://K.example:6443",
            "https://10.0.0.1:6443",
            "https://10.0.0.1",
        ] {
            assert_eq!(
                policy.check(&kubeconfig(&format!("    server: {ok}"))),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "https://k.example:443",
            "https://k.example",
            "https://127.0.0.1:6443",
            "https://k.example.evil:6443",
        ] {
            assert!(
                matches!(
                    policy.check(&kubeconfig(&format!("    server: {bad}"))),
                    Err(PolicyError::ServerNotAllowed { .. })
                ),
                "{bad}"
            );
        }
    }
}
