//! Push notifications (spec: Client-Server API, "Push notifications"): the actions each local
//! user's push rules gave an event, written with the event ([`crate::NewEvent::push_actions`]),
//! the counts and `/notifications` read from them, the users' pushers, and the durable queue of
//! notifications each HTTP pusher still has to deliver.
//!
//! An event that notifies anyone gets one `push_events` row, naming every user it notifies (by
//! member number) with their actions ([`NotifiedUsers`]), in the event's own transaction, with
//! one queue row per HTTP pusher of theirs: so a crash can neither lose nor double count a
//! notification, and a message to a room of many members costs one row of a few dozen bytes.
//! The per-room unread counters (`unread_counts`) follow in batches: see [`crate::push_fold`].
//! A read receipt, a join or a redaction recounts the user's counters from the `push_events`
//! rows after their read position ([`count_unread`]). A queue row is deleted only once the push
//! gateway accepted it.

use async_trait::async_trait;
use myelin_core::StreamPos;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::StorageResult;

/// The outcome of one user's push rules for an event that notifies them (only those are stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushAction {
    pub user_id: OwnedUserId,
    /// The actions, as the JSON array the rules gave (`["notify", {"set_tweak": …}]`).
    pub actions: String,
    pub highlight: bool,
    /// The thread root when the event is in a thread; `None` for the main timeline.
    pub thread_id: Option<String>,
    /// Whether the user has pushers (HTTP or e-mail): only then are push queue rows written.
    pub queue: bool,
}

/// Unread counts of one timeline (the main one or a thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationCounts {
    pub notifications: u64,
    pub highlights: u64,
}

/// A room's unread counts for one user: after their read receipt (`m.read` or `m.read.private`,
/// the later one), unthreaded or of the timeline (`main` or the thread root) the row is in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomNotificationCounts {
    pub main: NotificationCounts,
    /// Per thread root, only threads with something unread.
    pub threads: Vec<(String, NotificationCounts)>,
}

impl RoomNotificationCounts {
    /// The counts over the main timeline and every thread.
    pub fn total(&self) -> NotificationCounts {
        self.threads
            .iter()
            .fold(self.main, |acc, (_, c)| NotificationCounts {
                notifications: acc.notifications + c.notifications,
                highlights: acc.highlights + c.highlights,
            })
    }
}

/// One page of `GET /notifications`: what was found, and where to go on from (`None` when
/// nothing older is left). A page may hold fewer than asked and still go on: the storage scans
/// a bounded number of the rooms' notifying events per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationPage {
    pub records: Vec<NotificationRecord>,
    pub next: Option<StreamPos>,
}

/// How many `push_events` rows one `/notifications` page reads at most.
pub const NOTIFICATIONS_SCAN: usize = 2_000;
/// How many `push_events` rows a recount reads at most (newest first): past that many unread
/// notifications in one room, the count stops growing.
pub const RECOUNT_SCAN: usize = 10_000;

/// One row of `GET /notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_pos: StreamPos,
    pub actions: String,
    pub highlight: bool,
    /// Whether the user's read receipt is at or after it.
    pub read: bool,
}

/// A pusher: where to send a user's notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherRecord {
    /// Assigned by storage; ignored by [`PushStore::set_pusher`].
    pub id: i64,
    pub user_id: OwnedUserId,
    /// The device whose access token set it: the pusher goes with the device.
    pub device_id: String,
    /// `http` or `email`.
    pub kind: String,
    pub app_id: String,
    pub pushkey: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The `data` object as JSON.
    pub data: String,
    pub created_ms: u64,
}

/// A notification an HTTP pusher still has to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPush {
    pub pusher_id: i64,
    pub stream_pos: StreamPos,
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub actions: String,
}

/// The `pushers` columns [`crate::rows::pusher`] reads, in order.
pub const PUSHER_COLUMNS: &str = "id, user_id, device_id, kind, app_id, pushkey, \
     app_display_name, device_display_name, profile_tag, lang, data, created_ms";

