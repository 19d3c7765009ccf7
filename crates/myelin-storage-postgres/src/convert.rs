//! Conversions between PostgreSQL values and errors and the storage types, and reading rows
//! through [`myelin_storage::rows::Row`].

use myelin_storage::rows::Row;
use myelin_storage::{StorageError, StorageResult};

pub(crate) use myelin_storage::convert::{
    corrupt, limit, now_ms, opt_to_i64, parse_id, parse_json, to_i64, to_u64,
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

/// A driver row read through [`Row`]; a column of another type is corrupt data, as with [`get`].
pub(crate) struct PgRow<'a>(pub(crate) &'a tokio_postgres::Row);

impl Row for PgRow<'_> {
    fn text(&self, idx: usize) -> StorageResult<String> {
        get(self.0, idx)
    }

    fn opt_text(&self, idx: usize) -> StorageResult<Option<String>> {
        get(self.0, idx)
    }

    fn int(&self, idx: usize) -> StorageResult<i64> {
        get(self.0, idx)
    }

    fn opt_int(&self, idx: usize) -> StorageResult<Option<i64>> {
        get(self.0, idx)
    }

    fn flag(&self, idx: usize) -> StorageResult<bool> {
        get(self.0, idx)
    }
}
