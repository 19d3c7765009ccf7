//! Reading event rows (timeline events and outliers) back into `EventRecord`s.

use myelin_storage::rows::{self, Row};
use myelin_storage::{EventRecord, StorageResult};

use crate::pool::{Conn, Params};

pub(crate) use myelin_storage::rows::EVENT_COLUMNS;

/// Timeline events and outliers in one statement (so one snapshot: an event that moves from the
/// outliers into the timeline meanwhile is seen exactly once). Outlier rows fill the timeline
/// columns with placeholders and carry their status in a ninth column, NULL for timeline rows.
const STORED_EVENTS: &str = "
    SELECT event_id, json, rejected, stream_pos, state_snapshot, txn_device, txn_id, redacted_by,
           NULL::TEXT
    FROM events WHERE event_id = ANY($1::TEXT[])
    UNION ALL
    SELECT event_id, json, FALSE, 0::BIGINT, 0::BIGINT, NULL::TEXT, NULL::TEXT, NULL::TEXT, status
    FROM event_outliers WHERE event_id = ANY($1::TEXT[])";

/// The stored events among `ids`, in the timeline or not, in no particular order.
pub(crate) async fn stored_events(
    conn: &mut Conn,
    ids: &[&str],
) -> StorageResult<Vec<EventRecord>> {
    conn.query_decode(STORED_EVENTS, &[&ids], |row: &dyn Row| {
        match row.opt_text(8)? {
            None => rows::event(row),
            Some(status) => rows::outlier(row, &status),
        }
    })
    .await
}

/// Runs `SELECT {EVENT_COLUMNS} ...` (the caller's `sql` must select exactly those columns) and
/// decodes every row, keeping the query's order.
pub(crate) async fn query_events(
    conn: &mut Conn,
    sql: &str,
    params: Params<'_>,
) -> StorageResult<Vec<EventRecord>> {
    conn.query_decode(sql, params, rows::event).await
}
