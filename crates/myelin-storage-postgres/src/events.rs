//! Reading event rows back into `EventRecord`s.

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{EventRecord, StorageResult};
use serde_json::value::RawValue;
use tokio_postgres::Row;

use crate::convert::{corrupt, get, parse_id, parse_opt_id};
use crate::pool::{Conn, Params};

/// The columns [`decode`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str =
    "event_id, json, rejected, stream_pos, state_snapshot, txn_device, txn_id, redacted_by";

fn decode(row: &Row) -> StorageResult<EventRecord> {
    let event_id = parse_id(get::<String>(row, 0)?, "event ID")?;
    let json = RawValue::from_string(get(row, 1)?).map_err(|e| corrupt("event JSON", e))?;
    let mut pdu = Pdu::from_json(event_id, json).map_err(|e| corrupt("event", e))?;
    pdu.rejected = get(row, 2)?;
    let txn = match (
        get::<Option<String>>(row, 5)?,
        get::<Option<String>>(row, 6)?,
    ) {
        (Some(device), Some(txn_id)) => Some((device.into(), txn_id)),
        _ => None,
    };
    Ok(EventRecord {
        pdu,
        stream_pos: StreamPos(get(row, 3)?),
        state_snapshot: get(row, 4)?,
        txn,
        redacted_by: parse_opt_id(get(row, 7)?, "redacted_by")?,
    })
}

/// Runs `SELECT {EVENT_COLUMNS} ...` (the caller's `sql` must select exactly those columns) and
/// decodes every row, keeping the query's order.
pub(crate) async fn query_events(
    conn: &mut Conn,
    sql: &str,
    params: Params<'_>,
) -> StorageResult<Vec<EventRecord>> {
    conn.query(sql, params).await?.iter().map(decode).collect()
}
