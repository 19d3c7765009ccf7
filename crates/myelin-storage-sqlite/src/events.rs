//! Reading event rows (timeline events and outliers) back into `EventRecord`s.

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{EventRecord, OutlierStatus, StorageResult};
use rusqlite::{Connection, Params, Row};
use serde_json::value::RawValue;

use crate::convert::{corrupt, parse_id, parse_opt_id, Db};

/// The columns [`RawEvent::from_row`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str =
    "event_id, json, rejected, stream_pos, state_snapshot, txn_device, txn_id, redacted_by";

/// An event row as stored, before decoding.
struct RawEvent {
    event_id: String,
    json: String,
    rejected: bool,
    stream_pos: i64,
    state_snapshot: i64,
    txn_device: Option<String>,
    txn_id: Option<String>,
    redacted_by: Option<String>,
}

impl RawEvent {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
        Ok(RawEvent {
            event_id: row.get(0)?,
            json: row.get(1)?,
            rejected: row.get(2)?,
            stream_pos: row.get(3)?,
            state_snapshot: row.get(4)?,
            txn_device: row.get(5)?,
            txn_id: row.get(6)?,
            redacted_by: row.get(7)?,
        })
    }

    fn decode(self) -> StorageResult<EventRecord> {
        let event_id = parse_id(self.event_id, "event ID")?;
        let json = RawValue::from_string(self.json).map_err(|e| corrupt("event JSON", e))?;
        let mut pdu = Pdu::from_json(event_id, json).map_err(|e| corrupt("event", e))?;
        pdu.rejected = self.rejected;
        let txn = match (self.txn_device, self.txn_id) {
            (Some(device), Some(txn_id)) => Some((device.into(), txn_id)),
            _ => None,
        };
        Ok(EventRecord {
            pdu,
            stream_pos: StreamPos(self.stream_pos),
            state_snapshot: self.state_snapshot,
            txn,
            redacted_by: parse_opt_id(self.redacted_by, "redacted_by")?,
            outlier: None,
        })
    }
}

/// The columns [`decode_outlier`] reads, in order.
pub(crate) const OUTLIER_COLUMNS: &str = "event_id, json, status";

/// An outlier row as an `EventRecord`: no place in the stream, no snapshot.
fn decode_outlier(
    (event_id, json, status): (String, String, String),
) -> StorageResult<EventRecord> {
    let status = OutlierStatus::parse(&status)
        .ok_or_else(|| corrupt("outlier status", format!("unknown status {status:?}")))?;
    let event_id = parse_id(event_id, "event ID")?;
    let json = RawValue::from_string(json).map_err(|e| corrupt("event JSON", e))?;
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
pub(crate) fn query_events<P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> StorageResult<Vec<EventRecord>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let raw = stmt
        .query_map(params, RawEvent::from_row)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    raw.into_iter().map(RawEvent::decode).collect()
}

/// Runs `SELECT {OUTLIER_COLUMNS} FROM event_outliers ...` and decodes every row.
pub(crate) fn query_outliers<P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> StorageResult<Vec<EventRecord>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let raw = stmt
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    raw.into_iter().map(decode_outlier).collect()
}
