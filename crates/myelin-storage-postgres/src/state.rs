//! State snapshots and the rooms' current state, in PostgreSQL. The layout of snapshot chains
//! (what a new snapshot stores, when a chain is broken) is [`myelin_storage::snapshot`]'s, the
//! same as in the SQLite backend.

use std::collections::{BTreeMap, HashMap};

use myelin_storage::rows;
use myelin_storage::snapshot::{
    check_chain, unknown_base, CurrentStateMove, SnapshotRows, MAX_DELTA_DEPTH,
};
use myelin_storage::{NewState, SnapshotId, StateKey, StateMap, StorageResult};
use ruma::OwnedEventId;

use crate::convert::{get, parse_id, PgRow};
use crate::pool::Conn;

/// The rows `chain (id, base, level)` of snapshot `$1`'s delta chain, nearest first (`level` 0),
/// at most `$2` deep; a query goes on with a `SELECT` over `chain`.
macro_rules! snapshot_chain {
    () => {
        "WITH RECURSIVE chain (id, base, level) AS (
             SELECT snapshot_id, base_id, 0::BIGINT FROM state_snapshots WHERE snapshot_id = $1
             UNION ALL
             SELECT s.snapshot_id, s.base_id, chain.level + 1
             FROM state_snapshots s JOIN chain ON s.snapshot_id = chain.base
             WHERE chain.level < $2::BIGINT
         )"
    };
}

/// Stores `base` (or empty) with `changes` applied as a new snapshot of `room_id`.
pub(crate) async fn create_snapshot(
    conn: &mut Conn,
    room_id: &str,
    base: Option<SnapshotId>,
    changes: &[(StateKey, OwnedEventId)],
) -> StorageResult<SnapshotId> {
    let new = match base {
        Some(base) => match SnapshotRows::delta(base, base_depth(conn, base).await?, changes) {
            Some(delta) => delta,
            None => SnapshotRows::full(load_state(conn, base).await?, changes),
        },
        None => SnapshotRows::full(StateMap::new(), changes),
    };
    let row = conn
        .query_one(
            "INSERT INTO state_snapshots (room_id, base_id, depth) VALUES ($1, $2, $3) RETURNING snapshot_id",
            &[&room_id, &new.base, &new.depth],
        )
        .await?;
    let snapshot: SnapshotId = get(&row, 0)?;
    let (kinds, keys, ids) = columns(
        new.entries
            .iter()
            .map(|((k, s), e)| (k.as_str(), s.as_str(), e.as_str())),
    );
    conn.execute(
        "INSERT INTO state_snapshot_entries (snapshot_id, type, state_key, event_id)
         SELECT $1, t, k, e FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[]) AS u (t, k, e)",
        &[&snapshot, &kinds, &keys, &ids],
    )
    .await?;
    Ok(snapshot)
}

/// The depth of an existing snapshot.
async fn base_depth(conn: &mut Conn, base: SnapshotId) -> StorageResult<i64> {
    let row = conn
        .query_opt(
            "SELECT depth FROM state_snapshots WHERE snapshot_id = $1",
            &[&base],
        )
        .await?
        .ok_or_else(|| unknown_base(base))?;
    get(&row, 0)
}

/// The full state of a snapshot; an error if the snapshot does not exist.
pub(crate) async fn load_state(conn: &mut Conn, snapshot: SnapshotId) -> StorageResult<StateMap> {
    let chain = conn
        .query(
            concat!(
                snapshot_chain!(),
                " SELECT id, base FROM chain ORDER BY level DESC"
            ),
            &[&snapshot, &(MAX_DELTA_DEPTH + 1)],
        )
        .await?;
    let chain: Vec<(i64, Option<i64>)> = chain
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<StorageResult<_>>()?;
    check_chain(snapshot, &chain)?;
    let ids: Vec<i64> = chain.iter().map(|(id, _)| *id).collect();
    let entries = conn
        .query(
            "SELECT type, state_key, event_id, snapshot_id FROM state_snapshot_entries
             WHERE snapshot_id = ANY($1::BIGINT[])",
            &[&ids],
        )
        .await?;
    let mut by_snapshot: HashMap<i64, Vec<_>> = HashMap::new();
    for row in &entries {
        let entry = rows::state_entry(&PgRow(row))?;
        by_snapshot.entry(get(row, 3)?).or_default().push(entry);
    }
    let mut state = StateMap::new();
    // Oldest first, so that newer entries override.
    for id in ids {
        state.extend(by_snapshot.remove(&id).unwrap_or_default());
    }
    Ok(state)
}

