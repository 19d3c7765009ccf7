//! The media files on disk, named by the SHA-256 of their bytes (`ab/cd/abcd…` under the media
//! directory), so identical uploads share one file. A file is written under `tmp/`, synced,
//! then renamed into place and its directory synced: once [`FileWriter::finish`] returns, the
//! bytes survive a crash, and a crash before leaves only a temporary file, removed when the
//! server next starts ([`FileStore::clear_unfinished`]).

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::accounts::token::random_alnum;
use crate::{ServiceError, ServiceResult};

/// The directory of the media files.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// The store at `root`.
    pub(crate) fn new(root: PathBuf) -> FileStore {
        FileStore { root }
    }

    /// Removes the temporary files a crash left behind. Only the serving process calls it at
    /// start: a command-line tool opening the store while a server runs must not remove that
    /// server's uploads in progress.
    pub(crate) fn clear_unfinished(&self) {
        let tmp = self.root.join("tmp");
        if tmp.exists() {
            if let Err(e) = std::fs::remove_dir_all(&tmp) {
                tracing::warn!(error = %e, dir = %tmp.display(), "cannot clear unfinished uploads");
            }
        }
    }

    /// Removes the file of `sha256` (absent already is fine).
    pub(crate) async fn remove(&self, sha256: &str) -> ServiceResult<bool> {
        let Some(path) = self.path_of(sha256) else {
            return Ok(false);
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    /// The file holding the bytes of this SHA-256, if it is one (64 lowercase hex digits).
    pub(crate) fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| {
            self.root
                .join(&sha256[0..2])
                .join(&sha256[2..4])
                .join(sha256)
        })
    }

    /// A new temporary file taking at most `limit` bytes.
    pub(crate) async fn begin(&self, limit: u64) -> ServiceResult<FileWriter> {
        let dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
        let tmp = dir.join(format!("{}.part", random_alnum(24)));
        let file = tokio::fs::File::create(&tmp).await.map_err(io_error)?;
        Ok(FileWriter {
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            limit,
            quota: None,
            store: self.clone(),
        })
    }

    /// Writes `bytes` as a whole file; its SHA-256 and size.
    pub(crate) async fn write_all(&self, bytes: &[u8]) -> ServiceResult<(String, u64)> {
        let mut writer = self.begin(u64::MAX).await?;
        writer.write(bytes).await?;
        writer.finish().await
    }
}

/// A file being written: hashed and counted as it comes, removed if dropped unfinished.
pub struct FileWriter {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
    /// Set when `limit` is what is left of the uploader's storage quota rather than the upload
    /// size limit: the refusal then says so (403 `M_FORBIDDEN`, not 413).
    quota: Option<u64>,
    store: FileStore,
}

impl FileWriter {
    /// Lowers the limit to what is left of a storage quota of `quota` bytes.
    pub(crate) fn limit_to_quota(&mut self, left: u64, quota: u64) {
        if left < self.limit {
            self.limit = left;
            self.quota = Some(quota);
        }
    }

    /// Appends a chunk; `M_TOO_LARGE` past the limit (the caller drops the writer, which removes
    /// the temporary file).
    pub async fn write(&mut self, chunk: &[u8]) -> ServiceResult<()> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(match self.quota {
                Some(quota) => quota_exceeded(quota),
                None => ServiceError::TooLarge(format!(
                    "The upload is larger than the limit of {} bytes",
                    self.limit
                )),
            });
        }
        self.hasher.update(chunk);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| ServiceError::Internal("write after finish".into()))?;
        file.write_all(chunk).await.map_err(io_error)
    }

    /// Syncs the file, renames it to its content's name and syncs the directory: the bytes are
    /// durable when this returns. Their SHA-256 and size.
    pub async fn finish(mut self) -> ServiceResult<(String, u64)> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| ServiceError::Internal("finished twice".into()))?;
        file.flush().await.map_err(io_error)?;
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        let sha256 = format!("{:x}", self.hasher.clone().finalize());
        let path = self
            .store
            .path_of(&sha256)
            .ok_or_else(|| ServiceError::Internal("bad digest".into()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| ServiceError::Internal("media path without parent".into()))?;
        tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
        tokio::fs::rename(&self.tmp, &path)
            .await
            .map_err(io_error)?;
        // Renamed: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(|e| ServiceError::Internal(format!("sync task: {e}")))?
            .map_err(io_error)?;
        Ok((sha256, self.size))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            // Small and local: removing an unfinished upload need not wait for a thread.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The refusal of an upload that would take its uploader past the storage quota: 403
/// `M_FORBIDDEN`, the spec errcode every client shows the message of (Synapse's own per-user
/// limit answers `M_RESOURCE_LIMIT_EXCEEDED`, which the spec reserves for server-wide limits).
pub(crate) fn quota_exceeded(quota: u64) -> ServiceError {
    ServiceError::Forbidden(format!(
        "The upload would exceed your media storage quota of {quota} bytes"
    ))
}

fn io_error(e: io::Error) -> ServiceError {
    ServiceError::Internal(format!("media file: {e}"))
}
