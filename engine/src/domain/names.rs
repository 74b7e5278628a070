//! Kubernetes names as users type them: a namespace (a DNS-1123 label), a PVC name (a DNS-1123
//! subdomain) and a PVC as `NAMESPACE/NAME` ([`PvcRef`]), with one wording for every refusal (the
//! CLI, the web UI and the engine all validate through here).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest DNS-1123 label (a namespace name).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain (a PVC name).
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// Why a namespace or PVC name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("expected NAMESPACE/PVC (for example `shop/web-data`), got {0:?}")]
    NotNamespaced(String),
    #[error(
        "invalid namespace {0:?}: a namespace is at most 63 characters of lowercase letters, digits \
         and `-`, starting and ending with a letter or digit"
    )]
    Namespace(String),
    #[error(
        "invalid PVC name {0:?}: a PVC name is at most 253 characters of lowercase letters, digits, \
         `-` and `.`, each dot-separated part starting and ending with a letter or digit"
    )]
    Pvc(String),
}

/// True when `name` is a DNS-1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// True when `name` is a DNS-1123 subdomain: at most 253 characters, dot-separated labels of
/// `[a-z0-9-]`, each alphanumeric at both ends (Kubernetes does not cap each part at 63 here).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SUBDOMAIN_LEN
        && name.split('.').all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// Checks a namespace name.
///
/// # Errors
/// [`NameError::Namespace`] when `name` is not a DNS-1123 label.
pub fn check_namespace(name: &str) -> Result<(), NameError> {
    if is_dns1123_label(name) {
        Ok(())
    } else {
        Err(NameError::Namespace(name.to_owned()))
    }
}

/// A PVC named as `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PvcRef {
    pub namespace: String,
    pub name: String,
}

impl PvcRef {
    /// A reference from parts that are already valid (names read from the API or the history).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses and validates `NAMESPACE/NAME` (no surrounding spaces, exactly one `/`).
    ///
    /// # Errors
    /// A [`NameError`] naming the part that is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(NameError::NotNamespaced(text.to_owned()));
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(NameError::NotNamespaced(text.to_owned()));
        }
        check_namespace(namespace)?;
        if !is_dns1123_subdomain(name) {
            return Err(NameError::Pvc(name.to_owned()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl FromStr for PvcRef {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for PvcRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_references() {
        let r = PvcRef::parse("shop/web-data").unwrap();
        assert_eq!(r.namespace, "shop");
        assert_eq!(r.name, "web-data");
        assert_eq!(r.to_string(), "shop/web-data");
        let dotted: PvcRef = "kube-system/data.db-0".parse().unwrap();
        assert_eq!(dotted.name, "data.db-0");
        let long_ns = "a".repeat(63);
        assert!(PvcRef::parse(&format!("{long_ns}/{}", "b".repeat(253))).is_ok());
        assert!(PvcRef::parse("0/9").is_ok());
    }

    #[test]
    fn refuses_missing_or_extra_parts() {
        for text in ["web-data", "/web-data", "shop/", "/", "", "a/b/c"] {
            assert_eq!(
                PvcRef::parse(text),
                Err(NameError::NotNamespaced(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_namespaces() {
        let long = "a".repeat(64);
        for ns in [
            "Shop",
            "-shop",
            "shop-",
            "sh.op",
            "sh_op",
            " shop",
            long.as_str(),
        ] {
            assert_eq!(
                PvcRef::parse(&format!("{ns}/data")),
                Err(NameError::Namespace(ns.to_owned())),
                "{ns:?}"
            );
        }
        assert!(check_namespace("shop").is_ok());
        assert!(check_namespace("").is_err());
    }

    #[test]
    fn refuses_bad_pvc_names() {
        let long = "a".repeat(254);
        for name in [
            "Data",
            "-data",
            "data-",
            ".data",
            "data.",
            "a..b",
            "a.-b",
            "da ta",
            "dätä",
            long.as_str(),
        ] {
            assert_eq!(
                PvcRef::parse(&format!("shop/{name}")),
                Err(NameError::Pvc(name.to_owned())),
                "{name:?}"
            );
        }
    }

    #[test]
    fn errors_say_what_is_expected() {
        let message = PvcRef::parse("shop").unwrap_err().to_string();
        assert!(message.contains("NAMESPACE/PVC"), "{message}");
        let message = PvcRef::parse("Shop/x").unwrap_err().to_string();
        assert!(message.contains("63 characters"), "{message}");
    }
}
