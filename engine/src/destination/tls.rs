//! TLS client settings of the S3 and FTPS destinations: trusted roots from `ca_file` (PEM) or the
//! system's, ring as the crypto provider, and recognition of certificate failures.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// A client configuration trusting the CAs of `ca_file`, or the system's roots without one.
/// One configuration per destination: it also holds the TLS session cache that FTPS data
/// connections resume the control connection's session from.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ca_file {} is not a PEM bundle: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
                path.display()
            ));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                format!("ca_file {}: a certificate is invalid: {e}", path.display())
            })?;
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A malformed system certificate is skipped, as other clients do.
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rustls error somewhere in an error's chain (io errors wrap it without exposing it as a
/// source).
pub(crate) fn find_tls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// What to do when the server's certificate was refused.
pub(crate) fn certificate_advice(error: &rustls::Error, ca_file: Option<&Path>) -> String {
    let trust = match ca_file {
        Some(path) => format!(
            "check that ca_file {} holds the CA that signed the server's certificate",
            path.display()
        ),
        None => "set ca_file to the CA bundle that signed the server's certificate (the system's \
                 roots do not trust it)"
            .to_owned(),
    };
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Expired) => {
            "the server's certificate has expired: renew it on the server".to_owned()
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate does not name this host: use the host name the \
              certificate was issued for, or reissue it"
            .to_owned(),
        rustls::Error::InvalidCertificate(_) => format!("certificate refused ({error}): {trust}"),
        _ => format!("TLS handshake failed ({error})"),
    }
}

/// Whether a TLS error is about the server's identity (never retried).
pub(crate) fn is_certificate_error(error: &rustls::Error) -> bool {
    matches!(error, rustls::Error::InvalidCertificate(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        let e = client_config(Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(e.contains("cannot read ca_file"), "{e}");
        client_config(None).unwrap();
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let found = find_tls_error(&io).unwrap();
        assert!(is_certificate_error(found));
        let advice = certificate_advice(found, None);
        assert!(advice.contains("set ca_file"), "{advice}");
        let plain = std::io::Error::other("reset");
        assert!(find_tls_error(&plain).is_none());
    }
}
