//! The request body of simplified sliding sync (MSC4186), with the field names of
//! `ruma-client-api`'s `sync_events::v5` (what matrix-sdk sends), and the bounds a request
//! must keep.

use std::collections::BTreeMap;

use ruma::OwnedRoomId;
use serde::Deserialize;

use crate::{ServiceError, ServiceResult};

/// Most lists one request may ask for.
const MAX_LISTS: usize = 100;
/// Most ranges of one list.
const MAX_RANGES: usize = 100;
/// Most rooms one request may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 500;
/// Most `required_state` entries of one list or subscription (Element X asks for about 20).
const MAX_REQUIRED_STATE: usize = 100;
/// Most `required_state` entries of all lists together: a room in every list combines them.
const MAX_LIST_REQUIRED_STATE: usize = 500;
/// Longest `conn_id` (clients use short names such as `room-list` and `encryption`).
const MAX_CONN_ID: usize = 64;

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`: the body. The client
/// sends the whole request every time; nothing of it is remembered between requests.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlidingSyncRequest {
    /// Tells apart the connections of one device (matrix-sdk opens `room-list` and
    /// `encryption` side by side).
    #[serde(default)]
    pub conn_id: Option<String>,
    /// Echoed in the response.
    #[serde(default)]
    pub txn_id: Option<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, ListConfig>,
    #[serde(default)]
    pub room_subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    #[serde(default)]
    pub extensions: ExtensionsConfig,
}

/// One list: which slices of the sorted, filtered rooms, and what to send of each room.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListConfig {
    /// Inclusive index ranges into the sorted list.
    #[serde(default)]
    pub ranges: Vec<(u64, u64)>,
    #[serde(flatten)]
    pub room: RoomConfig,
    #[serde(default)]
    pub filters: Option<ListFilters>,
}

/// What to send of a room: its latest events and the state entries named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoomConfig {
    /// `(type, state_key)` pairs; `*` is a wildcard for either, `$ME` the user's ID and
    /// `$LAZY` (for `m.room.member`) the senders of the timeline sent.
    #[serde(default)]
    pub required_state: Vec<(String, String)>,
    #[serde(default)]
    pub timeline_limit: u64,
}

/// Filters of a list; all that are set must hold (absent means no filter, not `false`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListFilters {
    /// DMs only (`true`) or no DMs (`false`), as `m.direct` account data says.
    #[serde(default)]
    pub is_dm: Option<bool>,
    /// Rooms with (`true`) or without (`false`) an `m.room.encryption` state event.
    #[serde(default)]
    pub is_encrypted: Option<bool>,
    /// Invites only (`true`) or no invites (`false`).
    #[serde(default)]
    pub is_invite: Option<bool>,
    /// Create-event `type`s to keep (`null` is a room without a type); empty keeps all.
    #[serde(default)]
    pub room_types: Vec<Option<String>>,
    /// Create-event `type`s to drop; wins over `room_types`.
    #[serde(default)]
    pub not_room_types: Vec<Option<String>>,
    /// Only rooms that are children (`m.space.child`) of one of these spaces.
    #[serde(default)]
    pub spaces: Vec<OwnedRoomId>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExtensionsConfig {
    #[serde(default)]
    pub to_device: ToDeviceConfig,
    #[serde(default)]
    pub e2ee: Toggle,
    #[serde(default)]
    pub account_data: RoomsExtension,
    #[serde(default)]
    pub receipts: RoomsExtension,
    #[serde(default)]
    pub typing: RoomsExtension,
}

/// An extension with nothing to configure but whether it is on.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Toggle {
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl Toggle {
    pub(super) fn on(&self) -> bool {
        self.enabled == Some(true)
    }
}

/// The to-device extension: `since` acknowledges what the previous `next_batch` delivered.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToDeviceConfig {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Most messages per response (default 100, at most 1000); the messages of one position
    /// go out together, so it may be passed by those sharing the last one.
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub since: Option<String>,
}

/// An extension about rooms (account data, receipts, typing): for the rooms of which lists
/// (`*` or absent: all) and of which subscriptions (`*` or absent: all rooms in the response).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomsExtension {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub lists: Option<Vec<String>>,
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
}

impl RoomsExtension {
    pub(super) fn on(&self) -> bool {
        self.enabled == Some(true)
    }
}

impl SlidingSyncRequest {
    /// Refuses a request beyond the bounds (400 `M_INVALID_PARAM`).
    pub fn validate(&self) -> ServiceResult<()> {
        let invalid = |m: &str| Err(ServiceError::InvalidParam(m.to_owned()));
        if self.conn_id.as_ref().is_some_and(|c| c.len() > MAX_CONN_ID) {
            return invalid("conn_id is too long");
        }
        if self.lists.len() > MAX_LISTS {
            return invalid("Too many lists");
        }
        if self.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
            return invalid("Too many room subscriptions");
        }
        for list in self.lists.values() {
            if list.ranges.len() > MAX_RANGES {
                return invalid("Too many ranges in a list");
            }
            if list.ranges.iter().any(|(start, end)| start > end) {
                return invalid("A range must not end before it starts");
            }
        }
        let configs = self
            .lists
            .values()
            .map(|l| &l.room)
            .chain(self.room_subscriptions.values());
        for config in configs {
            if config.required_state.len() > MAX_REQUIRED_STATE {
                return invalid("Too many required_state entries");
            }
        }
        let in_lists: usize = self
            .lists
            .values()
            .map(|l| l.room.required_state.len())
            .sum();
        if in_lists > MAX_LIST_REQUIRED_STATE {
            return invalid("Too many required_state entries over all lists");
        }
        Ok(())
    }
}
