//! Facts about a database itself rather than its content: the schema version and the server it
//! belongs to.

use async_trait::async_trait;

use crate::StorageResult;

/// What `myelin db status` reports, read without migrating anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStatus {
    /// The schema version the database is at (0 for an empty database).
    pub schema_version: i64,
    /// The newest schema version this build knows.
    pub known_schema_version: i64,
    /// The server the database belongs to, once a server has started on it.
    pub server_name: Option<String>,
}

/// Per-database metadata. Not part of [`crate::Storage`]: the binary checks it right after
/// opening, before handing the store to the service.
#[async_trait]
pub trait MetaStore {
    /// Binds the database to `server_name`: stores it if the database has none yet, does
    /// nothing if it is the same, and fails with [`crate::StorageError::Incompatible`] if the
    /// database belongs to another server.
    async fn claim_server_name(&self, server_name: &str) -> StorageResult<()>;
    /// The server name stored by [`MetaStore::claim_server_name`], if any.
    async fn server_name(&self) -> StorageResult<Option<String>>;
    /// The schema version the database is at.
    async fn schema_version(&self) -> StorageResult<i64>;
}

/// The error for a database that belongs to `stored` but was opened for `wanted`.
pub fn server_name_mismatch(stored: &str, wanted: &str) -> crate::StorageError {
    crate::StorageError::Incompatible(format!(
        "the database belongs to server {stored:?}, but this server is configured as {wanted:?}; \
         a server name cannot change once the database exists"
    ))
}

/// The error for a database at schema version `current`, newer than the newest this build knows.
pub fn newer_schema(current: i64, known: i64) -> crate::StorageError {
    crate::StorageError::Incompatible(format!(
        "database schema version {current} is newer than the newest this build knows ({known})"
    ))
}
