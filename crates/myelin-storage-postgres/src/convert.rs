//! Conversions between PostgreSQL values and errors and the storage types.

use myelin_storage::{StorageError, StorageResult};

pub(crate) use myelin_storage::convert::{
    corrupt, limit, opt_to_i64, opt_to_u64, parse_id, parse_json, parse_opt_id, to_i64, to_u64,
};

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

/// Identifiers as a `TEXT[]` parameter, for `= ANY($n)`.
pub(crate) fn text_list<S: AsRef<str>>(items: &[S]) -> Vec<&str> {
    items.iter().map(AsRef::as_ref).collect()
}

/// Reads column `idx` of `row`, mapping a type mismatch to [`StorageError::Corrupt`].
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
) -> StorageResult<T> {
    row.try_get(idx)
        .map_err(|e| corrupt("column", describe(&e)))
}

/// The current time in milliseconds since the Unix epoch, for rows that record when they were
/// written (the traits pass no time for those).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
