//! The unread counters' fold (see `myelin_storage::push_fold`): the pending `push_events` rows
//! (after `push_fold.counted_to`) added to `unread_counts` in one write with the new position,
//! and the reads of pending rows that counts add themselves.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use myelin_storage::push_fold::{by_room, count_rows, named, PendingPush};
use myelin_storage::{MemberNumber, NotificationCounts, StorageResult, RECOUNT_SCAN};
use rusqlite::{params, Connection, Transaction};

use crate::convert::{limit, query_all, Db};
use crate::push_counts::{member_number, read_positions};

/// The position up to which `unread_counts` holds every `push_events` row.
pub(crate) fn counted_to(conn: &Connection) -> StorageResult<i64> {
    conn.prepare_cached("SELECT counted_to FROM push_fold WHERE id = 0")
        .db()?
        .query_row([], |r| r.get(0))
        .db()
}

/// The room's pending rows, newest first, at most [`RECOUNT_SCAN`].
pub(crate) fn pending_of_room(conn: &Connection, room_id: &str) -> StorageResult<Vec<PendingPush>> {
    query_all(
        conn,
        "SELECT p.stream_pos, p.thread_id, p.notified
         FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
         WHERE e.room_id = ?1 AND e.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
         ORDER BY e.stream_pos DESC LIMIT ?2",
        params![room_id, limit(RECOUNT_SCAN)],
        |row| {
            Ok(PendingPush::parse(
                row.int(0)?,
                room_id.to_owned(),
                row.opt_text(1)?,
                &row.text(2)?,
            ))
        },
    )
}

/// The pending rows of the rooms the user is joined to, newest first, at most [`RECOUNT_SCAN`].
pub(crate) fn pending_of_user_rooms(
    conn: &Connection,
    user_id: &str,
) -> StorageResult<Vec<PendingPush>> {
    query_all(
        conn,
        "SELECT p.stream_pos, e.room_id, p.thread_id, p.notified
         FROM push_events p JOIN events e ON e.stream_pos = p.stream_pos
         WHERE p.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
           AND e.room_id IN (
               SELECT room_id FROM room_memberships WHERE user_id = ?1 AND membership = 'join')
         ORDER BY p.stream_pos DESC LIMIT ?2",
        params![user_id, limit(RECOUNT_SCAN)],
        decode_pending,
    )
}

fn decode_pending(row: &dyn myelin_storage::rows::Row) -> StorageResult<PendingPush> {
    Ok(PendingPush::parse(
        row.int(0)?,
        row.text(1)?,
        row.opt_text(2)?,
        &row.text(3)?,
    ))
}

/// Adds the oldest `max` pending rows to the counters and moves the position past them.
pub(crate) fn fold(tx: &Transaction<'_>, max: usize) -> StorageResult<usize> {
    let rows = query_all(
        tx,
        "SELECT p.stream_pos, e.room_id, p.thread_id, p.notified
         FROM push_events p JOIN events e ON e.stream_pos = p.stream_pos
         WHERE p.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
         ORDER BY p.stream_pos LIMIT ?1",
        params![limit(max)],
        decode_pending,
    )?;
    let Some(last) = rows.last().map(|r| r.pos) else {
        return Ok(0);
    };
    for (room_id, room_rows) in by_room(&rows) {
        for (user_id, number) in notified_users(tx, room_id, &room_rows)? {
            let read = read_positions(tx, room_id, &user_id)?;
            for (thread, c) in count_rows(&user_id, number, &read, &room_rows) {
                add_to_counter(tx, room_id, &user_id, &thread, c)?;
            }
        }
    }
    tx.prepare_cached("UPDATE push_fold SET counted_to = ?1 WHERE id = 0")
        .db()?
        .execute(params![last])
        .db()?;
    Ok(rows.len())
}

/// Adds `c` to the user's counter of the timeline (creating it).
pub(crate) fn add_to_counter(
    tx: &Transaction<'_>,
    room_id: &str,
    user_id: &str,
    thread: &str,
    c: NotificationCounts,
) -> StorageResult<()> {
    tx.prepare_cached(
        "INSERT INTO unread_counts (room_id, user_id, thread_id, notifications, highlights)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room_id, user_id, thread_id) DO UPDATE
         SET notifications = notifications + excluded.notifications,
             highlights = highlights + excluded.highlights",
    )
    .db()?
    .execute(params![
        room_id,
        user_id,
        thread,
        i64::try_from(c.notifications).unwrap_or(i64::MAX),
        i64::try_from(c.highlights).unwrap_or(i64::MAX)
    ])
    .db()?;
    Ok(())
}

/// The users one room's rows notify, with their member numbers.
fn notified_users(
    tx: &Transaction<'_>,
    room_id: &str,
    rows: &[&PendingPush],
) -> StorageResult<Vec<(String, Option<MemberNumber>)>> {
    let (numbers, ids) = named(rows);
    let mut users: HashMap<String, Option<MemberNumber>> = HashMap::new();
    if !numbers.is_empty() {
        let members = query_all(
            tx,
            "SELECT user_id, member_no FROM push_members WHERE room_id = ?1",
            params![room_id],
            |row| Ok((row.text(0)?, row.int(1)?)),
        )?;
        for (user_id, number) in members {
            if let Ok(number) = MemberNumber::try_from(number) {
                if numbers.contains(&number) {
                    users.insert(user_id, Some(number));
                }
            }
        }
    }
    for user_id in ids {
        if let Entry::Vacant(e) = users.entry(user_id) {
            let number = member_number(tx, room_id, e.key())?;
            e.insert(number);
        }
    }
    Ok(users.into_iter().collect())
}
