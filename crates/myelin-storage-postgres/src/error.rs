//! The errors of opening a PostgreSQL database, mapped into [`StorageError`] at the crate edge.

use myelin_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection URL could not be parsed (the URL itself is not repeated: it may hold a
    /// password).
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The pool was configured with no connections.
    #[error("the PostgreSQL pool size must be at least 1")]
    EmptyPool,
}

impl From<PgError> for StorageError {
    fn from(err: PgError) -> StorageError {
        StorageError::Backend(err.to_string())
    }
}
