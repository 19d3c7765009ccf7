//! The storage error type, shared by all backends.

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed (IO, locking, constraint the caller could not foresee).
    #[error("database error: {0}")]
    Backend(String),
    /// A stored row could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database was written by a newer Myelin, or for another server.
    #[error("incompatible database: {0}")]
    Incompatible(String),
}

pub type StorageResult<T> = Result<T, StorageError>;
