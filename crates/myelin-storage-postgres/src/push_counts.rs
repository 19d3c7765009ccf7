//! Notifications as the push store keeps them: the `push_events` row an event adds in its own
//! transaction, the recount after a receipt, a join or a redaction, and the reads of counts and
//! `/notifications` pages. The counters' batched fold is in `push_fold.rs`.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::rows::Row as DecodeRow;
use myelin_storage::{
    count_thread, count_unread, notified_user_ids, MemberNumber, MemberNumbers, NewPushAction,
    NotificationCounts, NotificationPage, NotificationRecord, NotifiedUsers, ReadPositions,
    RoomNotificationCounts, StorageResult, MAIN_TIMELINE, NOTIFICATIONS_SCAN, RECOUNT_SCAN,
};

use myelin_storage::push_fold::{add_counts, by_room, count_rows, PendingPush};
use ruma::OwnedRoomId;

use crate::convert::{limit, parse_id};
use crate::pool::Conn;
use crate::push_fold::{add_to_counter, counted_to, pending_of_user_rooms};

/// How many `push_events` rows a `/notifications` page reads per query.
const PAGE_CHUNK: usize = 200;

/// The event's `push_events` row and one queue row per HTTP pusher of the users it notifies; in
/// the caller's (the event's) transaction. The counters follow in the next fold.
pub(crate) async fn write_push_actions(
    conn: &mut Conn,
    room_id: &str,
    event_id: &str,
    stream_pos: StreamPos,
    actions: &[NewPushAction],
) -> StorageResult<()> {
    let Some(first) = actions.first() else {
        return Ok(());
    };
    let thread = first.thread_id.as_deref();
    let numbers = assign_member_numbers(conn, room_id, actions).await?;
    let aligned: Vec<_> = actions
        .iter()
        .map(|a| numbers.get(a.user_id.as_str()).copied())
        .collect();
    let notified = NotifiedUsers::from_actions(actions, &aligned).to_json();
    conn.execute(
        "INSERT INTO push_events (stream_pos, thread_id, notified) VALUES ($1, $2, $3)
         ON CONFLICT (stream_pos) DO NOTHING",
        &[&stream_pos.0, &thread, &notified],
    )
    .await?;
    for action in actions.iter().filter(|a| a.queue) {
        conn.execute(
            "INSERT INTO push_queue (pusher_id, stream_pos, room_id, event_id, actions)
             SELECT id, $2, $3, $4, $5 FROM pushers WHERE user_id = $1 AND kind IN ('http', 'email')
             ON CONFLICT (pusher_id, stream_pos) DO NOTHING",
            &[
                &action.user_id.as_str(),
                &stream_pos.0,
                &room_id,
                &event_id,
                &action.actions,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The member numbers of the users `actions` notify, numbering those notified in the room for
/// the first time after the room's last number; one statement (writes are serialised, so the
/// room's last number cannot move meanwhile).
async fn assign_member_numbers(
    conn: &mut Conn,
    room_id: &str,
    actions: &[NewPushAction],
) -> StorageResult<MemberNumbers> {
    let rows = conn
        .query_decode(
            "WITH wanted AS (
                 SELECT u, n FROM jsonb_array_elements_text($2::TEXT::JSONB)
                     WITH ORDINALITY AS t(u, n)),
             known AS (
                 SELECT user_id, member_no FROM push_members
                 WHERE room_id = $1 AND user_id IN (SELECT u FROM wanted)),
             added AS (
                 INSERT INTO push_members (room_id, user_id, member_no)
                 SELECT $1, w.u, (SELECT COALESCE(MAX(member_no) + 1, 0) FROM push_members
                                  WHERE room_id = $1) + ROW_NUMBER() OVER (ORDER BY w.n) - 1
                 FROM wanted w WHERE w.u NOT IN (SELECT user_id FROM known)
                 RETURNING user_id, member_no)
             SELECT user_id, member_no FROM known
             UNION ALL SELECT user_id, member_no FROM added",
            &[&room_id, &notified_user_ids(actions)],
            |row| Ok((row.text(0)?, row.int(1)?)),
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(user, n)| Some((user, MemberNumber::try_from(n).ok()?)))
        .collect())
}

/// The user's member number in the room, if any event there ever notified them.
pub(crate) async fn member_number(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
) -> StorageResult<Option<MemberNumber>> {
    let n = conn
        .query_opt_decode(
            "SELECT member_no FROM push_members WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
            |row| row.int(0),
        )
        .await?;
    Ok(n.and_then(|n| MemberNumber::try_from(n).ok()))
}

/// A redacted event notifies no more: its row and queue rows go and the users it notified who
/// still count it (those with counters in the room) are recounted, in the redaction's
/// transaction.
pub(crate) async fn forget_push_actions(conn: &mut Conn, event_id: &str) -> StorageResult<()> {
    let row = conn
        .query_opt_decode(
            "SELECT p.stream_pos, e.room_id, p.notified
             FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
             WHERE e.event_id = $1",
            &[&event_id],
            |row| Ok((row.int(0)?, row.text(1)?, row.text(2)?)),
        )
        .await?;
    let Some((pos, room_id, notified)) = row else {
        return Ok(());
    };
    let folded = pos <= counted_to(conn).await?;
    conn.execute("DELETE FROM push_events WHERE stream_pos = $1", &[&pos])
        .await?;
    conn.execute("DELETE FROM push_queue WHERE stream_pos = $1", &[&pos])
        .await?;
    if !folded {
        // Not in any counter yet: deleting the row was all.
        return Ok(());
    }
    let notified = NotifiedUsers::parse(&notified);
    let counted = conn
        .query_decode(
            "SELECT DISTINCT u.user_id, m.member_no FROM unread_counts u
             LEFT JOIN push_members m ON m.room_id = u.room_id AND m.user_id = u.user_id
             WHERE u.room_id = $1",
            &[&room_id],
            |row| Ok((row.text(0)?, row.opt_int(1)?)),
        )
        .await?;
    for (user_id, number) in counted {
        let number = number.and_then(|n| MemberNumber::try_from(n).ok());
        if notified.find(&user_id, number).is_some() {
            recount(conn, &room_id, &user_id).await?;
        }
    }
    Ok(())
}

/// A membership change other than join → join (a profile change) starts the user's counts in
/// the room afresh: what came before a join is not unread, and a left room has none. Called
/// before the membership row changes.
pub(crate) async fn reset_on_membership(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
    membership: &str,
) -> StorageResult<()> {
    conn.execute(
        "DELETE FROM unread_counts WHERE room_id = $1 AND user_id = $2
           AND NOT ($3::TEXT = 'join' AND EXISTS (
               SELECT 1 FROM room_memberships
               WHERE room_id = $1 AND user_id = $2 AND membership = 'join'))",
        &[&room_id, &user_id, &membership],
    )
    .await?;
    Ok(())
}

/// A read receipt moved: the user's counts in the room are recounted, if they have any.
pub(crate) async fn recount_after_receipt(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
) -> StorageResult<()> {
    if !matches!(receipt_type, "m.read" | "m.read.private") {
        return Ok(());
    }
    let unread = conn
        .query_opt(
            "SELECT 1 FROM unread_counts WHERE room_id = $1 AND user_id = $2 LIMIT 1",
            &[&room_id, &user_id],
        )
        .await?
        .is_some();
    if unread {
        recount(conn, room_id, user_id).await?;
    }
    Ok(())
}

/// Where the user has read up to in the room (see [`ReadPositions`]).
pub(crate) async fn read_positions(
    conn: &mut Conn,
    room_id: &str,
    user_id: &str,
) -> StorageResult<ReadPositions> {
    let (joined, membership) = conn
        .query_opt_decode(
            "SELECT joined_pos, membership FROM room_memberships
             WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
            |row| Ok((row.opt_int(0)?, row.text(1)?)),
        )
        .await?
        .unwrap_or_default();
    let receipts = conn
        .query_decode(
            "SELECT r.thread_id, MAX(e.stream_pos) FROM receipts r
             JOIN events e ON e.event_id = r.event_id
             WHERE r.room_id = $1 AND r.user_id = $2
               AND r.receipt_type IN ('m.read', 'm.read.private')
             GROUP BY r.thread_id",
            &[&room_id, &user_id],
            |row| Ok((row.text(0)?, row.int(1)?)),
        )
        .await?;
    let mut read = ReadPositions {
        joined: membership == "join",
        unthreaded: joined.unwrap_or(i64::MIN),
        threads: HashMap::new(),
    };
    for (thread, pos) in receipts {
        add_receipt(&mut read, thread, pos);
    }
    Ok(read)
}

/// Counts the user's unread notifications in the room again from the folded `push_events` rows
/// after their read position (at most [`RECOUNT_SCAN`] of them).
async fn recount(conn: &mut Conn, room_id: &str, user_id: &str) -> StorageResult<()> {
    let read = read_positions(conn, room_id, user_id).await?;
    let number = member_number(conn, room_id, user_id).await?;
    let counted = counted_to(conn).await?;
    // The room's folded events after the read position, at most RECOUNT_SCAN of them (newest
    // first); the pending ones are the next fold's.
    let rows = conn
        .query_decode(
            "SELECT p.stream_pos, p.thread_id, p.notified FROM (
                 SELECT stream_pos FROM events
                 WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $4
                 ORDER BY stream_pos DESC LIMIT $3) e
             JOIN push_events p ON p.stream_pos = e.stream_pos",
            &[&room_id, &read.unthreaded, &limit(RECOUNT_SCAN), &counted],
            |row| Ok((row.int(0)?, row.opt_text(1)?, row.text(2)?)),
        )
        .await?;
    let counts = count_unread(
        user_id,
        number,
        &read,
        rows.iter().map(|(p, t, n)| (*p, t.as_deref(), n.as_str())),
    );
    conn.execute(
        "DELETE FROM unread_counts WHERE room_id = $1 AND user_id = $2",
        &[&room_id, &user_id],
    )
    .await?;
    for (thread, c) in counts {
        add_to_counter(conn, room_id, user_id, &thread, c).await?;
    }
    Ok(())
}

/// The user's unread counts in the room (see [`rooms_counts`]).
pub(crate) async fn room_counts(
    conn: &mut Conn,
    user_id: &str,
    room_id: &str,
) -> StorageResult<RoomNotificationCounts> {
    let mut counted = counts_of(conn, user_id, &[room_id]).await?;
    Ok(counted.remove(room_id).unwrap_or_default())
}

/// The user's counts in each of `rooms`, in the order given (see [`counts_of`]).
pub(crate) async fn rooms_counts(
    conn: &mut Conn,
    user_id: &str,
    rooms: &[OwnedRoomId],
) -> StorageResult<Vec<RoomNotificationCounts>> {
    let ids: Vec<&str> = rooms.iter().map(|r| r.as_str()).collect();
    let mut counted = counts_of(conn, user_id, &ids).await?;
    Ok(ids
        .iter()
        .map(|r| counted.remove(*r).unwrap_or_default())
        .collect())
}

/// The counters, the pending rows after their position (at most [`RECOUNT_SCAN`], newest
/// first), and for the rooms with pending rows what counting them needs (the user's membership,
/// join position and member number; their read receipts): one statement, so one snapshot (a
/// fold committing in between would otherwise count rows twice or not at all) and one round
/// trip however many rooms have pending rows. Each row is tagged by its kind (column 0).
const COUNTS_SQL: &str = "
    WITH pending AS (
        SELECT e.room_id, p.thread_id, p.stream_pos, p.notified
        FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
        WHERE e.room_id = ANY($2::TEXT[])
          AND e.stream_pos > (SELECT counted_to FROM push_fold WHERE id = 0)
        ORDER BY e.stream_pos DESC LIMIT $3),
    pending_rooms AS (SELECT DISTINCT room_id FROM pending)
    SELECT 0::BIGINT, room_id, thread_id, notifications, highlights, NULL::TEXT
    FROM unread_counts WHERE user_id = $1 AND room_id = ANY($2::TEXT[])
    UNION ALL
    SELECT 1, room_id, thread_id, stream_pos, NULL, notified FROM pending
    UNION ALL
    SELECT 2, r.room_id, NULL, m.joined_pos, n.member_no, m.membership
    FROM pending_rooms r
    LEFT JOIN room_memberships m ON m.room_id = r.room_id AND m.user_id = $1
    LEFT JOIN push_members n ON n.room_id = r.room_id AND n.user_id = $1
    UNION ALL
    SELECT 3, r.room_id, r.thread_id, MAX(e.stream_pos), NULL, NULL
    FROM receipts r JOIN events e ON e.event_id = r.event_id
    WHERE r.user_id = $1 AND r.room_id IN (SELECT room_id FROM pending_rooms)
      AND r.receipt_type IN ('m.read', 'm.read.private')
    GROUP BY r.room_id, r.thread_id";

/// One row of [`COUNTS_SQL`].
enum CountsRow {
    Counter(String, String, NotificationCounts),
    Pending(PendingPush),
    /// The room, the user's join position, member number and membership.
    Member(String, Option<i64>, Option<i64>, Option<String>),
    /// The room, the receipt's thread (`""` unthreaded) and the latest position it reads.
    Receipt(String, String, i64),
}

fn decode_counts_row(row: &dyn DecodeRow) -> StorageResult<CountsRow> {
    let room = row.text(1)?;
    Ok(match row.int(0)? {
        0 => CountsRow::Counter(
            room,
            row.text(2)?,
            NotificationCounts {
                notifications: u64::try_from(row.int(3)?).unwrap_or(0),
                highlights: u64::try_from(row.int(4)?).unwrap_or(0),
            },
        ),
        1 => CountsRow::Pending(PendingPush::parse(
            row.int(3)?,
            room,
            row.opt_text(2)?,
            &row.text(5)?,
        )),
        2 => CountsRow::Member(room, row.opt_int(3)?, row.opt_int(4)?, row.opt_text(5)?),
        _ => CountsRow::Receipt(room, row.text(2)?, row.int(3)?),
    })
}

/// The user's counts in each of `rooms` that has any: the counters plus what the pending rows
/// add, all read by [`COUNTS_SQL`].
async fn counts_of(
    conn: &mut Conn,
    user_id: &str,
    rooms: &[&str],
) -> StorageResult<HashMap<String, RoomNotificationCounts>> {
    let rows = conn
        .query_decode(
            COUNTS_SQL,
            &[&user_id, &rooms, &limit(RECOUNT_SCAN)],
            decode_counts_row,
        )
        .await?;
    let mut counted: HashMap<String, RoomNotificationCounts> = HashMap::new();
    let mut pending = Vec::new();
    let mut reads: HashMap<String, (ReadPositions, Option<MemberNumber>)> = HashMap::new();
    let mut receipts = Vec::new();
    for row in rows {
        match row {
            CountsRow::Pending(row) => pending.push(row),
            CountsRow::Counter(room, thread, c) => {
                let counts = counted.entry(room).or_default();
                if thread == MAIN_TIMELINE {
                    counts.main = c;
                } else {
                    counts.threads.push((thread, c));
                }
            }
            CountsRow::Member(room, joined, number, membership) => {
                let read = ReadPositions {
                    joined: membership.as_deref() == Some("join"),
                    unthreaded: joined.unwrap_or(i64::MIN),
                    threads: HashMap::new(),
                };
                let number = number.and_then(|n| MemberNumber::try_from(n).ok());
                reads.insert(room, (read, number));
            }
            CountsRow::Receipt(room, thread, pos) => receipts.push((room, thread, pos)),
        }
    }
    for (room, thread, pos) in receipts {
        if let Some((read, _)) = reads.get_mut(&room) {
            add_receipt(read, thread, pos);
        }
    }
    for (room_id, rows) in by_room(&pending) {
        let Some((read, number)) = reads.get(room_id) else {
            continue;
        };
        let counts = counted.entry(room_id.to_owned()).or_default();
        add_counts(counts, count_rows(user_id, *number, read, &rows));
    }
    for counts in counted.values_mut() {
        counts.threads.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(counted)
}

/// Adds a read receipt's position to `read`: the unthreaded one moves the unthreaded position
/// (which is at least the join), a threaded one sets its thread's.
pub(crate) fn add_receipt(read: &mut ReadPositions, thread: String, pos: i64) {
    if thread.is_empty() {
        read.unthreaded = read.unthreaded.max(pos);
    } else {
        read.threads.insert(thread, pos);
    }
}

/// How many joined rooms have unread notifications for the user: in the counters, or in the
/// pending rows.
pub(crate) async fn rooms_with_unread(conn: &mut Conn, user_id: &str) -> StorageResult<u64> {
    let mut rooms: HashSet<String> = conn
        .query_decode(
            "SELECT DISTINCT u.room_id FROM unread_counts u
             JOIN room_memberships m
               ON m.room_id = u.room_id AND m.user_id = u.user_id AND m.membership = 'join'
             WHERE u.user_id = $1 AND u.notifications > 0",
            &[&user_id],
            |row| row.text(0),
        )
        .await?
        .into_iter()
        .collect();
    let pending = pending_of_user_rooms(conn, user_id).await?;
    for (room_id, rows) in by_room(&pending) {
        if rooms.contains(room_id) {
            continue;
        }
        let read = read_positions(conn, room_id, user_id).await?;
        let number = member_number(conn, room_id, user_id).await?;
        if !count_rows(user_id, number, &read, &rows).is_empty() {
            rooms.insert(room_id.to_owned());
        }
    }
    Ok(u64::try_from(rooms.len()).unwrap_or(u64::MAX))
}

/// A `/notifications` page: the notifying events of the rooms the user is or was a member of
/// (invites included) before `before`,
/// newest first, kept where they notify the user; read in chunks so that a full page stops early.
pub(crate) async fn notifications_page(
    conn: &mut Conn,
    user_id: &str,
    before: i64,
    max: usize,
    only_highlight: bool,
) -> StorageResult<NotificationPage> {
    let mut page = NotificationPage::default();
    let mut reads: HashMap<String, (ReadPositions, Option<MemberNumber>)> = HashMap::new();
    let (mut scanned, mut cursor) = (0, before);
    while scanned < NOTIFICATIONS_SCAN {
        let chunk = conn
            .query_decode(
                "SELECT p.stream_pos, e.room_id, e.event_id, p.thread_id, p.notified
                 FROM events e JOIN push_events p ON p.stream_pos = e.stream_pos
                 WHERE e.stream_pos < $2 AND e.room_id IN (
                     SELECT room_id FROM room_memberships WHERE user_id = $1)
                 ORDER BY e.stream_pos DESC LIMIT $3",
                &[&user_id, &cursor, &limit(PAGE_CHUNK)],
                |row| {
                    Ok((
                        row.int(0)?,
                        row.text(1)?,
                        row.text(2)?,
                        row.opt_text(3)?,
                        row.text(4)?,
                    ))
                },
            )
            .await?;
        let exhausted = chunk.len() < PAGE_CHUNK;
        for (pos, room_id, event_id, thread, notified) in chunk {
            scanned += 1;
            cursor = pos;
            if !reads.contains_key(&room_id) {
                let read = read_positions(conn, &room_id, user_id).await?;
                let number = member_number(conn, &room_id, user_id).await?;
                reads.insert(room_id.clone(), (read, number));
            }
            let Some((read, number)) = reads.get(&room_id) else {
                continue;
            };
            let notified = NotifiedUsers::parse(&notified);
            let Some(entry) = notified.find(user_id, *number) else {
                continue;
            };
            if only_highlight && !entry.highlight {
                continue;
            }
            let covered = read.covers(count_thread(thread.as_deref()), pos);
            page.records.push(NotificationRecord {
                read: covered,
                room_id: parse_id(room_id, "notification room")?,
                event_id: parse_id(event_id, "notification event")?,
                stream_pos: StreamPos(pos),
                actions: entry.actions.to_string(),
                highlight: entry.highlight,
            });
            if page.records.len() == max {
                page.next = Some(StreamPos(pos));
                return Ok(page);
            }
        }
        if exhausted {
            return Ok(page);
        }
    }
    page.next = Some(StreamPos(cursor));
    Ok(page)
}