#[async_trait]
pub trait PushStore {
    /// The user's unread counts in the room (see [`RoomNotificationCounts`]).
    async fn notification_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> StorageResult<RoomNotificationCounts>;
    /// The user's unread counts in each of `rooms`, in the order given: one call for many rooms
    /// (a sliding sync window).
    async fn notification_counts_in(
        &self,
        user_id: &UserId,
        rooms: &[OwnedRoomId],
    ) -> StorageResult<Vec<RoomNotificationCounts>>;
    /// How many rooms the user has unread notifications in (the badge a push carries).
    async fn rooms_with_unread_notifications(&self, user_id: &UserId) -> StorageResult<u64>;
    /// Adds up to `max` pending `push_events` rows to the unread counters, in one transaction
    /// with the counters' new position (see [`crate::push_fold`]); how many it folded.
    async fn fold_unread_counts(&self, max: usize) -> StorageResult<usize>;
    /// The user's notifications in the rooms they are or were in (invites included) before `before` (all when `None`),
    /// newest first; at most `limit`, from at most [`NOTIFICATIONS_SCAN`] notifying events.
    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        limit: usize,
        only_highlight: bool,
    ) -> StorageResult<NotificationPage>;

    /// Creates or updates the user's pusher of `(app_id, pushkey)`; unless `append`, removes
    /// the pushers of other users with the same `(app_id, pushkey)`. Returns its ID.
    async fn set_pusher(&self, pusher: PusherRecord, append: bool) -> StorageResult<i64>;
    /// Deletes the user's pusher of `(app_id, pushkey)` with its queue; false if none.
    async fn delete_pusher(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
    ) -> StorageResult<bool>;
    /// Deletes a pusher by ID with its queue (a push gateway rejected its pushkey).
    async fn delete_pusher_by_id(&self, id: i64) -> StorageResult<()>;
    /// Deletes the user's pushers except those of `keep_device`; returns their IDs.
    async fn delete_pushers_except(
        &self,
        user_id: &UserId,
        keep_device: &str,
    ) -> StorageResult<Vec<i64>>;
    /// The user's pushers, oldest first.
    async fn pushers(&self, user_id: &UserId) -> StorageResult<Vec<PusherRecord>>;
    async fn pusher(&self, id: i64) -> StorageResult<Option<PusherRecord>>;
    /// The IDs of the pushers with queued notifications.
    async fn pushers_with_queue(&self) -> StorageResult<Vec<i64>>;
    /// Up to `limit` queued notifications of the pusher, oldest first.
    async fn queued_pushes(&self, pusher_id: i64, limit: usize) -> StorageResult<Vec<QueuedPush>>;
    /// Removes a delivered notification from the pusher's queue.
    async fn delete_queued_push(&self, pusher_id: i64, stream_pos: StreamPos) -> StorageResult<()>;
}

/// The users one event notifies, as its `push_events` row stores them (`notified`): each
/// distinct action list once, and per list the users it was given to, named by their member
/// number in the room (`push_members`, see [`MemberNumbers`]) as ranges, plus the ranges of
/// those it highlights:
/// `{"a": [[…actions…], …], "g": [[first, last, first, last, …], …], "h": [first, last, …]}`.
/// Numbers rather than user IDs keep the row a few dozen bytes in a room of any size, which is
/// what the send path writes per message. Rows written before member numbers name users by ID
/// (`"u": [["@user:server", action index, highlight], …]`) and are still read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifiedUsers {
    actions: Vec<serde_json::Value>,
    /// Per action list (same index), the member numbers given it.
    groups: Vec<MemberSet>,
    highlights: MemberSet,
    /// Users by ID, from rows of the first format.
    by_id: Vec<(String, usize, bool)>,
}

/// One user's entry in [`NotifiedUsers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Notified<'a> {
    pub actions: &'a serde_json::Value,
    pub highlight: bool,
}

/// A user's number among the local users ever notified in a room: assigned the first time an
/// event notifies them there, and never reused.
pub type MemberNumber = u32;

/// The member numbers of the users an event notifies, by user ID (from `push_members`).
pub type MemberNumbers = std::collections::HashMap<String, MemberNumber>;

/// A set of member numbers as sorted, disjoint inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MemberSet(Vec<(MemberNumber, MemberNumber)>);

impl MemberSet {
    fn from_numbers(mut numbers: Vec<MemberNumber>) -> MemberSet {
        numbers.sort_unstable();
        numbers.dedup();
        let mut ranges: Vec<(MemberNumber, MemberNumber)> = Vec::new();
        for n in numbers {
            match ranges.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(n) => *last = n,
                _ => ranges.push((n, n)),
            }
        }
        MemberSet(ranges)
    }

    fn contains(&self, n: MemberNumber) -> bool {
        let i = self.0.partition_point(|(_, last)| *last < n);
        self.0.get(i).is_some_and(|(first, _)| *first <= n)
    }

    fn to_json(&self) -> serde_json::Value {
        self.0.iter().flat_map(|(f, l)| [*f, *l]).collect()
    }

    /// Reads `[first, last, …]`; ranges out of order or malformed are dropped.
    fn parse(value: Option<&serde_json::Value>) -> MemberSet {
        let Some(flat) = value.and_then(|v| v.as_array()) else {
            return MemberSet::default();
        };
        let numbers: Vec<MemberNumber> = flat
            .iter()
            .filter_map(|n| MemberNumber::try_from(n.as_u64()?).ok())
            .collect();
        let mut ranges: Vec<(MemberNumber, MemberNumber)> = Vec::new();
        for pair in numbers.chunks_exact(2) {
            let (first, last) = (pair[0], pair[1]);
            if first <= last && ranges.last().is_none_or(|(_, prev)| *prev < first) {
                ranges.push((first, last));
            }
        }
        MemberSet(ranges)
    }
}

