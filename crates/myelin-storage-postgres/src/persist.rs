//! `persist_event`: everything one new event changes, written in the caller's transaction; and
//! events stored outside the timeline (outliers).

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{
    BackfilledEvent, NewEvent, NewRoom, NewState, OutlierStatus, Persisted, SnapshotId,
    StorageResult,
};
use ruma::OwnedEventId;
use serde_json::value::RawValue;

use crate::convert::{get, now_ms, to_i64};
use crate::pool::Conn;
use crate::push_counts as push;
use crate::state;

/// Takes the next stream position. The caller's write transaction holds the write lock, and the
/// counter row stays locked until it commits, so positions commit in order.
pub(crate) async fn take_position(conn: &mut Conn) -> StorageResult<StreamPos> {
    let row = conn
        .query_one(
            "UPDATE stream_counter SET pos = pos + 1 WHERE id = 0 RETURNING pos",
            &[],
        )
        .await?;
    Ok(StreamPos(get(&row, 0)?))
}

/// Persists a batch in order; each event takes its own stream position.
pub(crate) async fn persist_events(
    conn: &mut Conn,
    events: Vec<NewEvent>,
) -> StorageResult<Vec<Persisted>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        out.push(persist_event(conn, event).await?);
    }
    Ok(out)
}

/// Writes the event, its snapshot, txn mapping, current state, membership, redaction, the
/// room's forward extremities, its outbox rows and its notification rows; moves it out of the outliers if it was one.
/// A rejected event is stored (with its snapshot) but changes neither current state, nor
/// memberships, nor the event it claims to redact.
pub(crate) async fn persist_event(conn: &mut Conn, event: NewEvent) -> StorageResult<Persisted> {
    let pdu = &event.pdu;
    let room_id = pdu.room_id.as_str();
    let stream_pos = take_position(conn).await?;
    if let Some(room) = &event.room {
        insert_room(conn, room).await?;
    }
    let snapshot = store_snapshot(conn, room_id, &event.state).await?;
    let txn = event
        .txn
        .as_ref()
        .map(|(device, txn_id)| (device.as_str(), txn_id.as_str()));
    insert_event(conn, pdu, stream_pos, snapshot, txn).await?;
    if let Some((device, txn_id)) = txn {
        record_txn(conn, pdu, device, txn_id).await?;
    }
    if !pdu.rejected {
        apply_to_room(conn, &event, stream_pos, snapshot).await?;
        push::write_push_actions(
            conn,
            room_id,
            pdu.event_id.as_str(),
            stream_pos,
            &event.push_actions,
        )
        .await?;
    }
    replace_forward_extremities(conn, room_id, &event.forward_extremities).await?;
    queue_pdu(conn, pdu.event_id.as_str(), &event.destinations).await?;
    Ok(Persisted {
        stream_pos,
        state_snapshot: snapshot,
    })
}

/// What an accepted event changes in its room: the current state, a membership, the event it
/// redacts.
async fn apply_to_room(
    conn: &mut Conn,
    event: &NewEvent,
    stream_pos: StreamPos,
    snapshot: SnapshotId,
) -> StorageResult<()> {
    let (room_id, event_id) = (event.pdu.room_id.as_str(), event.pdu.event_id.as_str());
    if event.updates_current_state {
        match &event.resolved_current_state {
            Some(resolved) => state::replace_current_state(conn, room_id, resolved).await?,
            None => state::move_current_state(conn, room_id, snapshot, &event.state).await?,
        }
    }
    if let Some(change) = &event.membership {
        let user_id = change.user_id.as_str();
        upsert_membership(
            conn,
            room_id,
            user_id,
            &change.membership,
            event_id,
            stream_pos,
        )
        .await?;
    }
    if let Some((target, redacted_json)) = &event.redaction {
        redact(conn, room_id, target.as_str(), redacted_json, event_id).await?;
        push::forget_push_actions(conn, target.as_str()).await?;
    }
    Ok(())
}

async fn insert_room(conn: &mut Conn, room: &NewRoom) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO rooms (room_id, version, creator, created_ms) VALUES ($1, $2, $3, $4)",
        &[
            &room.room_id.as_str(),
            &room.version.as_str(),
            &room.creator.as_str(),
            &to_i64(room.created_ms, "created_ms")?,
        ],
    )
    .await?;
    Ok(())
}

