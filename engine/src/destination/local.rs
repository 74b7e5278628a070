//! The `local` destination: files under a directory on nkvm's own disk, written to `<file>.partial`,
//! fsynced, renamed to the final name (never replacing one) and the directory fsynced.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt as _, BufWriter};

use super::config::LocalConfig;
use super::error::{Origin, Step};
use super::{DestinationError, ObjectInfo, ObjectReader};
use crate::backup::stream::{partial_path_of, sync_dir};

/// Write buffer of an upload.
const WRITE_BUFFER: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct LocalDestination {
    name: String,
    root: PathBuf,
}

impl LocalDestination {
    pub fn new(name: String, config: &LocalConfig) -> Self {
        Self {
            name,
            root: config.path.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory keys are stored under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn uri(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn path(&self, key: &str) -> PathBuf {
        if key.is_empty() {
            self.root.clone()
        } else {
            self.root.join(key)
        }
    }

    fn origin(&self) -> Origin {
        Origin {
            destination: self.name.clone(),
            server: self.root.display().to_string(),
        }
    }

    pub async fn begin_upload(&self, key: &str) -> Result<LocalUpload, DestinationError> {
        let path = self.path(key);
        let origin = self.origin();
        let fail = |e: io::Error| {
            origin.on(
                Step::Upload,
                key,
                format!("{e}: check that the directory exists and is writable, and free space"),
            )
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(fail)?;
        }
        let partial = partial_path_of(&path);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(fail)?;
        Ok(LocalUpload {
            origin,
            key: key.to_owned(),
            path,
            partial: Some(partial),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
        })
    }

    /// Opens `key` for reading; a key that resolves outside the directory (through a symbolic
    /// link) is refused.
    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, DestinationError> {
        let path = self.path(key);
        let resolved = match tokio::fs::canonicalize(&path).await {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.origin().not_found(key));
            }
            Err(e) => return Err(self.origin().on(Step::Read, key, e.to_string())),
        };
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|e| self.origin().on(Step::Read, key, e.to_string()))?;
        if !resolved.starts_with(&root) {
            return Err(self.origin().on(
                Step::Read,
                key,
                format!(
                    "it resolves to {}, outside {}: refusing to read it",
                    resolved.display(),
                    root.display()
                ),
            ));
        }
        match tokio::fs::File::open(&resolved).await {
            Ok(file) => {
                let size = file.metadata().await.ok().map(|m| m.len());
                Ok(ObjectReader::new(size, file))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.origin().not_found(key)),
            Err(e) => Err(self.origin().on(Step::Read, key, e.to_string())),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.origin().not_found(key)),
            Err(e) => Err(self.origin().on(Step::Delete, key, e.to_string())),
        }
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let root = self.root.clone();
        let start = self.path(prefix);
        let walked = tokio::task::spawn_blocking(move || walk(&root, &start))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        walked.map_err(|e| self.origin().on(Step::List, prefix, e.to_string()))
    }
}

/// Regular files under `start` (a missing directory is empty), keys relative to `root`.
fn walk(root: &Path, start: &Path) -> io::Result<Vec<ObjectInfo>> {
    let mut found = Vec::new();
    let mut pending = vec![start.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let Ok(relative) = path.strip_prefix(root) else {
                    continue;
                };
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                found.push(ObjectInfo {
                    key,
                    size: entry.metadata().ok().map(|m| m.len()),
                });
            }
        }
    }
    Ok(found)
}

/// An upload to `<path>.partial`; the file is removed on abort and on drop before commit.
#[derive(Debug)]
pub struct LocalUpload {
    origin: Origin,
    key: String,
    path: PathBuf,
    /// `Some` until committed or removed.
    partial: Option<PathBuf>,
    file: BufWriter<tokio::fs::File>,
}

impl LocalUpload {
    pub async fn commit(mut self) -> Result<String, DestinationError> {
        let result = self.finish().await;
        match result {
            Ok(()) => Ok(std::mem::take(&mut self.key)),
            Err(message) => Err(self.origin.on(Step::Commit, &self.key, message)),
        }
        // On error, drop removes the partial file.
    }