impl NotifiedUsers {
    /// The row of `new`, each user named by their number in `numbers`, which holds one entry
    /// per action in the same order (users without one are left out: the caller assigns every
    /// notified user a number first).
    pub fn from_actions(new: &[NewPushAction], numbers: &[Option<MemberNumber>]) -> NotifiedUsers {
        // Distinct action lists by their JSON text (members mostly share one), parsed once.
        let mut texts: Vec<&str> = Vec::new();
        let mut groups: Vec<Vec<MemberNumber>> = Vec::new();
        let mut highlights = Vec::new();
        for (action, number) in new.iter().zip(numbers) {
            let Some(number) = *number else {
                continue;
            };
            let index = match texts.iter().position(|t| *t == action.actions) {
                Some(i) => i,
                None => {
                    texts.push(&action.actions);
                    groups.push(Vec::new());
                    texts.len() - 1
                }
            };
            groups[index].push(number);
            if action.highlight {
                highlights.push(number);
            }
        }
        let actions = texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
            })
            .collect();
        NotifiedUsers {
            actions,
            groups: groups.into_iter().map(MemberSet::from_numbers).collect(),
            highlights: MemberSet::from_numbers(highlights),
            by_id: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        let groups: Vec<serde_json::Value> = self.groups.iter().map(MemberSet::to_json).collect();
        serde_json::json!({ "a": self.actions, "g": groups, "h": self.highlights.to_json() })
            .to_string()
    }

    /// Reads a stored `notified` column; what cannot be read notifies nobody.
    pub fn parse(json: &str) -> NotifiedUsers {
        let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(json) else {
            return NotifiedUsers::default();
        };
        let actions = match object.remove("a") {
            Some(serde_json::Value::Array(actions)) => actions,
            _ => Vec::new(),
        };
        let mut groups: Vec<MemberSet> = match object.get("g").and_then(|g| g.as_array()) {
            Some(groups) => groups.iter().map(|g| MemberSet::parse(Some(g))).collect(),
            None => Vec::new(),
        };
        groups.truncate(actions.len());
        let by_id = match object.remove("u") {
            Some(serde_json::Value::Array(users)) => users
                .iter()
                .filter_map(|u| {
                    let user = u.get(0)?.as_str()?.to_owned();
                    let index = usize::try_from(u.get(1)?.as_u64()?).ok()?;
                    let highlight = u.get(2)?.as_bool()?;
                    (index < actions.len()).then_some((user, index, highlight))
                })
                .collect(),
            _ => Vec::new(),
        };
        NotifiedUsers {
            highlights: MemberSet::parse(object.get("h")),
            actions,
            groups,
            by_id,
        }
    }

    /// The member numbers of every user the row notifies.
    pub fn named_numbers(&self) -> impl Iterator<Item = MemberNumber> + '_ {
        self.groups
            .iter()
            .flat_map(|g| g.0.iter().flat_map(|(first, last)| *first..=*last))
    }

    /// The user IDs the row names (rows of the first format only).
    pub fn named_ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.iter().map(|(user, _, _)| user.as_str())
    }

    /// The entry of the user with this ID and (when they have one in the room) member number.
    pub fn find(&self, user_id: &str, number: Option<MemberNumber>) -> Option<Notified<'_>> {
        if let Some(n) = number {
            if let Some(index) = self.groups.iter().position(|g| g.contains(n)) {
                return Some(Notified {
                    actions: &self.actions[index],
                    highlight: self.highlights.contains(n),
                });
            }
        }
        let (_, index, highlight) = self.by_id.iter().find(|(u, _, _)| u == user_id)?;
        Some(Notified {
            actions: &self.actions[*index],
            highlight: *highlight,
        })
    }
}

/// The JSON array of the IDs of the users an event notifies.
pub fn notified_user_ids(actions: &[NewPushAction]) -> String {
    let ids: Vec<&str> = actions.iter().map(|a| a.user_id.as_str()).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())
}

/// The timeline a notification counts in: its thread root, or `main`.
pub fn count_thread(thread_id: Option<&str>) -> &str {
    thread_id.unwrap_or(MAIN_TIMELINE)
}

/// The main timeline's name in `unread_counts` and in threaded receipts.
pub const MAIN_TIMELINE: &str = "main";

