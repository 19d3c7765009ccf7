//! The unread counters' fold (see `myelin_storage::push_fold`): the pending `push_events` rows
//! (after `push_fold.counted_to`) added to `unread_counts` in one write with the new position,
//! and the read of pending rows that the count of rooms with unread notifications adds (a room's
//! own counts read theirs with the counters, in `push_counts.rs`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use myelin_storage::push_fold::{by_room, count_rows, named, PendingPush};
use myelin_storage::rows::Row;
use myelin_storage::{MemberNumber, NotificationCounts, StorageResult, RECOUNT_SCAN};

use crate::convert::limit;
use crate::pool::Conn;
use crate::push_counts::{member_number, read_positions};

/// The position up to which `unread_counts` holds every `push_events` row.
pub(crate) async fn counted_to(conn: &mut Conn) -> StorageResult<i64> {
    let row = conn
        .query_one("SELECT counted_to FROM push_fold WHERE id = 0", &[])
        .await?;
    crate::convert::get(&row, 0)
}

/// The pending rows of the rooms the user is joined to, newest first, at most [`RECOUNT_SCAN`].
pub(crate) async fn pending_of_user_rooms(
    conn: &mut Conn,
    user_id: &str,
) -> StorageResult<Vec<PendingPush>> {
    conn.query_decode(
        "SELECT p.stream_pos, e.room_id, p.thread_id, p.notified
         FROM push_events p JOIN events e ON e.stream_pos = p.stream_pos
         WHERE p.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
           AND e.room_id IN (
               SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join')
         ORDER BY p.stream_pos DESC LIMIT $2",
        &[&user_id, &limit(RECOUNT_SCAN)],
        decode_pending,
    )
    .await
}

fn decode_pending(row: &dyn Row) -> StorageResult<PendingPush> {
    Ok(PendingPush::parse(
        row.int(0)?,
        row.text(1)?,
        row.opt_text(2)?,
        &row.text(3)?,
    ))
}

/// Adds the oldest `max` pending rows to the counters and moves the position past them; in the
/// caller's write transaction.
pub(crate) async fn fold(conn: &mut Conn, max: usize) -> StorageResult<usize> {
    let rows = conn
        .query_decode(
            "SELECT p.stream_pos, e.room_id, p.thread_id, p.notified
             FROM push_events p JOIN events e ON e.stream_pos = p.stream_pos
             WHERE p.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
             ORDER BY p.stream_pos LIMIT $1",
            &[&limit(max)],
            decode_pending,
        )
        .await?;
    let Some(last) = rows.last().map(|r| r.pos) else {
        return Ok(0);
    };
    for (room_id, room_rows) in by_room(&rows) {
        for (user_id, number) in notified_users(conn, room_id, &room_rows).await? {
            let read = read_positions(conn, room_id, &user_id).await?;
            for (thread, c) in count_rows(&user_id, number, &read, &room_rows) {
                add_to_counter(conn, room_id, &user_id, &thread, c).await?;
            }
        }
    }
    conn.execute(
        "UPDATE push_fold SET counted_to = $1 WHERE id = 0",
        &[&last],
    )
    .await?;
    Ok(rows.len())
}

/// Adds `c` to the user's counter of the timeline (creating it).
pub(crate) async fn add_to_counter(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
    thread: &str,
    c: NotificationCounts,
) -> StorageResult<()> {
    conn.execute(
        "INSERT INTO unread_counts (room_id, user_id, thread_id, notifications, highlights)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id, user_id, thread_id) DO UPDATE
         SET notifications = unread_counts.notifications + excluded.notifications,
             highlights = unread_counts.highlights + excluded.highlights",
        &[
            &room_id,
            &user_id,
            &thread,
            &i64::try_from(c.notifications).unwrap_or(i64::MAX),
            &i64::try_from(c.highlights).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    Ok(())
}

/// The users one room's rows notify, with their member numbers.
async fn notified_users(
    conn: &mut Conn,
    room_id: &str,
    rows: &[&PendingPush],
) -> StorageResult<Vec<(String, Option<MemberNumber>)>> {
    let (numbers, ids) = named(rows);
    let mut users: HashMap<String, Option<MemberNumber>> = HashMap::new();
    if !numbers.is_empty() {
        let members = conn
            .query_decode(
                "SELECT user_id, member_no FROM push_members WHERE room_id = $1",
                &[&room_id],
                |row| Ok((row.text(0)?, row.int(1)?)),
            )
            .await?;
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
            let number = member_number(conn, room_id, e.key()).await?;
            e.insert(number);
        }
    }
    Ok(users.into_iter().collect())
}
