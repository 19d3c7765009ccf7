//! Push notifications (spec: Client-Server API, "Push notifications"): the actions each local
//! user's push rules gave an event, written with the event ([`crate::NewEvent::push_actions`]),
//! the counts and `/notifications` read from them, the users' pushers, and the durable queue of
//! notifications each HTTP pusher still has to deliver.
//!
//! An event that notifies anyone gets one `push_events` row, listing every user it notifies with
//! their actions ([`NotifiedUsers`]), and adds one to each of those users' per-room unread
//! counters (`unread_counts`), all in the event's own transaction, with one queue row per HTTP
//! pusher of theirs: so a crash can neither lose nor double count a notification, and a message
//! to a room of many members costs one row plus counter updates on the room's few pages rather
//! than a row per member. A read receipt, a join or a redaction recounts the user's counters
//! from the `push_events` rows after their read position ([`count_unread`]). A queue row is
//! deleted only once the push gateway accepted it.

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
    /// How many rooms the user has unread notifications in (the badge a push carries).
    async fn rooms_with_unread_notifications(&self, user_id: &UserId) -> StorageResult<u64>;
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
/// distinct action list once, and per user an index into them and the highlight flag:
/// `{"a": [[…actions…], …], "u": [["@user:server", 0, false], …]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifiedUsers {
    actions: Vec<serde_json::Value>,
    users: Vec<(String, usize, bool)>,
}

/// One user's entry in [`NotifiedUsers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Notified<'a> {
    pub actions: &'a serde_json::Value,
    pub highlight: bool,
}

impl NotifiedUsers {
    pub fn from_actions(new: &[NewPushAction]) -> NotifiedUsers {
        let mut notified = NotifiedUsers::default();
        for action in new {
            let value = serde_json::from_str(&action.actions)
                .unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
            let index = match notified.actions.iter().position(|a| *a == value) {
                Some(i) => i,
                None => {
                    notified.actions.push(value);
                    notified.actions.len() - 1
                }
            };
            notified
                .users
                .push((action.user_id.to_string(), index, action.highlight));
        }
        notified
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({ "a": self.actions, "u": self.users }).to_string()
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
        let users = match object.remove("u") {
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
        NotifiedUsers { actions, users }
    }

    pub fn find(&self, user_id: &str) -> Option<Notified<'_>> {
        let (_, index, highlight) = self.users.iter().find(|(u, _, _)| u == user_id)?;
        Some(Notified {
            actions: &self.actions[*index],
            highlight: *highlight,
        })
    }

    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _, _)| u.as_str())
    }
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
/// read position: `(stream_pos, thread_id, notified)`.
pub fn count_unread<'a>(
    user_id: &str,
    read: &ReadPositions,
    rows: impl IntoIterator<Item = (i64, Option<&'a str>, &'a str)>,
) -> Vec<(String, NotificationCounts)> {
    let mut counts: Vec<(String, NotificationCounts)> = Vec::new();
    for (pos, thread, notified) in rows {
        let timeline = count_thread(thread);
        if read.covers(timeline, pos) {
            continue;
        }
        let Some(n) = NotifiedUsers::parse(notified)
            .find(user_id)
            .map(|n| n.highlight)
        else {
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
        counts[i].1.highlights += u64::from(n);
    }
    counts
}
