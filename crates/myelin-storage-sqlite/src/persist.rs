//! `persist_event`: everything one new event changes, written in the caller's transaction; and
//! events stored outside the timeline (outliers).

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{
    BackfilledEvent, NewEvent, NewOutlier, NewRoom, NewState, OutlierStatus, Persisted, SnapshotId,
    StorageResult,
};
use ruma::OwnedEventId;
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::value::RawValue;

use crate::convert::{now_ms, to_i64, Db};
use crate::member_numbers::MemberNumberCache;
use crate::pool::Positions;
use crate::push_counts as push;
use crate::state;

/// Persists a batch in order, each event at its own stream position.
pub(crate) fn persist_events(
    tx: &Transaction<'_>,
    positions: &mut Positions,
    numbers: &MemberNumberCache,
    events: Vec<NewEvent>,
) -> StorageResult<Vec<Persisted>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        positions.next_write();
        out.push(persist_event(tx, positions, numbers, event)?);
    }
    Ok(out)
}

/// Writes the event, its snapshot, txn mapping, current state, membership, redaction, the
/// room's forward extremities, its outbox rows and its notification rows; moves it out of the outliers if it was one.
/// A rejected event is stored (with its snapshot) but changes neither current state, nor
/// memberships, nor the event it claims to redact.
pub(crate) fn persist_event(
    tx: &Transaction<'_>,
    positions: &mut Positions,
    numbers: &MemberNumberCache,
    event: NewEvent,
) -> StorageResult<Persisted> {
    let pdu = &event.pdu;
    let room_id = pdu.room_id.as_str();
    let stream_pos = positions.take(tx)?;
    if let Some(room) = &event.room {
        insert_room(tx, room)?;
    }
    let snapshot = store_snapshot(tx, room_id, &event.state)?;
    let txn = event
        .txn
        .as_ref()
        .map(|(device, txn_id)| (device.as_str(), txn_id.as_str()));
    insert_event(tx, pdu, stream_pos, snapshot, txn)?;
    if let Some((device, txn_id)) = txn {
        record_txn(tx, pdu, device, txn_id)?;
    }
    if !pdu.rejected {
        apply_to_room(tx, &event, stream_pos, snapshot)?;
        push::write_push_actions(
            tx,
            numbers,
            room_id,
            pdu.event_id.as_str(),
            stream_pos,
            &event.push_actions,
        )?;
    }
    replace_forward_extremities(tx, room_id, &event.forward_extremities)?;
    queue_pdu(tx, pdu.event_id.as_str(), &event.destinations)?;
    Ok(Persisted {
        stream_pos,
        state_snapshot: snapshot,
    })
}

/// What an accepted event changes in its room: the current state, a membership, the event it
/// redacts.
fn apply_to_room(
    tx: &Transaction<'_>,
    event: &NewEvent,
    stream_pos: StreamPos,
    snapshot: SnapshotId,
) -> StorageResult<()> {
    let (room_id, event_id) = (event.pdu.room_id.as_str(), event.pdu.event_id.as_str());
    if event.updates_current_state {
        match &event.resolved_current_state {
            Some(resolved) => state::replace_current_state(tx, room_id, resolved)?,
            None => state::move_current_state(tx, room_id, snapshot, &event.state)?,
        }
    }
    if let Some(change) = &event.membership {
        let user_id = change.user_id.as_str();
        upsert_membership(
            tx,
            room_id,
            user_id,
            &change.membership,
            event_id,
            stream_pos,
        )?;
    }
    if let Some((target, redacted_json)) = &event.redaction {
        redact(tx, room_id, target.as_str(), redacted_json, event_id)?;
        push::forget_push_actions(tx, target.as_str())?;
    }
    Ok(())
}

fn insert_room(tx: &Transaction<'_>, room: &NewRoom) -> StorageResult<()> {
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
    Ok(())
}

/// The snapshot of the state after the event: the given one, or a new one.
fn store_snapshot(
    tx: &Transaction<'_>,
    room_id: &str,
    new_state: &NewState,
) -> StorageResult<SnapshotId> {
    match new_state {
        NewState::Same(id) => Ok(*id),
        NewState::Changed { base, changes } => state::create_snapshot(tx, room_id, *base, changes),
    }
}

