//! The data directory of one nkvm instance: where its files are (history database, local
//! artifacts, instance id), and the advisory lock that lets only one writing nkvm process use it
//! at a time, so that one process's start-up recovery never deletes another's live helper pod or
//! `.partial` archive. Read-only commands (inventory, history) take no lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "nkvm.lock";
/// File name of the instance id inside the data directory.
pub const INSTANCE_FILE: &str = "instance-id";

/// Who holds a data directory: written into the lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// What it runs: `nkvm serve`, `nkvm backup`, …
    pub command: String,
    /// RFC 3339 UTC.
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {}, since {})",
            self.command, self.pid, self.since
        )
    }
}

/// Why a data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "cannot create the data directory {}: {source}; check the path and its permissions (--data-dir, \
         NKVM_DATA_DIR)",
        .path.display()
    )]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the data directory {} is in use by another nkvm process{}; only one process may write to \
         a data directory (its start-up recovery would remove the other's running backups): use \
         that process (e.g. the web UI of `nkvm serve`), wait for it to finish, or give this \
         command its own --data-dir",
        .path.display(),
        .holder.as_ref().map(|h| format!(": {h}")).unwrap_or_default()
    )]
    InUse {
        path: PathBuf,
        holder: Option<Holder>,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read or create {}: {source}", .path.display())]
    InstanceId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An exclusive hold on a data directory, released when dropped (or when the process ends, even
/// by `SIGKILL`: the operating system drops the lock with the file descriptor).
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    _file: File,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock for `command`; refused with the holder
    /// named when another process has it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, DataDirError> {
        std::fs::create_dir_all(dir).map_err(|source| DataDirError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let lock_err = |source| DataDirError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_err)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(DataDirError::InUse {
                    path: dir.to_owned(),
                    holder: read_holder(&mut file),
                });
            }
            Err(errno) => return Err(lock_err(errno.into())),
        }
        let holder = Holder {
            pid: std::process::id(),
            command: command.to_owned(),
            since: crate::timestamp::rfc3339(jiff::Timestamp::now()),
        };
        let text = serde_json::to_string(&holder).map_err(io::Error::other);
        text.and_then(|text| {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(text.as_bytes())?;
            file.sync_data()
        })
        .map_err(lock_err)?;
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder recorded in a lock file, when it can be read.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The id of the nkvm instance owning `data_dir` (the value of its helpers'
/// [`crate::backup::pod::LABEL_INSTANCE`] label): read from `<data_dir>/instance-id`, created with
/// 16 random hex digits when missing. Two data directories never share an id, so start-up
/// recovery of one never deletes the other's helpers.
pub fn instance_id(data_dir: &Path) -> Result<String, DataDirError> {
    let path = data_dir.join(INSTANCE_FILE);
    let fail = |source| DataDirError::InstanceId {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !id.is_empty()
                && id.len() <= 63
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Ok(id.to_owned());
            }
            Err(fail(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file does not hold a valid instance id (1-63 letters, digits or '-'); \
                 delete it to get a new one",
            )))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(fail)?;
            let id = crate::auth::random_hex::<8>().map_err(|e| fail(io::Error::other(e)))?;
            std::fs::write(&path, format!("{id}\n")).map_err(fail)?;
            Ok(id)
        }
        Err(err) => Err(fail(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), "nkvm serve").unwrap();
        assert!(first.path().ends_with(LOCK_FILE));
        let err = DataDirLock::acquire(dir.path(), "nkvm backup").unwrap_err();
        let DataDirError::InUse { holder, .. } = &err else {
            panic!("not in use: {err}");
        };
        let holder = holder.clone().expect("the holder is recorded");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "nkvm serve");
        let message = err.to_string();
        assert!(message.contains("`nkvm serve` (pid"), "{message}");
        assert!(message.contains("--data-dir"), "{message}");
        drop(first);
        let again = DataDirLock::acquire(dir.path(), "nkvm backup").unwrap();
        drop(again);
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let _lock = DataDirLock::acquire(&nested, "nkvm backup").unwrap();
        assert!(nested.join(LOCK_FILE).is_file());
    }

    #[test]
    fn instance_ids_persist_per_data_dir() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = instance_id(a.path()).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(instance_id(a.path()).unwrap(), first);
        assert_ne!(instance_id(b.path()).unwrap(), first);
        std::fs::write(a.path().join(INSTANCE_FILE), "bad id!").unwrap();
        assert!(instance_id(a.path()).is_err());
    }
}
