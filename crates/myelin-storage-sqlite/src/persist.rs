//! `persist_event`: everything one new event changes, written in the caller's transaction.

use myelin_storage::{NewEvent, NewState, Persisted, StorageResult};
use rusqlite::{params, Transaction};

use crate::convert::{to_i64, Db};
use crate::pool::Positions;
use crate::state;

/// Writes the event, its snapshot, txn mapping, current state, membership, redaction and the
/// room's forward extremities. A rejected event is stored (with its snapshot) but changes
/// neither current state, nor memberships, nor the event it claims to redact.
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
            state::move_current_state(tx, room_id, snapshot, &new_state)?;
        }
        if let Some(change) = &membership {
            tx.prepare_cached(
                "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos, forgotten)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET
                     membership = excluded.membership, event_id = excluded.event_id,
                     stream_pos = excluded.stream_pos, forgotten = 0",
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

    Ok(Persisted {
        stream_pos,
        state_snapshot: snapshot,
    })
}
