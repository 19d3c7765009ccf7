//! `persist_event`: everything one new event changes, written in the caller's transaction; and
//! events stored outside the timeline (outliers).

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{
    BackfilledEvent, NewEvent, NewOutlier, NewState, OutlierStatus, Persisted, StorageResult,
};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::convert::{now_ms, to_i64, Db};
use crate::pool::Positions;
use crate::state;

/// Persists a batch in order, each event at its own stream position.
pub(crate) fn persist_events(
    tx: &Transaction<'_>,
    positions: &mut Positions,
    events: Vec<NewEvent>,
) -> StorageResult<Vec<Persisted>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        positions.next_write();
        out.push(persist_event(tx, positions, event)?);
    }
    Ok(out)
}

/// Writes the event, its snapshot, txn mapping, current state, membership, redaction, the
/// room's forward extremities and its outbox rows; moves it out of the outliers if it was one.
/// A rejected event is stored (with its snapshot) but changes neither current state, nor
/// memberships, nor the event it claims to redact.
pub(crate) fn persist_event(
    tx: &Transaction<'_>,
    positions: &mut Positions,
    event: NewEvent,
) -> StorageResult<Persisted> {
    let NewEvent {
        pdu,
        room,
        state: new_state,
        updates_current_state,
        membership,
        txn,
        redaction,
        forward_extremities,
        resolved_current_state,
        destinations,
    } = event;
    let room_id = pdu.room_id.as_str();
    let stream_pos = positions.take(tx)?;

    if let Some(room) = &room {
        tx.prepare_cached(
            "INSERT INTO rooms (room_id, version, creator, created_ms) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?
        .execute(params![
            room.room_id.as_str(),
            room.version.as_str(),
            room.creator.as_str(),
            to_i64(room.created_ms, "created_ms")?
        ])
        .db()?;
    }

    let snapshot = match &new_state {
        NewState::Same(id) => *id,
        NewState::Changed { base, changes } => state::create_snapshot(tx, room_id, *base, changes)?,
    };

    let (txn_device, txn_id) = match &txn {
        Some((device, txn_id)) => (Some(device.as_str()), Some(txn_id.as_str())),
        None => (None, None),
    };
    tx.prepare_cached(
        "INSERT INTO events (event_id, room_id, stream_pos, depth, type, state_key, sender,
                             origin_server_ts, json, rejected, state_snapshot, txn_device, txn_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .db()?
    .execute(params![
        pdu.event_id.as_str(),
        room_id,
        stream_pos.0,
        to_i64(pdu.depth, "depth")?,
        pdu.kind.to_string(),
        pdu.state_key.as_deref(),
        pdu.sender.as_str(),
        to_i64(u64::from(pdu.origin_server_ts.get()), "origin_server_ts")?,
        pdu.json.get(),
        pdu.rejected,
        snapshot,
        txn_device,
        txn_id,
    ])
    .db()?;
    // Now in the timeline: no longer an outlier.
    tx.prepare_cached("DELETE FROM event_outliers WHERE event_id = ?1")
        .db()?
        .execute([pdu.event_id.as_str()])
        .db()?;

    if let (Some(device), Some(txn_id)) = (txn_device, txn_id) {
        tx.prepare_cached(
            "INSERT INTO event_txns (user_id, device_id, txn_id, event_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?
        .execute(params![
            pdu.sender.as_str(),
            device,
            txn_id,
            pdu.event_id.as_str()
        ])
        .db()?;
    }

    if !pdu.rejected {
        if updates_current_state {
            match &resolved_current_state {
                Some(resolved) => state::replace_current_state(tx, room_id, resolved)?,
                None => state::move_current_state(tx, room_id, snapshot, &new_state)?,
            }
        }
        if let Some(change) = &membership {
            tx.prepare_cached(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos, forgotten, joined_pos)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, CASE WHEN ?3 = 'join' THEN ?5 END)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET
                     membership = excluded.membership, event_id = excluded.event_id,
                     stream_pos = excluded.stream_pos, forgotten = 0,
                     joined_pos = COALESCE(excluded.joined_pos, room_memberships.joined_pos)",
            )
            .db()?
            .execute(params![
                room_id,
                change.user_id.as_str(),
                change.membership,
                pdu.event_id.as_str(),
                stream_pos.0
            ])
            .db()?;
        }
        if let Some((target, redacted_json)) = &redaction {
            tx.prepare_cached("UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1 AND room_id = ?4")
                .db()?
                .execute(params![
                    target.as_str(),
                    redacted_json.get(),
                    pdu.event_id.as_str(),
                    room_id
                ])
                .db()?;
        }
    }

    tx.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")
        .db()?
        .execute([room_id])
        .db()?;
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
        )
        .db()?;
    for event_id in &forward_extremities {
        insert.execute(params![room_id, event_id.as_str()]).db()?;
    }

    if !destinations.is_empty() {
        let mut queue = tx
            .prepare_cached(
                "INSERT INTO federation_outbox (destination, event_id, created_ms) VALUES (?1, ?2, ?3)",
            )
            .db()?;
        let now = now_ms();
        for destination in &destinations {
            queue
                .execute(params![destination, pdu.event_id.as_str(), now])
                .db()?;
        }
    }

    Ok(Persisted {
        stream_pos,
        state_snapshot: snapshot,
    })
}

