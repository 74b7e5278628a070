//! The identity of a cluster connection recorded on every backup and restore run: the API server's
//! address (scheme, host, port and path; never user info or a query) and the SHA-256 fingerprint of
//! the certificate authority the client trusts for it. Both are public, stable while the cluster
//! keeps its address and CA, and differ between clusters; the web UI shows a session only the runs
//! of its connection's identity.

use sha2::{Digest, Sha256};

/// The identity of a connection to `url` trusting the DER certificates `root_certs` (`None`: the
/// system's trust roots), e.g. `https://10.0.0.1:6443 ca-sha256:3f9a…` (64 hex digits over the
/// concatenated certificates), or `https://k8s.example.com:443 ca:system`.
#[must_use]
pub fn connection_identity(url: &http::Uri, root_certs: Option<&[Vec<u8>]>) -> String {
    let scheme = url.scheme_str().unwrap_or("https");
    let host = url.host().unwrap_or_default().to_ascii_lowercase();
    let port = url
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    let path = url.path().trim_end_matches('/');
    let ca = match root_certs {
        Some(certs) if !certs.is_empty() => {
            let mut hasher = Sha256::new();
            for cert in certs {
                hasher.update(cert);
            }
            format!("ca-sha256:{}", hex::encode(hasher.finalize()))
        }
        _ => "ca:system".to_owned(),
    };
    format!("{scheme}://{host}:{port}{path} {ca}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> http::Uri {
        text.parse().unwrap()
    }

    #[test]
    fn the_identity_is_address_and_ca_fingerprint_without_user_info() {
        let ca = vec![vec![1_u8, 2, 3]];
        let id = connection_identity(&uri("https://admin:pw@API.example.com:6443/"), Some(&ca));
        assert!(
            id.starts_with("https://api.example.com:6443 ca-sha256:"),
            "{id}"
        );
        assert!(!id.contains("admin") && !id.contains("pw"), "{id}");
        assert_eq!(
            connection_identity(&uri("https://api.example.com:6443"), Some(&ca)),
            id
        );
        assert_eq!(
            connection_identity(&uri("https://k8s.example.com"), None),
            "https://k8s.example.com:443 ca:system"
        );
        assert_eq!(
            connection_identity(&uri("https://proxy:443/k8s/clusters/c-1/"), None),
            "https://proxy:443/k8s/clusters/c-1 ca:system"
        );
    }

    #[test]
    fn another_ca_or_address_is_another_identity() {
        let a = connection_identity(&uri("https://10.0.0.1:6443"), Some(&[vec![1]]));
        assert_ne!(
            a,
            connection_identity(&uri("https://10.0.0.1:6443"), Some(&[vec![2]]))
        );
        assert_ne!(
            a,
            connection_identity(&uri("https://10.0.0.2:6443"), Some(&[vec![1]]))
        );
    }
}
