//! The unread counters' arithmetic both backends share. `unread_counts` holds every
//! `push_events` row up to `push_fold.counted_to`; the rows after it are *pending*: a background
//! fold ([`crate::PushStore::fold_unread_counts`]) adds them to the counters in batches and moves
//! the position in the same transaction, and a read adds the pending rows of its room itself. So
//! an event's own transaction writes one row however many members it notifies, a count is exact
//! at any moment, and a crash can neither lose nor double count a notification.

use std::collections::{BTreeMap, BTreeSet};

use crate::push::{count_thread, MemberNumber, NotificationCounts, NotifiedUsers, ReadPositions};
use crate::RoomNotificationCounts;

/// How many pending rows one fold reads at most.
pub const FOLD_BATCH: usize = 2_000;

/// A `push_events` row after the counters' position.
#[derive(Debug, Clone)]
pub struct PendingPush {
    pub pos: i64,
    pub room_id: String,
    pub thread_id: Option<String>,
    pub notified: NotifiedUsers,
}

impl PendingPush {
    /// Reads a stored row; what cannot be read notifies nobody.
    pub fn parse(pos: i64, room_id: String, thread_id: Option<String>, notified: &str) -> Self {
        PendingPush {
            pos,
            room_id,
            thread_id,
            notified: NotifiedUsers::parse(notified),
        }
    }
}

/// The rows grouped by room, each group in the rows' order.
pub fn by_room(rows: &[PendingPush]) -> BTreeMap<&str, Vec<&PendingPush>> {
    let mut rooms: BTreeMap<&str, Vec<&PendingPush>> = BTreeMap::new();
    for row in rows {
        rooms.entry(row.room_id.as_str()).or_default().push(row);
    }
    rooms
}

/// Who one room's rows notify: member numbers, and user IDs from rows of the first format.
pub fn named(rows: &[&PendingPush]) -> (BTreeSet<MemberNumber>, BTreeSet<String>) {
    let (mut numbers, mut ids) = (BTreeSet::new(), BTreeSet::new());
    for row in rows {
        numbers.extend(row.notified.named_numbers());
        ids.extend(row.notified.named_ids().map(str::to_owned));
    }
    (numbers, ids)
}

/// A user's counts per timeline over `rows`: those that notify them and that they have not
/// read. A user not joined to the room counts nothing (their counters went with the membership).
pub fn count_rows(
    user_id: &str,
    number: Option<MemberNumber>,
    read: &ReadPositions,
    rows: &[&PendingPush],
) -> Vec<(String, NotificationCounts)> {
    if !read.joined {
        return Vec::new();
    }
    count_notified(
        user_id,
        number,
        read,
        rows.iter()
            .map(|r| (r.pos, r.thread_id.as_deref(), &r.notified)),
    )
}

/// Counts per timeline of the rows that notify the user after their read positions.
pub(crate) fn count_notified<'a>(
    user_id: &str,
    number: Option<MemberNumber>,
    read: &ReadPositions,
    rows: impl IntoIterator<Item = (i64, Option<&'a str>, &'a NotifiedUsers)>,
) -> Vec<(String, NotificationCounts)> {
    let mut counts: Vec<(String, NotificationCounts)> = Vec::new();
    for (pos, thread, notified) in rows {
        let timeline = count_thread(thread);
        if read.covers(timeline, pos) {
            continue;
        }
        let Some(highlight) = notified.find(user_id, number).map(|n| n.highlight) else {
            continue;
        };
        let i = match counts.iter().position(|(t, _)| t == timeline) {
            Some(i) => i,
            None => {
                counts.push((timeline.to_owned(), NotificationCounts::default()));
                counts.len() - 1
            }
        };
        counts[i].1.notifications += 1;
        counts[i].1.highlights += u64::from(highlight);
    }
    counts
}

/// Adds per-timeline counts (of pending rows) to the counters' counts.
pub fn add_counts(counts: &mut RoomNotificationCounts, extra: Vec<(String, NotificationCounts)>) {
    for (timeline, c) in extra {
        let slot = if timeline == crate::push::MAIN_TIMELINE {
            &mut counts.main
        } else {
            match counts.threads.iter().position(|(t, _)| *t == timeline) {
                Some(i) => &mut counts.threads[i].1,
                None => {
                    counts
                        .threads
                        .push((timeline, NotificationCounts::default()));
                    let last = counts.threads.len() - 1;
                    &mut counts.threads[last].1
                }
            }
        };
        slot.notifications += c.notifications;
        slot.highlights += c.highlights;
    }
    counts.threads.sort_by(|a, b| a.0.cmp(&b.0));
}