/// The snapshot of the state after the event: the given one, or a new one.
async fn store_snapshot(
    conn: &mut Conn,
    room_id: &str,
    new_state: &NewState,
) -> StorageResult<SnapshotId> {
    match new_state {
        NewState::Same(id) => Ok(*id),
        NewState::Changed { base, changes } => {
            state::create_snapshot(conn, room_id, *base, changes).await
        }
    }
}

/// Writes the event row at `stream_pos` (`txn`: the `(device, txn_id)` of the client request
/// that sent it) and takes the event out of the outliers: it is now in the timeline.
async fn insert_event(
    conn: &mut Conn,
    pdu: &Pdu,
    stream_pos: StreamPos,
    snapshot: SnapshotId,
    txn: Option<(&str, &str)>,
) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO events (event_id, room_id, stream_pos, depth, type, state_key, sender,
                             origin_server_ts, json, rejected, state_snapshot, txn_device, txn_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &pdu.event_id.as_str(),
            &pdu.room_id.as_str(),
            &stream_pos.0,
            &to_i64(pdu.depth, "depth")?,
            &pdu.kind.to_string(),
            &pdu.state_key.as_deref(),
            &pdu.sender.as_str(),
            &to_i64(u64::from(pdu.origin_server_ts.get()), "origin_server_ts")?,
            &pdu.json.get(),
            &pdu.rejected,
            &snapshot,
            &txn.map(|(device, _)| device),
            &txn.map(|(_, txn_id)| txn_id),
        ],
    )
    .await?;
    conn.execute(
        "DELETE FROM event_outliers WHERE event_id = $1",
        &[&pdu.event_id.as_str()],
    )
    .await?;
    if !pdu.rejected {
        index_relation(conn, pdu, stream_pos).await?;
        index_search_text(conn, pdu, stream_pos).await?;
    }
    Ok(())
}

/// Adds the event's searchable text (if it has some) to the search index.
async fn index_search_text(conn: &mut Conn, pdu: &Pdu, stream_pos: StreamPos) -> StorageResult<()> {
    let Some(text) = pdu.searchable_text() else {
        return Ok(());
    };
    conn.execute(
        "INSERT INTO event_search (event_id, room_id, key, stream_pos, sender, value)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        &[
            &pdu.event_id.as_str(),
            &pdu.room_id.as_str(),
            &text.key,
            &stream_pos.0,
            &pdu.sender.as_str(),
            &text.value,
        ],
    )
    .await?;
    Ok(())
}

/// Adds the event's relation (if it declares one) to the relations index.
async fn index_relation(conn: &mut Conn, pdu: &Pdu, stream_pos: StreamPos) -> StorageResult<()> {
    let Some(relation) = pdu.relation() else {
        return Ok(());
    };
    conn.execute(
        "INSERT INTO event_relations
             (event_id, room_id, parent_id, rel_type, event_type, sender, stream_pos)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &pdu.event_id.as_str(),
            &pdu.room_id.as_str(),
            &relation.event_id.as_str(),
            &relation.rel_type,
            &pdu.kind.to_string(),
            &pdu.sender.as_str(),
            &stream_pos.0,
        ],
    )
    .await?;
    Ok(())
}

/// Maps the client request `(sender, device, txn_id)` to the event, for `event_for_txn`.
async fn record_txn(conn: &mut Conn, pdu: &Pdu, device: &str, txn_id: &str) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO event_txns (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)",
        &[
            &pdu.sender.as_str(),
            &device,
            &txn_id,
            &pdu.event_id.as_str(),
        ],
    )
    .await?;
    Ok(())
}

/// Sets the user's membership in the room to the one `event_id` carries, at `stream_pos`; a join
/// also records where the user joined (a profile change keeps it).
pub(crate) async fn upsert_membership(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_pos: StreamPos,
) -> StorageResult<()> {
    push::reset_on_membership(conn, room_id, user_id, membership).await?;
    conn.execute(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos, forgotten, joined_pos)
         VALUES ($1, $2, $3, $4, $5, FALSE, CASE WHEN $3::TEXT = 'join' THEN $5::BIGINT END)
         ON CONFLICT (room_id, user_id) DO UPDATE SET
             membership = excluded.membership, event_id = excluded.event_id,
             stream_pos = excluded.stream_pos, forgotten = FALSE,
             -- A profile change (join to join) is no new join: counts and visibility
             -- reckon from where the user joined.
             joined_pos = CASE
                 WHEN room_memberships.membership = 'join' AND excluded.membership = 'join'
                 THEN room_memberships.joined_pos
                 ELSE COALESCE(excluded.joined_pos, room_memberships.joined_pos) END",
        &[&room_id, &user_id, &membership, &event_id, &stream_pos.0],
    )
    .await?;
    Ok(())
}

