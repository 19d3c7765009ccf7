//! Notifications as the push store keeps them: the `push_events` row an event adds in its own
//! transaction, the recount after a receipt, a join or a redaction, and the reads of counts and
//! `/notifications` pages. The counters' batched fold is in `push_fold.rs`.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::push_fold::{add_counts, by_room, count_rows, PendingPush};
use myelin_storage::{
    count_thread, count_unread, notified_user_ids, MemberNumber, MemberNumbers, NewPushAction,
    NotificationCounts, NotificationPage, NotificationRecord, NotifiedUsers, ReadPositions,
    RoomNotificationCounts, StorageResult, MAIN_TIMELINE, NOTIFICATIONS_SCAN, RECOUNT_SCAN,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::convert::{limit, query_all, Db};
use crate::member_numbers::MemberNumberCache;
use crate::push_fold::{add_to_counter, counted_to, pending_of_room, pending_of_user_rooms};

/// The event's `push_events` row and one queue row per HTTP pusher of the users it notifies; in
/// the caller's (the event's) transaction. The counters follow in the next fold.
pub(crate) fn write_push_actions(
    tx: &Transaction<'_>,
    cache: &MemberNumberCache,
    room_id: &str,
    event_id: &str,
    stream_pos: StreamPos,
    actions: &[NewPushAction],
) -> StorageResult<()> {
    let Some(first) = actions.first() else {
        return Ok(());
    };
    let thread = first.thread_id.as_deref();
    let numbers = assign_member_numbers(tx, cache, room_id, actions)?;
    let notified = NotifiedUsers::from_actions(actions, &numbers).to_json();
    tx.prepare_cached(
        "INSERT INTO push_events (stream_pos, thread_id, notified) VALUES (?1, ?2, ?3)
         ON CONFLICT (stream_pos) DO NOTHING",
    )
    .db()?
    .execute(params![stream_pos.0, thread, notified])
    .db()?;
    for action in actions.iter().filter(|a| a.queue) {
        tx.prepare_cached(
            "INSERT INTO push_queue (pusher_id, stream_pos, room_id, event_id, actions)
             SELECT id, ?2, ?3, ?4, ?5 FROM pushers WHERE user_id = ?1 AND kind IN ('http', 'email')
             ON CONFLICT (pusher_id, stream_pos) DO NOTHING",
        )
        .db()?
        .execute(params![
            action.user_id.as_str(),
            stream_pos.0,
            room_id,
            event_id,
            action.actions
        ])
        .db()?;
    }
    Ok(())
}

/// The member numbers of the users `actions` notify (one entry per action, in order),
/// numbering those notified in the room for the first time after the room's last number. The
/// writer's cache answers for members it has seen; storage for the others.
fn assign_member_numbers(
    tx: &Transaction<'_>,
    cache: &MemberNumberCache,
    room_id: &str,
    actions: &[NewPushAction],
) -> StorageResult<Vec<Option<MemberNumber>>> {
    let mut numbers = cache.known(room_id, actions);
    if numbers.iter().all(Option::is_some) {
        return Ok(numbers);
    }
    let unknown: Vec<NewPushAction> = actions
        .iter()
        .zip(&numbers)
        .filter(|(_, n)| n.is_none())
        .map(|(a, _)| a.clone())
        .collect();
    let mut found: MemberNumbers = tx
        .prepare_cached(
            "SELECT user_id, member_no FROM push_members
             WHERE room_id = ?1 AND user_id IN (SELECT value FROM json_each(?2))",
        )
        .db()?
        .query_map(params![room_id, notified_user_ids(&unknown)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, MemberNumber>(1)?))
        })
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut next: Option<MemberNumber> = None;
    for action in &unknown {
        let user_id = action.user_id.as_str();
        if found.contains_key(user_id) {
            continue;
        }
        let number = match next {
            Some(n) => n,
            None => tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(member_no) + 1, 0) FROM push_members WHERE room_id = ?1",
                )
                .db()?
                .query_row(params![room_id], |r| r.get(0))
                .db()?,
        };
        tx.prepare_cached(
            "INSERT INTO push_members (room_id, user_id, member_no) VALUES (?1, ?2, ?3)",
        )
        .db()?
        .execute(params![room_id, user_id, number])
        .db()?;
        found.insert(user_id.to_owned(), number);
        next = Some(number + 1);
    }
    cache.remember(room_id, &found);
    for (number, action) in numbers.iter_mut().zip(actions) {
        if number.is_none() {
            *number = found.get(action.user_id.as_str()).copied();
        }
    }
    Ok(numbers)
}

