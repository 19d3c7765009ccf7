//! Reading event rows (timeline events and outliers) back into `EventRecord`s.

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{EventRecord, OutlierStatus, StorageResult};
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
        outlier: None,
    })
}

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
    let rows = conn.query(STORED_EVENTS, &[&ids]).await?;
    rows.iter()
        .map(|row| match get::<Option<String>>(row, 8)? {
            None => decode(row),
            Some(status) => decode_outlier(row, &status),
        })
        .collect()
}

/// An outlier row of [`STORED_EVENTS`]: no place in the stream, no snapshot.
fn decode_outlier(row: &Row, status: &str) -> StorageResult<EventRecord> {
    let status = OutlierStatus::parse(status)
        .ok_or_else(|| corrupt("outlier status", format!("unknown status {status:?}")))?;
    let event_id = parse_id(get::<String>(row, 0)?, "event ID")?;
    let json = RawValue::from_string(get(row, 1)?).map_err(|e| corrupt("event JSON", e))?;
    let mut pdu = Pdu::from_json(event_id, json).map_err(|e| corrupt("event", e))?;
    pdu.rejected = status == OutlierStatus::Rejected;
    Ok(EventRecord {
        pdu,
        stream_pos: StreamPos::ZERO,
        state_snapshot: 0,
        txn: None,
        redacted_by: None,
        outlier: Some(status),
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
