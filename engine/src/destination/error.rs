//! Why a destination operation failed: one variant per step, each naming the destination and
//! the server or key, with a message that says what to do. Never carries a secret.

/// A failed destination operation. `Display` is meant for operators (history, CLI, UI); it holds
/// no credential, signed URL or private key material.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The destinations file is invalid (or missing).
    #[error("destinations configuration {origin}: {message}")]
    Config { origin: String, message: String },
    /// No destination of that name.
    #[error("no destination named {name:?} is configured (configured: {known})")]
    Unknown { name: String, known: String },
    /// A `*_env` / `*_file` reference could not be read.
    #[error("destination {destination}: {message}")]
    Secret {
        destination: String,
        message: String,
    },
    /// The server could not be reached (after the retries for transient failures).
    #[error("destination {destination}: cannot connect to {server}: {message}")]
    Connect {
        destination: String,
        server: String,
        message: String,
    },
    /// The server's identity could not be verified (SSH host key, TLS certificate).
    #[error("destination {destination}: the identity of {server} is not trusted: {message}")]
    VerifyServer {
        destination: String,
        server: String,
        message: String,
    },
    /// The server refused the credentials or the access (login, 401/403, missing bucket).
    #[error("destination {destination}: {server} refused access: {message}")]
    Authenticate {
        destination: String,
        server: String,
        message: String,
    },
    /// Sending data failed; nothing was stored under the final key.
    #[error("destination {destination}: uploading {key} failed: {message}")]
    Upload {
        destination: String,
        key: String,
        message: String,
    },
    /// Making a finished upload visible under its final key failed.
    #[error("destination {destination}: completing {key} failed: {message}")]
    Commit {
        destination: String,
        key: String,
        message: String,
    },
    /// Removing an unfinished upload failed (it is never visible under the final key).
    #[error("destination {destination}: aborting the upload of {key} failed: {message}")]
    Abort {
        destination: String,
        key: String,
        message: String,
    },
    /// Reading an object failed.
    #[error("destination {destination}: reading {key} failed: {message}")]
    Read {
        destination: String,
        key: String,
        message: String,
    },
    /// The object does not exist.
    #[error("destination {destination}: {key} does not exist")]
    NotFound { destination: String, key: String },
    /// Deleting an object failed.
    #[error("destination {destination}: deleting {key} failed: {message}")]
    Delete {
        destination: String,
        key: String,
        message: String,
    },
    /// Listing objects failed.
    #[error("destination {destination}: listing {prefix:?} failed: {message}")]
    List {
        destination: String,
        prefix: String,
        message: String,
    },
    /// `check`: the probe object read back differs from what was written.
    #[error(
        "destination {destination}: the probe object {key} read back differs from what was written: {message}"
    )]
    Probe {
        destination: String,
        key: String,
        message: String,
    },
}

impl DestinationError {
    /// The step that failed, as a lower-case word (`connect`, `upload`, …) for history and JSON.
    #[must_use]
    pub fn step(&self) -> &'static str {
        match self {
            Self::Config { .. } | Self::Unknown { .. } | Self::Secret { .. } => "config",
            Self::Connect { .. } => "connect",
            Self::VerifyServer { .. } => "verify-server",
            Self::Authenticate { .. } => "authenticate",
            Self::Upload { .. } => "upload",
            Self::Commit { .. } => "commit",
            Self::Abort { .. } => "abort",
            Self::Read { .. } | Self::NotFound { .. } => "read",
            Self::Delete { .. } => "delete",
            Self::List { .. } => "list",
            Self::Probe { .. } => "check",
        }
    }
}

/// Which destination and server an operation talks to; builds the errors of each step.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub destination: String,
    pub server: String,
}

impl Origin {
    pub fn connect(&self, message: impl Into<String>) -> DestinationError {
        DestinationError::Connect {
            destination: self.destination.clone(),
            server: self.server.clone(),
            message: message.into(),
        }
    }
    pub fn verify_server(&self, message: impl Into<String>) -> DestinationError {
        DestinationError::VerifyServer {
            destination: self.destination.clone(),
            server: self.server.clone(),
            message: message.into(),
        }
    }
    pub fn authenticate(&self, message: impl Into<String>) -> DestinationError {
        DestinationError::Authenticate {
            destination: self.destination.clone(),
            server: self.server.clone(),
            message: message.into(),
        }
    }
    pub fn secret(&self, message: impl Into<String>) -> DestinationError {
        DestinationError::Secret {
            destination: self.destination.clone(),
            message: message.into(),
        }
    }
    /// An error of a step on one object (`Upload`, `Commit`, …).
    pub fn on(&self, step: Step, key: &str, message: impl Into<String>) -> DestinationError {
        let (destination, key, message) =
            (self.destination.clone(), key.to_owned(), message.into());
        match step {
            Step::Upload => DestinationError::Upload {
                destination,
                key,
                message,
            },
            Step::Commit => DestinationError::Commit {
                destination,
                key,
                message,
            },
            Step::Abort => DestinationError::Abort {
                destination,
                key,
                message,
            },
            Step::Read => DestinationError::Read {
                destination,
                key,
                message,
            },
            Step::Delete => DestinationError::Delete {
                destination,
                key,
                message,
            },
            Step::List => DestinationError::List {
                destination,
                prefix: key,
                message,
            },
        }
    }
    pub fn not_found(&self, key: &str) -> DestinationError {
        DestinationError::NotFound {
            destination: self.destination.clone(),
            key: key.to_owned(),
        }
    }
}

/// The steps on one object, for [`Origin::on`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Upload,
    Commit,
    Abort,
    Read,
    Delete,
    List,
}

/// An error and its sources, `: `-separated (many transport errors are terse at the top).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_named_after_the_variant() {
        let origin = Origin {
            destination: "offsite".into(),
            server: "s3.example:443".into(),
        };
        assert_eq!(origin.connect("x").step(), "connect");
        assert_eq!(origin.on(Step::Upload, "k", "x").step(), "upload");
        assert_eq!(origin.on(Step::Commit, "k", "x").step(), "commit");
        assert_eq!(origin.on(Step::List, "p", "x").step(), "list");
        let text = origin.authenticate("403 AccessDenied").to_string();
        assert!(
            text.contains("offsite") && text.contains("s3.example:443"),
            "{text}"
        );
    }

    #[test]
    fn chain_skips_repeated_causes() {
        let inner = std::io::Error::other("connection reset");
        let outer = std::io::Error::other(inner);
        assert_eq!(chain(&outer), "connection reset");
    }
}
