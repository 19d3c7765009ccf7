//! Conversions between SQLite values and errors and the storage types, and running a query whose
//! rows decode through [`myelin_storage::rows`].

use myelin_storage::rows::Row;
use myelin_storage::{StorageError, StorageResult};
use rusqlite::{Connection, Params};

pub(crate) use myelin_storage::convert::{
    limit, now_ms, opt_to_i64, parse_id, parse_json, to_i64, to_u64,
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

/// A rusqlite row read through [`Row`]; a column of another type is a backend error, as with
/// any rusqlite error.
pub(crate) struct SqlRow<'a, 'stmt>(pub(crate) &'a rusqlite::Row<'stmt>);

impl Row for SqlRow<'_, '_> {
    fn text(&self, idx: usize) -> StorageResult<String> {
        self.0.get(idx).db()
    }

    fn opt_text(&self, idx: usize) -> StorageResult<Option<String>> {
        self.0.get(idx).db()
    }

    fn int(&self, idx: usize) -> StorageResult<i64> {
        self.0.get(idx).db()
    }

    fn opt_int(&self, idx: usize) -> StorageResult<Option<i64>> {
        self.0.get(idx).db()
    }

    fn flag(&self, idx: usize) -> StorageResult<bool> {
        self.0.get(idx).db()
    }
}

/// Runs `sql` (prepared and cached) and decodes every row with `decode`, in the query's order.
pub(crate) fn query_all<T, P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: impl Fn(&dyn Row) -> StorageResult<T>,
) -> StorageResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(decode(&SqlRow(row))?);
    }
    Ok(out)
}

/// Runs `sql` (prepared and cached) and decodes its first row with `decode`; `None` if it
/// returns none.
pub(crate) fn query_first<T, P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: impl FnOnce(&dyn Row) -> StorageResult<T>,
) -> StorageResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params).db()?;
    match rows.next().db()? {
        Some(row) => decode(&SqlRow(row)).map(Some),
        None => Ok(None),
    }
}
