//! Reading event rows (timeline events and outliers) back into `EventRecord`s.

use myelin_storage::rows::{self, Row};
use myelin_storage::{EventRecord, StorageResult};
use rusqlite::{Connection, Params};

use crate::convert::query_all;

pub(crate) use myelin_storage::rows::EVENT_COLUMNS;

/// The columns [`query_outliers`] decodes, in order.
pub(crate) const OUTLIER_COLUMNS: &str = "event_id, json, status";

/// Runs `SELECT {EVENT_COLUMNS} ...` (the caller's `sql` must select exactly those columns) and
/// decodes every row, keeping the query's order.
pub(crate) fn query_events<P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> StorageResult<Vec<EventRecord>> {
    query_all(conn, sql, params, rows::event)
}

/// Runs `SELECT {OUTLIER_COLUMNS} FROM event_outliers ...` and decodes every row.
pub(crate) fn query_outliers<P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> StorageResult<Vec<EventRecord>> {
    query_all(conn, sql, params, |row: &dyn Row| {
        rows::outlier(row, &row.text(2)?)
    })
}