    async fn finish(&mut self) -> Result<(), String> {
        let Some(partial) = self.partial.clone() else {
            return Err("the upload was already finished".to_owned());
        };
        let advice = |e: io::Error| format!("{e}: check free space and permissions");
        self.file.flush().await.map_err(advice)?;
        self.file.get_ref().sync_all().await.map_err(advice)?;
        // Never replace an existing object: link the new name (fails when it exists), then drop
        // the temporary one.
        let (from, to) = (partial.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || std::fs::hard_link(&from, &to))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    format!(
                        "{} already exists: it is never replaced",
                        self.path.display()
                    )
                } else {
                    advice(e)
                }
            })?;
        self.partial = None;
        let _ = tokio::fs::remove_file(&partial).await;
        sync_dir(&self.path).await.map_err(advice)?;
        Ok(())
    }

    pub async fn abort(mut self) -> Result<(), DestinationError> {
        if let Some(partial) = self.partial.take() {
            match tokio::fs::remove_file(&partial).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.origin.on(Step::Abort, &self.key, e.to_string())),
            }
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if let Some(partial) = self.partial.take() {
            let _ = std::fs::remove_file(partial);
        }
    }
}

impl AsyncWrite for LocalUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    fn destination(dir: &Path) -> LocalDestination {
        LocalDestination::new(
            "local".into(),
            &LocalConfig {
                path: dir.join("artifacts"),
            },
        )
    }

    #[tokio::test]
    async fn nothing_is_under_the_final_name_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let d = destination(dir.path());
        let mut upload = d.begin_upload("ns/pvc/a.tar.gz").await.unwrap();
        upload.write_all(b"hello").await.unwrap();
        upload.flush().await.unwrap();
        let keys: Vec<_> = d
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["ns/pvc/a.tar.gz.partial"]);
        assert_eq!(upload.commit().await.unwrap(), "ns/pvc/a.tar.gz");
        let listed = d.list("ns").await.unwrap();
        assert_eq!(
            listed,
            [ObjectInfo {
                key: "ns/pvc/a.tar.gz".into(),
                size: Some(5)
            }]
        );
        let mut back = String::new();
        d.open_read("ns/pvc/a.tar.gz")
            .await
            .unwrap()
            .read_to_string(&mut back)
            .await
            .unwrap();
        assert_eq!(back, "hello");
    }

    #[tokio::test]
    async fn drop_and_abort_remove_the_partial_file_and_commit_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let d = destination(dir.path());
        let mut upload = d.begin_upload("a/b").await.unwrap();
        upload.write_all(b"x").await.unwrap();
        drop(upload);
        assert!(d.list("").await.unwrap().is_empty());
        let upload = d.begin_upload("a/b").await.unwrap();
        upload.abort().await.unwrap();
        assert!(d.list("").await.unwrap().is_empty());

        let first = d.begin_upload("a/b").await.unwrap();
        first.commit().await.unwrap();
        let mut second = d.begin_upload("a/b").await.unwrap();
        second.write_all(b"other").await.unwrap();
        let error = second.commit().await.unwrap_err();
        assert!(error.to_string().contains("never replaced"), "{error}");
        assert_eq!(error.step(), "commit");
        let listed = d.list("").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].size, Some(0));
    }

    #[tokio::test]
    async fn reads_never_follow_links_out_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = destination(dir.path());
        std::fs::create_dir_all(dir.path().join("artifacts/ns")).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("artifacts/ns/x"))
            .unwrap();
        let error = d.open_read("ns/x").await.unwrap_err();
        assert_eq!(error.step(), "read");
        assert!(error.to_string().contains("outside"), "{error}");
    }

    #[tokio::test]
    async fn missing_objects_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = destination(dir.path());
        assert!(matches!(
            d.open_read("x").await,
            Err(DestinationError::NotFound { .. })
        ));
        assert!(matches!(
            d.delete("x").await,
            Err(DestinationError::NotFound { .. })
        ));
        assert!(d.list("nothing/here").await.unwrap().is_empty());
    }
}