/// Places backfilled history below every stored position (see
/// `RoomStore::persist_backfilled`). Takes no position from the counter: the writer lock makes
/// the `MIN` read and the inserts atomic with respect to other writes.
pub(crate) fn persist_backfilled(
    tx: &Transaction<'_>,
    events: Vec<BackfilledEvent>,
) -> StorageResult<Vec<StreamPos>> {
    let lowest: Option<i64> = tx
        .prepare_cached("SELECT MIN(stream_pos) FROM events")
        .db()?
        .query_row([], |row| row.get(0))
        .db()?;
    // Never 0 or above: positions from 1 up belong to the counter, and 0 means "before
    // everything" to forward pagination.
    let mut next = lowest.unwrap_or(0).min(0) - 1;
    let mut out = Vec::with_capacity(events.len());
    for BackfilledEvent {
        pdu,
        state_snapshot,
    } in events
    {
        let existing: Option<i64> = tx
            .prepare_cached("SELECT stream_pos FROM events WHERE event_id = ?1")
            .db()?
            .query_row([pdu.event_id.as_str()], |row| row.get(0))
            .optional()
            .db()?;
        if let Some(pos) = existing {
            out.push(StreamPos(pos));
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO events (event_id, room_id, stream_pos, depth, type, state_key, sender,
                                 origin_server_ts, json, rejected, state_snapshot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .db()?
        .execute(params![
            pdu.event_id.as_str(),
            pdu.room_id.as_str(),
            next,
            to_i64(pdu.depth, "depth")?,
            pdu.kind.to_string(),
            pdu.state_key.as_deref(),
            pdu.sender.as_str(),
            to_i64(u64::from(pdu.origin_server_ts.get()), "origin_server_ts")?,
            pdu.json.get(),
            pdu.rejected,
            state_snapshot,
        ])
        .db()?;
        // Now in the timeline: no longer an outlier.
        tx.prepare_cached("DELETE FROM event_outliers WHERE event_id = ?1")
            .db()?
            .execute([pdu.event_id.as_str()])
            .db()?;
        out.push(StreamPos(next));
        next -= 1;
    }
    Ok(out)
}

/// Stores events outside the timeline; one already stored, in either place, is left as it is.
pub(crate) fn persist_outliers(tx: &Transaction<'_>, outliers: &[NewOutlier]) -> StorageResult<()> {
    for outlier in outliers {
        insert_outlier(tx, &outlier.pdu, outlier.status)?;
    }
    Ok(())
}

/// Stores one outlier unless the event is stored already (as an outlier or in the timeline).
pub(crate) fn insert_outlier(
    tx: &Transaction<'_>,
    pdu: &Pdu,
    status: OutlierStatus,
) -> StorageResult<()> {
    tx.prepare_cached(
        "INSERT INTO event_outliers (event_id, room_id, status, json, received_ms)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_id = ?1)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .db()?
    .execute(params![
        pdu.event_id.as_str(),
        pdu.room_id.as_str(),
        status.as_str(),
        pdu.json.get(),
        now_ms()
    ])
    .db()?;
    Ok(())
}
