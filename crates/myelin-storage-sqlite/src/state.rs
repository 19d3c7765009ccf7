//! State snapshots and the rooms' current state, in SQLite. The layout of snapshot chains (what
//! a new snapshot stores, when a chain is broken) is [`myelin_storage::snapshot`]'s.

use myelin_storage::rows;
use myelin_storage::snapshot::{
    check_chain, unknown_base, CurrentStateMove, SnapshotRows, MAX_DELTA_DEPTH,
};
use myelin_storage::{NewState, SnapshotId, StateKey, StateMap, StorageResult};
use ruma::OwnedEventId;
use rusqlite::{Connection, OptionalExtension, Transaction};

use crate::convert::{parse_id, query_all, Db};

/// The rows `chain (id, base, level)` of snapshot `?1`'s delta chain, nearest first (`level` 0),
/// at most `?2` deep; a query goes on with a `SELECT` over `chain`.
macro_rules! snapshot_chain {
    () => {
        "WITH RECURSIVE chain (id, base, level) AS (
             SELECT snapshot_id, base_id, 0 FROM state_snapshots WHERE snapshot_id = ?1
             UNION ALL
             SELECT s.snapshot_id, s.base_id, chain.level + 1
             FROM state_snapshots s JOIN chain ON s.snapshot_id = chain.base
             WHERE chain.level < ?2
         )"
    };
}

/// Stores `base` (or empty) with `changes` applied as a new snapshot of `room_id`.
pub(crate) fn create_snapshot(
    tx: &Transaction<'_>,
    room_id: &str,
    base: Option<SnapshotId>,
    changes: &[(StateKey, OwnedEventId)],
) -> StorageResult<SnapshotId> {
    let new = match base {
        Some(base) => match SnapshotRows::delta(base, base_depth(tx, base)?, changes) {
            Some(delta) => delta,
            None => SnapshotRows::full(load_state(tx, base)?, changes),
        },
        None => SnapshotRows::full(StateMap::new(), changes),
    };
    tx.prepare_cached("INSERT INTO state_snapshots (room_id, base_id, depth) VALUES (?1, ?2, ?3)")
        .db()?
        .execute(rusqlite::params![room_id, new.base, new.depth])
        .db()?;
    let snapshot = tx.last_insert_rowid();
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO state_snapshot_entries (snapshot_id, type, state_key, event_id)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?;
    for ((kind, state_key), event_id) in &new.entries {
        insert
            .execute(rusqlite::params![
                snapshot,
                kind,
                state_key,
                event_id.as_str()
            ])
            .db()?;
    }
    Ok(snapshot)
}

/// The depth of an existing snapshot.
fn base_depth(tx: &Transaction<'_>, base: SnapshotId) -> StorageResult<i64> {
    tx.prepare_cached("SELECT depth FROM state_snapshots WHERE snapshot_id = ?1")
        .db()?
        .query_row([base], |row| row.get::<_, i64>(0))
        .optional()
        .db()?
        .ok_or_else(|| unknown_base(base))
}