/// Replaces the JSON of the room's event `target` with its redacted form, which has lost its
/// relation too.
async fn redact(
    conn: &mut Conn,
    room_id: &str,
    target: &str,
    redacted_json: &RawValue,
    redacted_by: &str,
) -> StorageResult<()> {
    conn.execute(
        "UPDATE events SET json = $2, redacted_by = $3 WHERE event_id = $1 AND room_id = $4",
        &[&target, &redacted_json.get(), &redacted_by, &room_id],
    )
    .await?;
    conn.execute(
        "DELETE FROM event_relations WHERE event_id = $1 AND room_id = $2",
        &[&target, &room_id],
    )
    .await?;
    conn.execute(
        "DELETE FROM event_search WHERE event_id = $1 AND room_id = $2",
        &[&target, &room_id],
    )
    .await?;
    Ok(())
}

async fn replace_forward_extremities(
    conn: &mut Conn,
    room_id: &str,
    extremities: &[OwnedEventId],
) -> StorageResult<()> {
    conn.execute(
        "DELETE FROM forward_extremities WHERE room_id = $1",
        &[&room_id],
    )
    .await?;
    let extremities: Vec<&str> = extremities.iter().map(|id| id.as_str()).collect();
    conn.execute(
        "INSERT INTO forward_extremities (room_id, event_id) SELECT $1, e FROM UNNEST($2::TEXT[]) AS e
         ON CONFLICT DO NOTHING",
        &[&room_id, &extremities],
    )
    .await?;
    Ok(())
}

/// Queues the PDU for each destination in the federation outbox.
async fn queue_pdu(
    conn: &mut Conn,
    event_id: &str,
    destinations: &[ruma::OwnedServerName],
) -> StorageResult<()> {
    if destinations.is_empty() {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO federation_outbox (destination, event_id, created_ms)
         SELECT d, $2, $3 FROM UNNEST($1::TEXT[]) AS d",
        &[
            &crate::federation::as_strs(destinations),
            &event_id,
            &now_ms(),
        ],
    )
    .await?;
    Ok(())
}

/// Places backfilled history below every stored position (see
/// `RoomStore::persist_backfilled`). Takes no position from the counter: the caller's write
/// transaction holds the write lock, so the `MIN` read and the inserts cannot interleave with
/// another write.
pub(crate) async fn persist_backfilled(
    conn: &mut Conn,
    events: Vec<BackfilledEvent>,
) -> StorageResult<Vec<StreamPos>> {
    let row = conn
        .query_one("SELECT MIN(stream_pos) FROM events", &[])
        .await?;
    let lowest: Option<i64> = get(&row, 0)?;
    // Never 0 or above: positions from 1 up belong to the counter, and 0 means "before
    // everything" to forward pagination.
    let mut next = lowest.unwrap_or(0).min(0) - 1;
    let mut out = Vec::with_capacity(events.len());
    for BackfilledEvent {
        pdu,
        state_snapshot,
    } in events
    {
        let existing = conn
            .query_opt(
                "SELECT stream_pos FROM events WHERE event_id = $1",
                &[&pdu.event_id.as_str()],
            )
            .await?;
        if let Some(row) = existing {
            out.push(StreamPos(get(&row, 0)?));
            continue;
        }
        insert_event(conn, &pdu, StreamPos(next), state_snapshot, None).await?;
        out.push(StreamPos(next));
        next -= 1;
    }
    Ok(out)
}

/// Stores events outside the timeline; one already stored, in either place, is left as it is.
pub(crate) async fn insert_outliers<'a>(
    conn: &mut Conn,
    outliers: impl IntoIterator<Item = (&'a Pdu, OutlierStatus)>,
) -> StorageResult<()> {
    let (mut ids, mut rooms, mut statuses, mut jsons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (pdu, status) in outliers {
        ids.push(pdu.event_id.as_str());
        rooms.push(pdu.room_id.as_str());
        statuses.push(status.as_str());
        jsons.push(pdu.json.get());
    }
    if ids.is_empty() {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO event_outliers (event_id, room_id, status, json, received_ms)
         SELECT e, r, s, j, $5 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[]) AS u (e, r, s, j)
         WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.event_id = u.e)
         ON CONFLICT (event_id) DO NOTHING",
        &[&ids, &rooms, &statuses, &jsons, &now_ms()],
    )
    .await?;
    Ok(())
}
