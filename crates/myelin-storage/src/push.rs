//! Push notifications (spec: Client-Server API, "Push notifications"): the actions each local
//! user's push rules gave an event, written with the event ([`crate::NewEvent::push_actions`]),
//! the counts and `/notifications` read from them, the users' pushers, and the durable queue of
//! notifications each HTTP pusher still has to deliver.
//!
//! A notification row is written in the event's own transaction, and so is one queue row per HTTP
//! pusher of its user, so a crash can neither lose nor double count a notification. A queue row
//! is deleted only once the push gateway accepted it.

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
    /// Whether the user has HTTP pushers: only then are push queue rows written.
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
    /// The user's notifications before `before` (all when `None`), newest first.
    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        limit: usize,
        only_highlight: bool,
    ) -> StorageResult<Vec<NotificationRecord>>;

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