/// The user's member number in the room, if any event there ever notified them.
pub(crate) fn member_number(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> StorageResult<Option<MemberNumber>> {
    conn.prepare_cached("SELECT member_no FROM push_members WHERE room_id = ?1 AND user_id = ?2")
        .db()?
        .query_row(params![room_id, user_id], |r| r.get(0))
        .optional()
        .db()
}

/// A redacted event notifies no more: its row and queue rows go and the users it notified who
/// still count it (those with counters in the room) are recounted, in the redaction's
/// transaction.
pub(crate) fn forget_push_actions(tx: &Transaction<'_>, event_id: &str) -> StorageResult<()> {
    let row: Option<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT p.stream_pos, e.room_id, p.notified
             FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
             WHERE e.event_id = ?1",
        )
        .db()?
        .query_row(params![event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .db()?;
    let Some((pos, room_id, notified)) = row else {
        return Ok(());
    };
    let folded = pos <= counted_to(tx)?;
    tx.prepare_cached("DELETE FROM push_events WHERE stream_pos = ?1")
        .db()?
        .execute(params![pos])
        .db()?;
    tx.prepare_cached("DELETE FROM push_queue WHERE stream_pos = ?1")
        .db()?
        .execute(params![pos])
        .db()?;
    if !folded {
        // Not in any counter yet: deleting the row was all.
        return Ok(());
    }
    let notified = NotifiedUsers::parse(&notified);
    let counted = query_all(
        tx,
        "SELECT DISTINCT u.user_id, m.member_no FROM unread_counts u
         LEFT JOIN push_members m ON m.room_id = u.room_id AND m.user_id = u.user_id
         WHERE u.room_id = ?1",
        params![room_id],
        |row| Ok((row.text(0)?, row.opt_int(1)?)),
    )?;
    for (user_id, number) in counted {
        let number = number.and_then(|n| MemberNumber::try_from(n).ok());
        if notified.find(&user_id, number).is_some() {
            recount(tx, &room_id, &user_id)?;
        }
    }
    Ok(())
}

/// A membership change other than join → join (a profile change) starts the user's counts in
/// the room afresh: what came before a join is not unread, and a left room has none. Called
/// before the membership row changes.
pub(crate) fn reset_on_membership(
    tx: &Transaction<'_>,
    room_id: &str,
    user_id: &str,
    membership: &str,
) -> StorageResult<()> {
    tx.prepare_cached(
        "DELETE FROM unread_counts WHERE room_id = ?1 AND user_id = ?2
           AND NOT (?3 = 'join' AND EXISTS (
               SELECT 1 FROM room_memberships
               WHERE room_id = ?1 AND user_id = ?2 AND membership = 'join'))",
    )
    .db()?
    .execute(params![room_id, user_id, membership])
    .db()?;
    Ok(())
}

/// A read receipt moved: the user's counts in the room are recounted, if they have any.
pub(crate) fn recount_after_receipt(
    tx: &Transaction<'_>,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
) -> StorageResult<()> {
    if !matches!(receipt_type, "m.read" | "m.read.private") {
        return Ok(());
    }
    let unread: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM unread_counts WHERE room_id = ?1 AND user_id = ?2)",
        )
        .db()?
        .query_row(params![room_id, user_id], |r| r.get(0))
        .db()?;
    if unread {
        recount(tx, room_id, user_id)?;
    }
    Ok(())
}

