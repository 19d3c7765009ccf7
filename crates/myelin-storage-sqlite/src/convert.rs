//! Conversions between SQLite values and errors and the storage types.

use myelin_storage::{StorageError, StorageResult};

pub(crate) use myelin_storage::convert::{
    corrupt, limit, opt_to_i64, opt_to_u64, parse_id, parse_json, parse_opt_id, to_i64, to_u64,
};

/// Maps a rusqlite error to [`StorageError::Backend`].
pub(crate) trait Db<T> {
    fn db(self) -> StorageResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StorageResult<T> {
        self.map_err(|e| StorageError::Backend(e.to_string()))
    }
}

/// A JSON array of strings, for `json_each(?)` in `IN` clauses.
pub(crate) fn json_list<S: AsRef<str>>(items: &[S]) -> StorageResult<String> {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).map_err(|e| StorageError::Backend(e.to_string()))
}

/// The current time in milliseconds since the Unix epoch, for rows that record when they were
/// written (the traits pass no time for those).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