/// Writes the event row at `stream_pos` (`txn`: the `(device, txn_id)` of the client request
/// that sent it) and takes the event out of the outliers: it is now in the timeline.
fn insert_event(
    tx: &Transaction<'_>,
    pdu: &Pdu,
    stream_pos: StreamPos,
    snapshot: SnapshotId,
    txn: Option<(&str, &str)>,
) -> StorageResult<()> {
    tx.prepare_cached(
        "INSERT INTO events (event_id, room_id, stream_pos, depth, type, state_key, sender,
                             origin_server_ts, json, rejected, state_snapshot, txn_device, txn_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .db()?
    .execute(params![
        pdu.event_id.as_str(),
        pdu.room_id.as_str(),
        stream_pos.0,
        to_i64(pdu.depth, "depth")?,
        pdu.kind.to_string(),
        pdu.state_key.as_deref(),
        pdu.sender.as_str(),
        to_i64(u64::from(pdu.origin_server_ts.get()), "origin_server_ts")?,
        pdu.json.get(),
        pdu.rejected,
        snapshot,
        txn.map(|(device, _)| device),
        txn.map(|(_, txn_id)| txn_id),
    ])
    .db()?;
    tx.prepare_cached("DELETE FROM event_outliers WHERE event_id = ?1")
        .db()?
        .execute([pdu.event_id.as_str()])
        .db()?;
    if !pdu.rejected {
        index_relation(tx, pdu, stream_pos)?;
        index_search_text(tx, pdu, stream_pos)?;
    }
    Ok(())
}

/// Adds the event's searchable text (if it has some) to the search index.
fn index_search_text(tx: &Transaction<'_>, pdu: &Pdu, stream_pos: StreamPos) -> StorageResult<()> {
    let Some(text) = pdu.searchable_text() else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO event_search (event_id, room_id, key, stream_pos, sender, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
    )
    .db()?
    .execute(params![
        pdu.event_id.as_str(),
        pdu.room_id.as_str(),
        text.key,
        stream_pos.0,
        pdu.sender.as_str(),
        text.value,
    ])
    .db()?;
    Ok(())
}

/// Adds the event's relation (if it declares one) to the relations index.
fn index_relation(tx: &Transaction<'_>, pdu: &Pdu, stream_pos: StreamPos) -> StorageResult<()> {
    let Some(relation) = pdu.relation() else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO event_relations
             (event_id, room_id, parent_id, rel_type, event_type, sender, stream_pos)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        pdu.event_id.as_str(),
        pdu.room_id.as_str(),
        relation.event_id.as_str(),
        relation.rel_type,
        pdu.kind.to_string(),
        pdu.sender.as_str(),
        stream_pos.0,
    ])
    .db()?;
    Ok(())
}

/// Maps the client request `(sender, device, txn_id)` to the event, for `event_for_txn`.
fn record_txn(tx: &Transaction<'_>, pdu: &Pdu, device: &str, txn_id: &str) -> StorageResult<()> {
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
    Ok(())
}

/// Sets the user's membership in the room to the one `event_id` carries, at `stream_pos`; a join
/// also records where the user joined (a profile change keeps it).
pub(crate) fn upsert_membership(
    tx: &Transaction<'_>,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_pos: StreamPos,
) -> StorageResult<()> {
    push::reset_on_membership(tx, room_id, user_id, membership)?;
    tx.prepare_cached(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos, forgotten, joined_pos)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, CASE WHEN ?3 = 'join' THEN ?5 END)
         ON CONFLICT (room_id, user_id) DO UPDATE SET
             membership = excluded.membership, event_id = excluded.event_id,
             stream_pos = excluded.stream_pos, forgotten = 0,
             -- A profile change (join to join) is no new join: counts and visibility
             -- reckon from where the user joined.
             joined_pos = CASE
                 WHEN room_memberships.membership = 'join' AND excluded.membership = 'join'
                 THEN room_memberships.joined_pos
                 ELSE COALESCE(excluded.joined_pos, room_memberships.joined_pos) END",
    )
    .db()?
    .execute(params![room_id, user_id, membership, event_id, stream_pos.0])
    .db()?;
    Ok(())
}

/// Replaces the JSON of the room's event `target` with its redacted form, which has lost its
/// relation too.
fn redact(
    tx: &Transaction<'_>,
    room_id: &str,
    target: &str,
    redacted_json: &RawValue,
    redacted_by: &str,
) -> StorageResult<()> {
    tx.prepare_cached(
        "UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1 AND room_id = ?4",
    )
    .db()?
    .execute(params![target, redacted_json.get(), redacted_by, room_id])
    .db()?;
    tx.prepare_cached("DELETE FROM event_relations WHERE event_id = ?1 AND room_id = ?2")
        .db()?
        .execute(params![target, room_id])
        .db()?;
    tx.prepare_cached("DELETE FROM event_search WHERE event_id = ?1 AND room_id = ?2")
        .db()?
        .execute(params![target, room_id])
        .db()?;
    Ok(())
}

fn replace_forward_extremities(
    tx: &Transaction<'_>,
    room_id: &str,
    extremities: &[OwnedEventId],
) -> StorageResult<()> {
    tx.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1")
        .db()?
        .execute([room_id])
        .db()?;
    let mut insert = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
        )
        .db()?;
    for event_id in extremities {
        insert.execute(params![room_id, event_id.as_str()]).db()?;
    }
    Ok(())
}

/// Queues the PDU for each destination in the federation outbox.
fn queue_pdu(
    tx: &Transaction<'_>,
    event_id: &str,
    destinations: &[ruma::OwnedServerName],
) -> StorageResult<()> {
    if destinations.is_empty() {
        return Ok(());
    }
    let mut queue = tx
        .prepare_cached(
            "INSERT INTO federation_outbox (destination, event_id, created_ms) VALUES (?1, ?2, ?3)",
        )
        .db()?;
    let now = now_ms();
    for destination in destinations {
        queue
            .execute(params![destination.as_str(), event_id, now])
            .db()?;
    }
    Ok(())
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
        insert_event(tx, &pdu, StreamPos(next), state_snapshot, None)?;
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