/// Where the user has read up to in the room (see [`ReadPositions`]).
pub(crate) fn read_positions(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> StorageResult<ReadPositions> {
    let membership: Option<(Option<i64>, String)> = conn
        .prepare_cached(
            "SELECT joined_pos, membership FROM room_memberships
             WHERE room_id = ?1 AND user_id = ?2",
        )
        .db()?
        .query_row(params![room_id, user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db()?;
    let (joined, membership) = membership.unwrap_or_default();
    let receipts = query_all(
        conn,
        "SELECT r.thread_id, MAX(e.stream_pos) FROM receipts r
         JOIN events e ON e.event_id = r.event_id
         WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.receipt_type IN ('m.read', 'm.read.private')
         GROUP BY r.thread_id",
        params![room_id, user_id],
        |row| Ok((row.text(0)?, row.int(1)?)),
    )?;
    let mut read = ReadPositions {
        joined: membership == "join",
        unthreaded: joined.unwrap_or(i64::MIN),
        threads: HashMap::new(),
    };
    for (thread, pos) in receipts {
        if thread.is_empty() {
            read.unthreaded = read.unthreaded.max(pos);
        } else {
            read.threads.insert(thread, pos);
        }
    }
    Ok(read)
}

/// Counts the user's unread notifications in the room again from the folded `push_events` rows
/// after their read position (at most [`RECOUNT_SCAN`] of them).
fn recount(tx: &Transaction<'_>, room_id: &str, user_id: &str) -> StorageResult<()> {
    let read = read_positions(tx, room_id, user_id)?;
    let number = member_number(tx, room_id, user_id)?;
    // The room's folded events after the read position, at most RECOUNT_SCAN of them (newest
    // first); the pending ones are the next fold's.
    let rows = query_all(
        tx,
        "SELECT p.stream_pos, p.thread_id, p.notified FROM (
             SELECT stream_pos FROM events
             WHERE room_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?4
             ORDER BY stream_pos DESC LIMIT ?3) e
         JOIN push_events p ON p.stream_pos = e.stream_pos",
        params![
            room_id,
            read.unthreaded,
            limit(RECOUNT_SCAN),
            counted_to(tx)?
        ],
        |row| Ok((row.int(0)?, row.opt_text(1)?, row.text(2)?)),
    )?;
    let counts = count_unread(
        user_id,
        number,
        &read,
        rows.iter().map(|(p, t, n)| (*p, t.as_deref(), n.as_str())),
    );
    tx.prepare_cached("DELETE FROM unread_counts WHERE room_id = ?1 AND user_id = ?2")
        .db()?
        .execute(params![room_id, user_id])
        .db()?;
    for (thread, c) in counts {
        add_to_counter(tx, room_id, user_id, &thread, c)?;
    }
    Ok(())
}

/// The user's unread counts in the room, from the counters.
pub(crate) fn room_counts(
    conn: &Connection,
    user_id: &str,
    room_id: &str,
) -> StorageResult<RoomNotificationCounts> {
    let rows = query_all(
        conn,
        "SELECT thread_id, notifications, highlights FROM unread_counts
         WHERE room_id = ?1 AND user_id = ?2 ORDER BY thread_id",
        params![room_id, user_id],
        |row| {
            Ok((
                row.text(0)?,
                NotificationCounts {
                    notifications: u64::try_from(row.int(1)?).unwrap_or(0),
                    highlights: u64::try_from(row.int(2)?).unwrap_or(0),
                },
            ))
        },
    )?;
    let mut counts = RoomNotificationCounts::default();
    for (thread, c) in rows {
        if thread == MAIN_TIMELINE {
            counts.main = c;
        } else {
            counts.threads.push((thread, c));
        }
    }
    let pending = pending_of_room(conn, room_id)?;
    if !pending.is_empty() {
        let read = read_positions(conn, room_id, user_id)?;
        let number = member_number(conn, room_id, user_id)?;
        let rows: Vec<&PendingPush> = pending.iter().collect();
        add_counts(&mut counts, count_rows(user_id, number, &read, &rows));
    }
    Ok(counts)
}

/// How many joined rooms have unread notifications for the user: in the counters, or in the
/// pending rows.
pub(crate) fn rooms_with_unread(conn: &Connection, user_id: &str) -> StorageResult<u64> {
    let mut rooms: HashSet<String> = query_all(
        conn,
        "SELECT DISTINCT u.room_id FROM unread_counts u
         JOIN room_memberships m
           ON m.room_id = u.room_id AND m.user_id = u.user_id AND m.membership = 'join'
         WHERE u.user_id = ?1 AND u.notifications > 0",
        params![user_id],
        |row| row.text(0),
    )?
    .into_iter()
    .collect();
    let pending = pending_of_user_rooms(conn, user_id)?;
    for (room_id, rows) in by_room(&pending) {
        if rooms.contains(room_id) {
            continue;
        }
        let read = read_positions(conn, room_id, user_id)?;
        let number = member_number(conn, room_id, user_id)?;
        if !count_rows(user_id, number, &read, &rows).is_empty() {
            rooms.insert(room_id.to_owned());
        }
    }
    Ok(u64::try_from(rooms.len()).unwrap_or(u64::MAX))
}

/// A `/notifications` page: the notifying events of the rooms the user is or was a member of
/// (invites included) before `before`,
/// newest first, kept where they notify the user.
pub(crate) fn notifications_page(
    conn: &Connection,
    user_id: &str,
    before: i64,
    max: usize,
    only_highlight: bool,
) -> StorageResult<NotificationPage> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.stream_pos, e.room_id, e.event_id, p.thread_id, p.notified
             FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
             WHERE e.stream_pos < ?2 AND e.room_id IN (
                 SELECT room_id FROM room_memberships WHERE user_id = ?1)
             ORDER BY e.stream_pos DESC LIMIT ?3",
        )
        .db()?;
    let mut rows = stmt
        .query(params![user_id, before, limit(NOTIFICATIONS_SCAN)])
        .db()?;
    let mut page = NotificationPage::default();
    let mut reads: HashMap<String, (ReadPositions, Option<MemberNumber>)> = HashMap::new();
    let (mut scanned, mut last) = (0, None);
    while let Some(row) = rows.next().db()? {
        let (pos, room_id, event_id): (i64, String, String) =
            (row.get(0).db()?, row.get(1).db()?, row.get(2).db()?);
        let (thread, notified): (Option<String>, String) = (row.get(3).db()?, row.get(4).db()?);
        scanned += 1;
        last = Some(StreamPos(pos));
        let (read, number) = match reads.get(&room_id) {
            Some(known) => known,
            None => {
                let read = read_positions(conn, &room_id, user_id)?;
                let number = member_number(conn, &room_id, user_id)?;
                reads.entry(room_id.clone()).or_insert((read, number))
            }
        };
        let notified = NotifiedUsers::parse(&notified);
        let Some(entry) = notified.find(user_id, *number) else {
            continue;
        };
        if only_highlight && !entry.highlight {
            continue;
        }
        page.records.push(NotificationRecord {
            read: read.covers(count_thread(thread.as_deref()), pos),
            room_id: myelin_storage::convert::parse_id(room_id, "notification room")?,
            event_id: myelin_storage::convert::parse_id(event_id, "notification event")?,
            stream_pos: StreamPos(pos),
            actions: entry.actions.to_string(),
            highlight: entry.highlight,
        });
        if page.records.len() == max {
            page.next = last;
            return Ok(page);
        }
    }
    page.next = if scanned == NOTIFICATIONS_SCAN {
        last
    } else {
        None
    };
    Ok(page)
}