/// Moves the room's current state to `snapshot` (the state after an event stored with `state`).
/// Writes only the delta when the snapshot extends the current one.
pub(crate) async fn move_current_state(
    conn: &mut Conn,
    room_id: &str,
    snapshot: SnapshotId,
    state: &NewState,
) -> StorageResult<()> {
    let current: Option<SnapshotId> = match conn
        .query_opt(
            "SELECT current_snapshot FROM rooms WHERE room_id = $1",
            &[&room_id],
        )
        .await?
    {
        Some(row) => get(&row, 0)?,
        None => None,
    };
    match CurrentStateMove::new(current, snapshot, state) {
        CurrentStateMove::Stay => return Ok(()),
        CurrentStateMove::Delta(changes) => {
            let upserts = changes.iter().map(|((kind, state_key), event_id)| {
                (kind.as_str(), state_key.as_str(), event_id.as_str())
            });
            upsert_current_state(conn, room_id, upserts).await?;
        }
        CurrentStateMove::Full => {
            let target = load_state(conn, snapshot).await?;
            rewrite_current_state(conn, room_id, &target).await?;
        }
    }
    set_current_snapshot(conn, room_id, Some(snapshot)).await
}

/// Replaces the room's current state with `state`, which is no stored snapshot (a resolved
/// fork): the room's current snapshot becomes NULL, so that the next move rewrites in full.
pub(crate) async fn replace_current_state(
    conn: &mut Conn,
    room_id: &str,
    state: &StateMap,
) -> StorageResult<()> {
    rewrite_current_state(conn, room_id, state).await?;
    set_current_snapshot(conn, room_id, None).await
}

/// Makes the room's `current_state` rows equal `target`, writing only the rows that differ.
async fn rewrite_current_state(
    conn: &mut Conn,
    room_id: &str,
    target: &StateMap,
) -> StorageResult<()> {
    let existing = current_state(conn, room_id).await?;
    let removed = existing
        .keys()
        .filter(|key| !target.contains_key(*key))
        .map(|(kind, state_key)| (kind.as_str(), state_key.as_str(), ""));
    let (kinds, keys, _) = columns(removed);
    conn.execute(
        "DELETE FROM current_state c USING UNNEST($2::TEXT[], $3::TEXT[]) AS u (t, k)
         WHERE c.room_id = $1 AND c.type = u.t AND c.state_key = u.k",
        &[&room_id, &kinds, &keys],
    )
    .await?;
    let changed = target
        .iter()
        .filter(|(key, event_id)| existing.get(*key) != Some(*event_id))
        .map(|((kind, state_key), event_id)| {
            (kind.as_str(), state_key.as_str(), event_id.as_str())
        });
    upsert_current_state(conn, room_id, changed).await
}

/// Upserts current state rows; a later entry for the same key wins, as with one upsert each.
async fn upsert_current_state<'a>(
    conn: &mut Conn,
    room_id: &str,
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> StorageResult<()> {
    // One statement may not touch a row twice, so keep only the last entry per key.
    let mut deduped: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (kind, state_key, event_id) in rows {
        deduped.insert((kind, state_key), event_id);
    }
    let (kinds, keys, ids) = columns(deduped.into_iter().map(|((k, s), e)| (k, s, e)));
    conn.execute(
        "INSERT INTO current_state (room_id, type, state_key, event_id)
         SELECT $1, t, k, e FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[]) AS u (t, k, e)
         ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id",
        &[&room_id, &kinds, &keys, &ids],
    )
    .await?;
    Ok(())
}

async fn set_current_snapshot(
    conn: &mut Conn,
    room_id: &str,
    snapshot: Option<SnapshotId>,
) -> StorageResult<()> {
    conn.execute(
        "UPDATE rooms SET current_snapshot = $2 WHERE room_id = $1",
        &[&room_id, &snapshot],
    )
    .await?;
    Ok(())
}

pub(crate) async fn current_state(conn: &mut Conn, room_id: &str) -> StorageResult<StateMap> {
    let entries = conn
        .query_decode(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1",
            &[&room_id],
            rows::state_entry,
        )
        .await?;
    Ok(entries.into_iter().collect())
}

/// Splits `(type, state_key, event_id)` triples into three columns for `UNNEST`.
fn columns<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let (mut kinds, mut keys, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for (kind, state_key, event_id) in rows {
        kinds.push(kind);
        keys.push(state_key);
        ids.push(event_id);
    }
    (kinds, keys, ids)
}

/// The entries of `keys` in a snapshot's state: for each key, the entry nearest the snapshot
/// along its delta chain.
pub(crate) async fn load_entries(
    conn: &mut Conn,
    snapshot: SnapshotId,
    keys: &[StateKey],
) -> StorageResult<StateMap> {
    let mut found = StateMap::new();
    for (kind, state_key) in keys {
        let row = conn
            .query_opt(
                concat!(
                    snapshot_chain!(),
                    " SELECT e.event_id FROM chain
                      JOIN state_snapshot_entries e
                        ON e.snapshot_id = chain.id AND e.type = $3 AND e.state_key = $4
                      ORDER BY chain.level LIMIT 1"
                ),
                &[&snapshot, &(MAX_DELTA_DEPTH + 1), kind, state_key],
            )
            .await?;
        if let Some(row) = row {
            found.insert(
                (kind.clone(), state_key.clone()),
                parse_id(get::<String>(&row, 0)?, "state entry")?,
            );
        }
    }
    Ok(found)
}
