//! The response body of simplified sliding sync, with the field names of `ruma-client-api`'s
//! `sync_events::v5`. Absent fields mean "unchanged" to the client, so each is left out
//! unless there is something to say.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Default, Serialize)]
pub struct SlidingSyncResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<String>,
    /// Where the next request continues from (opaque to the client).
    pub pos: String,
    pub lists: BTreeMap<String, ListCount>,
    pub rooms: BTreeMap<OwnedRoomId, RoomResponse>,
    pub extensions: ExtensionsResponse,
}

impl SlidingSyncResponse {
    /// Nothing new for the client: a long-poll keeps waiting. List counts do not count: any
    /// change that moves a room in a list also puts that room in `rooms`.
    pub(super) fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.extensions.is_empty()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ListCount {
    /// How many rooms pass the list's filters.
    pub count: usize,
}

/// One room's update.
#[derive(Debug, Default, Serialize)]
pub struct RoomResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Some(None)` is `null`: the avatar was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<Option<String>>,
    /// The first time this connection sees the room: the client replaces what it had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial: Option<bool>,
    /// The timeline is sent again, longer, because the `timeline_limit` grew (as Synapse
    /// tells it): the client replaces the room's timeline rather than appending.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unstable_expanded_timeline: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_dm: Option<bool>,
    /// Stripped state of an invite or knock (its own membership event included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_state: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_state: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invited_count: Option<usize>,
    /// How many of the timeline's events are new since the request's `pos`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_live: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bump_stamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heroes: Option<Vec<Hero>>,
    /// Unread notifications of a joined room, after the user's read receipts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highlight_count: Option<u64>,
}

impl RoomResponse {
    /// Whether the update tells the client anything (a bump stamp alone does not).
    pub(super) fn has_news(&self) -> bool {
        self.initial == Some(true)
            || self.name.is_some()
            || self.avatar.is_some()
            || self.invite_state.is_some()
            || !self.timeline.is_empty()
            || !self.required_state.is_empty()
            || self.joined_count.is_some()
            || self.invited_count.is_some()
            || self.heroes.is_some()
    }
}

/// A member the client may name an unnamed room after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hero {
    pub user_id: OwnedUserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ExtensionsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_device: Option<ToDeviceResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2ee: Option<E2eeResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_data: Option<AccountDataResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<RoomEventsResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typing: Option<RoomEventsResponse>,
}

impl ExtensionsResponse {
    /// No extension has news. One-time key counts are always there and are no news alone.
    pub(super) fn is_empty(&self) -> bool {
        self.to_device.as_ref().is_none_or(|t| t.events.is_empty())
            && self
                .e2ee
                .as_ref()
                .is_none_or(|e| e.device_lists.changed.is_empty() && e.device_lists.left.is_empty())
            && self
                .account_data
                .as_ref()
                .is_none_or(|a| a.global.is_empty() && a.rooms.is_empty())
            && self.receipts.as_ref().is_none_or(|r| r.rooms.is_empty())
            && self.typing.as_ref().is_none_or(|t| t.rooms.is_empty())
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ToDeviceResponse {
    /// The `since` of the next request: acknowledges these events.
    pub next_batch: String,
    pub events: Vec<Value>,
}

#[derive(Debug, Default, Serialize)]
pub struct E2eeResponse {
    pub device_lists: DeviceLists,
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    pub device_unused_fallback_key_types: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct DeviceLists {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

#[derive(Debug, Default, Serialize)]
pub struct AccountDataResponse {
    pub global: Vec<Value>,
    pub rooms: BTreeMap<OwnedRoomId, Vec<Value>>,
}

/// One ephemeral event (`m.receipt`, `m.typing`) per room.
#[derive(Debug, Default, Serialize)]
pub struct RoomEventsResponse {
    pub rooms: BTreeMap<OwnedRoomId, Value>,
}