/// The full state of a snapshot; an error if the snapshot does not exist.
pub(crate) fn load_state(conn: &Connection, snapshot: SnapshotId) -> StorageResult<StateMap> {
    let chain = conn
        .prepare_cached(concat!(
            snapshot_chain!(),
            " SELECT id, base FROM chain ORDER BY level DESC"
        ))
        .db()?
        .query_map(rusqlite::params![snapshot, MAX_DELTA_DEPTH + 1], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    check_chain(snapshot, &chain)?;
    let mut state = StateMap::new();
    // Oldest first, so that newer entries override.
    for (id, _) in chain {
        state.extend(query_all(
            conn,
            "SELECT type, state_key, event_id FROM state_snapshot_entries WHERE snapshot_id = ?1",
            [id],
            rows::state_entry,
        )?);
    }
    Ok(state)
}

/// Moves the room's current state to `snapshot` (the state after an event stored with `state`).
/// Writes only the delta when the snapshot extends the current one.
pub(crate) fn move_current_state(
    tx: &Transaction<'_>,
    room_id: &str,
    snapshot: SnapshotId,
    state: &NewState,
) -> StorageResult<()> {
    let current: Option<SnapshotId> = tx
        .prepare_cached("SELECT current_snapshot FROM rooms WHERE room_id = ?1")
        .db()?
        .query_row([room_id], |row| row.get(0))
        .optional()
        .db()?
        .flatten();
    match CurrentStateMove::new(current, snapshot, state) {
        CurrentStateMove::Stay => return Ok(()),
        CurrentStateMove::Delta(changes) => {
            let mut upsert = tx.prepare_cached(UPSERT_CURRENT_STATE).db()?;
            for ((kind, state_key), event_id) in changes {
                upsert
                    .execute(rusqlite::params![
                        room_id,
                        kind,
                        state_key,
                        event_id.as_str()
                    ])
                    .db()?;
            }
        }
        CurrentStateMove::Full => {
            rewrite_current_state(tx, room_id, &load_state(tx, snapshot)?)?;
        }
    }
    set_current_snapshot(tx, room_id, Some(snapshot))
}

/// Replaces the room's current state with `state`, which is no stored snapshot (a resolved
/// fork): the room's current snapshot becomes NULL, so that the next move rewrites in full.
pub(crate) fn replace_current_state(
    tx: &Transaction<'_>,
    room_id: &str,
    state: &StateMap,
) -> StorageResult<()> {
    rewrite_current_state(tx, room_id, state)?;
    set_current_snapshot(tx, room_id, None)
}

/// Makes the room's `current_state` rows equal `target`, writing only the rows that differ.
fn rewrite_current_state(
    tx: &Transaction<'_>,
    room_id: &str,
    target: &StateMap,
) -> StorageResult<()> {
    let existing = current_state(tx, room_id)?;
    let mut delete = tx
        .prepare_cached(
            "DELETE FROM current_state WHERE room_id = ?1 AND type = ?2 AND state_key = ?3",
        )
        .db()?;
    for (kind, state_key) in existing.keys().filter(|key| !target.contains_key(*key)) {
        delete
            .execute(rusqlite::params![room_id, kind, state_key])
            .db()?;
    }
    let mut upsert = tx.prepare_cached(UPSERT_CURRENT_STATE).db()?;
    for (key, event_id) in target {
        if existing.get(key) != Some(event_id) {
            upsert
                .execute(rusqlite::params![room_id, key.0, key.1, event_id.as_str()])
                .db()?;
        }
    }
    Ok(())
}

fn set_current_snapshot(
    tx: &Transaction<'_>,
    room_id: &str,
    snapshot: Option<SnapshotId>,
) -> StorageResult<()> {
    tx.prepare_cached("UPDATE rooms SET current_snapshot = ?2 WHERE room_id = ?1")
        .db()?
        .execute(rusqlite::params![room_id, snapshot])
        .db()?;
    Ok(())
}

const UPSERT_CURRENT_STATE: &str =
    "INSERT INTO current_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id";

pub(crate) fn current_state(conn: &Connection, room_id: &str) -> StorageResult<StateMap> {
    let entries = query_all(
        conn,
        "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?1",
        [room_id],
        rows::state_entry,
    )?;
    Ok(entries.into_iter().collect())
}

/// The entries of `keys` in a snapshot's state: for each key, the entry nearest the snapshot
/// along its delta chain.
pub(crate) fn load_entries(
    conn: &Connection,
    snapshot: SnapshotId,
    keys: &[StateKey],
) -> StorageResult<StateMap> {
    let mut lookup = conn
        .prepare_cached(concat!(
            snapshot_chain!(),
            " SELECT e.event_id FROM chain
                  JOIN state_snapshot_entries e
                    ON e.snapshot_id = chain.id AND e.type = ?3 AND e.state_key = ?4
                  ORDER BY chain.level LIMIT 1"
        ))
        .db()?;
    let mut found = StateMap::new();
    for (kind, state_key) in keys {
        let event_id = lookup
            .query_row(
                rusqlite::params![snapshot, MAX_DELTA_DEPTH + 1, kind, state_key],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .db()?;
        if let Some(event_id) = event_id {
            found.insert(
                (kind.clone(), state_key.clone()),
                parse_id(event_id, "state entry")?,
            );
        }
    }
    Ok(found)
}
