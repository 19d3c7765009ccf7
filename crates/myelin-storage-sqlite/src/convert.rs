//! Conversions between SQLite values and errors and the storage types.

use std::fmt::Display;

use myelin_storage::{StorageError, StorageResult};

/// Maps a rusqlite error to [`StorageError::Backend`].
pub(crate) trait Db<T> {
    fn db(self) -> StorageResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StorageResult<T> {
        self.map_err(|e| StorageError::Backend(e.to_string()))
    }
}

pub(crate) fn corrupt(what: &str, err: impl Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {err}"))
}

/// Parses a stored identifier (user, room, event ID, ...).
pub(crate) fn parse_id<T>(value: String, what: &str) -> StorageResult<T>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    T::try_from(value).map_err(|e| corrupt(what, e))
}

pub(crate) fn parse_opt_id<T>(value: Option<String>, what: &str) -> StorageResult<Option<T>>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    value.map(|v| parse_id(v, what)).transpose()
}

pub(crate) fn parse_json(value: &str, what: &str) -> StorageResult<serde_json::Value> {
    serde_json::from_str(value).map_err(|e| corrupt(what, e))
}

/// An unsigned input value as an SQLite integer.
pub(crate) fn to_i64(value: u64, what: &str) -> StorageResult<i64> {
    i64::try_from(value).map_err(|_| StorageError::Backend(format!("{what} out of range: {value}")))
}

pub(crate) fn opt_to_i64(value: Option<u64>, what: &str) -> StorageResult<Option<i64>> {
    value.map(|v| to_i64(v, what)).transpose()
}

/// A stored integer that must be non-negative.
pub(crate) fn to_u64(value: i64, what: &str) -> StorageResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(what, format!("negative value {value}")))
}

pub(crate) fn opt_to_u64(value: Option<i64>, what: &str) -> StorageResult<Option<u64>> {
    value.map(|v| to_u64(v, what)).transpose()
}

/// A JSON array of strings, for `json_each(?)` in `IN` clauses.
pub(crate) fn json_list<S: AsRef<str>>(items: &[S]) -> StorageResult<String> {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).map_err(|e| StorageError::Backend(e.to_string()))
}

/// A `usize` limit as an SQLite integer (saturating).
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
