//! Conversions between PostgreSQL values and errors and the storage types.

use std::fmt::Display;

use myelin_storage::{StorageError, StorageResult};

/// Maps a driver error to [`StorageError::Backend`], keeping the server's message.
pub(crate) trait Db<T> {
    fn db(self) -> StorageResult<T>;
}

impl<T> Db<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> StorageResult<T> {
        self.map_err(|e| StorageError::Backend(describe(&e)))
    }
}

/// A one-line description of a driver error: the server's message (with its detail) when the
/// server sent one, else the driver's error and its cause.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        return text;
    }
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
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

/// An unsigned input value as a BIGINT.
pub(crate) fn to_i64(value: u64, what: &str) -> StorageResult<i64> {
    i64::try_from(value).map_err(|_| StorageError::Backend(format!("{what} out of range: {value}")))
}

pub(crate) fn opt_to_i64(value: Option<u64>, what: &str) -> StorageResult<Option<i64>> {
    value.map(|v| to_i64(v, what)).transpose()
}

/// A stored BIGINT that must be non-negative.
pub(crate) fn to_u64(value: i64, what: &str) -> StorageResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(what, format!("negative value {value}")))
}

pub(crate) fn opt_to_u64(value: Option<i64>, what: &str) -> StorageResult<Option<u64>> {
    value.map(|v| to_u64(v, what)).transpose()
}

/// Identifiers as a `TEXT[]` parameter, for `= ANY($n)`.
pub(crate) fn text_list<S: AsRef<str>>(items: &[S]) -> Vec<&str> {
    items.iter().map(AsRef::as_ref).collect()
}

/// A `usize` limit as a BIGINT (saturating).
pub(crate) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads column `idx` of `row`, mapping a type mismatch to [`StorageError::Corrupt`].
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> StorageResult<T> {
    row.try_get(idx)
        .map_err(|e| corrupt("column", describe(&e)))
}
