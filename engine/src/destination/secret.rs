//! Secrets referenced by a destination (`*_env` / `*_file`): resolved when a connection needs them,
//! held in a type whose `Debug` and `Display` never show the value.

use std::fmt;
use std::path::PathBuf;

/// Where a secret comes from. Never the value itself: configurations hold references only.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the nkvm process.
    Env(String),
    /// A file (for example a Kubernetes Secret mounted as a volume); one trailing newline is
    /// dropped, so `echo secret > file` works.
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

/// A secret value. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] gives the
/// value, at the place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one call that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SecretRef {
    /// Reads the secret. The error says which reference failed and what to do, never a value.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            Self::Env(name) => match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!(
                        "environment variable {name} is not set: set it in nkvm's environment \
                         (for example from a Kubernetes Secret with `env.valueFrom.secretKeyRef`)"
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("environment variable {name} is not valid UTF-8"));
                }
            },
            Self::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(error) => {
                    return Err(format!(
                        "cannot read the secret file {}: {error}: check the path and that nkvm's \
                         user may read it (a Secret mounted as a volume)",
                        path.display()
                    ));
                }
            },
        };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(&value)
            .to_owned();
        if value.is_empty() {
            return Err(format!("the {self} is empty"));
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret("hunter2-very-secret".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2-very-secret");
    }

    #[test]
    fn file_secrets_drop_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n").unwrap();
        let value = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(value.expose(), "abc");
        std::fs::write(&path, "abc\n\n").unwrap();
        assert_eq!(
            SecretRef::File(path.clone()).resolve().unwrap().expose(),
            "abc\n"
        );
        std::fs::write(&path, "\n").unwrap();
        let error = SecretRef::File(path).resolve().unwrap_err();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn missing_references_say_what_to_do() {
        let error = SecretRef::Env("NKVM_TEST_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .unwrap_err();
        assert!(error.contains("is not set"), "{error}");
        let error = SecretRef::File("/nonexistent/nkvm/secret".into())
            .resolve()
            .unwrap_err();
        assert!(error.contains("cannot read the secret file"), "{error}");
    }
}
