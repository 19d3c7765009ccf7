//! The unread counters' fold (see `myelin_storage::push_fold`): the pending `push_events` rows
//! (after `push_fold.counted_to`) added to `unread_counts` in one write with the new position,
//! and the read of pending rows that the count of rooms with unread notifications adds (a room's
//! own counts read theirs with the counters, in `push_counts.rs`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use myelin_storage::push_fold::{by_room, count_rows, named, PendingPush};
use myelin_storage::rows::Row;
use myelin_storage::{
    MemberNumber, NotificationCounts, ReadPositions, StorageResult, RECOUNT_SCAN,
};

use crate::convert::limit;
use crate::pool::Conn;
use crate::push_counts::{add_receipt, member_number};

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
/// caller's write transaction. Per room, a fixed number of statements however many users the
/// rows notify (the fold holds the write lock: each round trip delays every writer).
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
        let users = notified_users(conn, room_id, &room_rows).await?;
        let ids: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        let reads = read_positions_of(conn, room_id, &ids).await?;
        let mut added: HashMap<(&str, String), NotificationCounts> = HashMap::new();
        for (user_id, number) in &users {
            let Some(read) = reads.get(user_id) else {
                continue;
            };
            for (thread, c) in count_rows(user_id, *number, read, &room_rows) {
                let sum = added.entry((user_id.as_str(), thread)).or_default();
                sum.notifications += c.notifications;
                sum.highlights += c.highlights;
            }
        }
        add_to_counters(conn, room_id, &added).await?;
    }
    conn.execute(
        "UPDATE push_fold SET counted_to = $1 WHERE id = 0",
        &[&last],
    )
    .await?;
    Ok(rows.len())
}

/// Where each of `users` has read up to in the room (see [`ReadPositions`]), for those with a
/// membership there: one statement (memberships, then receipts) for them all.
async fn read_positions_of(
    conn: &mut Conn,
    room_id: &str,
    users: &[&str],
) -> StorageResult<HashMap<String, ReadPositions>> {
    let rows = conn
        .query_decode(
            "SELECT 0::BIGINT, m.user_id, m.membership, m.joined_pos
             FROM room_memberships m
             WHERE m.room_id = $1 AND m.user_id = ANY($2::TEXT[])
             UNION ALL
             SELECT 1, r.user_id, r.thread_id, MAX(e.stream_pos)
             FROM receipts r JOIN events e ON e.event_id = r.event_id
             WHERE r.room_id = $1 AND r.user_id = ANY($2::TEXT[])
               AND r.receipt_type IN ('m.read', 'm.read.private')
             GROUP BY r.user_id, r.thread_id",
            &[&room_id, &users],
            |row| Ok((row.int(0)?, row.text(1)?, row.text(2)?, row.opt_int(3)?)),
        )
        .await?;
    let mut reads: HashMap<String, ReadPositions> = HashMap::new();
    let mut receipts = Vec::new();
    for (kind, user_id, text, pos) in rows {
        if kind == 0 {
            let read = ReadPositions {
                joined: text == "join",
                unthreaded: pos.unwrap_or(i64::MIN),
                threads: HashMap::new(),
            };
            reads.insert(user_id, read);
        } else if let Some(pos) = pos {
            receipts.push((user_id, text, pos));
        }
    }
    for (user_id, thread, pos) in receipts {
        if let Some(read) = reads.get_mut(&user_id) {
            add_receipt(read, thread, pos);
        }
    }
    Ok(reads)
}

/// Adds each `(user, thread)`'s counts to its counter in the room (creating it), in one
/// statement; each key once (an upsert may not touch a row twice).
async fn add_to_counters(
    conn: &mut Conn,
    room_id: &str,
    added: &HashMap<(&str, String), NotificationCounts>,
) -> StorageResult<()> {
    if added.is_empty() {
        return Ok(());
    }
    let mut users = Vec::with_capacity(added.len());
    let mut threads = Vec::with_capacity(added.len());
    let mut notifications = Vec::with_capacity(added.len());
    let mut highlights = Vec::with_capacity(added.len());
    for ((user_id, thread), c) in added {
        users.push(*user_id);
        threads.push(thread.as_str());
        notifications.push(i64::try_from(c.notifications).unwrap_or(i64::MAX));
        highlights.push(i64::try_from(c.highlights).unwrap_or(i64::MAX));
    }
    conn.execute(
        "INSERT INTO unread_counts (room_id, user_id, thread_id, notifications, highlights)
         SELECT $1, u, t, n, h
         FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[]) AS x(u, t, n, h)
         ON CONFLICT (room_id, user_id, thread_id) DO UPDATE
         SET notifications = unread_counts.notifications + excluded.notifications,
             highlights = unread_counts.highlights + excluded.highlights",
        &[&room_id, &users, &threads, &notifications, &highlights],
    )
    .await?;
    Ok(())
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