/// Where a user has read up to in a room, for recounting: the latest unthreaded read receipt
/// (or their join, when later), and each timeline's own threaded receipt.
#[derive(Debug, Clone, Default)]
pub struct ReadPositions {
    /// Whether the user is joined to the room now.
    pub joined: bool,
    /// The later of the unthreaded `m.read`/`m.read.private` receipt and the join.
    pub unthreaded: i64,
    /// Threaded receipts by timeline (`main` or the thread root).
    pub threads: std::collections::HashMap<String, i64>,
}

impl ReadPositions {
    /// Whether a notification at `pos` in `timeline` is read.
    pub fn covers(&self, timeline: &str, pos: i64) -> bool {
        pos <= self.unthreaded || self.threads.get(timeline).is_some_and(|t| pos <= *t)
    }
}

/// A user's unread counts per timeline from the `push_events` rows after their unthreaded
/// read position: `(stream_pos, thread_id, notified)`; `number` is the user's member number in
/// the room, if they have one.
pub fn count_unread<'a>(
    user_id: &str,
    number: Option<MemberNumber>,
    read: &ReadPositions,
    rows: impl IntoIterator<Item = (i64, Option<&'a str>, &'a str)>,
) -> Vec<(String, NotificationCounts)> {
    let parsed: Vec<(i64, Option<&str>, NotifiedUsers)> = rows
        .into_iter()
        .map(|(pos, thread, notified)| (pos, thread, NotifiedUsers::parse(notified)))
        .collect();
    crate::push_fold::count_notified(
        user_id,
        number,
        read,
        parsed.iter().map(|(pos, thread, n)| (*pos, *thread, n)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(user: &str, actions: &str, highlight: bool) -> NewPushAction {
        NewPushAction {
            user_id: user.try_into().expect("user id"),
            actions: actions.to_owned(),
            highlight,
            thread_id: None,
            queue: false,
        }
    }

    #[test]
    fn users_are_stored_as_ranges_of_member_numbers_and_found_again() {
        let notify = r#"["notify"]"#;
        let loud = r#"["notify",{"set_tweak":"highlight"}]"#;
        let mut new = Vec::new();
        let mut numbers = MemberNumbers::new();
        for n in 0..20u32 {
            let user = format!("@u{n}:example.org");
            numbers.insert(user.clone(), n);
            if n != 4 {
                new.push(action(&user, if n == 7 { loud } else { notify }, n == 7));
            }
        }
        let aligned: Vec<_> = new
            .iter()
            .map(|a| numbers.get(a.user_id.as_str()).copied())
            .collect();
        let json = NotifiedUsers::from_actions(&new, &aligned).to_json();
        assert_eq!(
            json,
            r#"{"a":[["notify"],["notify",{"set_tweak":"highlight"}]],"g":[[0,3,5,6,8,19],[7,7]],"h":[7,7]}"#
        );
        let parsed = NotifiedUsers::parse(&json);
        assert!(parsed.find("@u4:example.org", Some(4)).is_none());
        assert!(parsed.find("@u20:example.org", Some(20)).is_none());
        assert!(parsed.find("@u0:example.org", None).is_none());
        let seven = parsed.find("@u7:example.org", Some(7)).expect("u7");
        assert!(seven.highlight);
        assert_eq!(seven.actions.to_string(), loud);
        let nineteen = parsed.find("@u19:example.org", Some(19)).expect("u19");
        assert!(!nineteen.highlight);
        assert_eq!(nineteen.actions.to_string(), notify);
    }

    #[test]
    fn rows_of_the_first_format_are_read_by_user_id() {
        let json = r#"{"a":[["notify"]],"u":[["@a:x",0,false],["@b:x",0,true],["@c:x",5,true]]}"#;
        let parsed = NotifiedUsers::parse(json);
        assert!(!parsed.find("@a:x", None).expect("a").highlight);
        assert!(parsed.find("@b:x", Some(3)).expect("b").highlight);
        assert!(
            parsed.find("@c:x", None).is_none(),
            "action index out of range"
        );
    }

    #[test]
    fn malformed_rows_notify_nobody() {
        for json in [
            "",
            "[]",
            r#"{"a":[["notify"]],"g":[[3,1]]}"#,
            r#"{"a":[],"g":[[0,5]]}"#,
            r#"{"a":[["notify"]],"g":[[0]]}"#,
        ] {
            let parsed = NotifiedUsers::parse(json);
            assert!(parsed.find("@a:x", Some(3)).is_none(), "{json}");
        }
        // Of overlapping ranges, the first is kept.
        let parsed = NotifiedUsers::parse(r#"{"a":[["notify"]],"g":[[0,5,2,9]]}"#);
        assert!(parsed.find("@a:x", Some(3)).is_some());
        assert!(parsed.find("@a:x", Some(7)).is_none());
    }
}
