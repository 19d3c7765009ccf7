//! The `room_events` criteria of `POST /search`, as sent and once checked.

use myelin_storage::SearchOrder;
use serde::Deserialize;

use crate::{filter::RoomEventFilter, ServiceError, ServiceResult};

/// The texts that may be searched.
const KEYS: [&str; 3] = ["content.body", "content.name", "content.topic"];
/// The longest search term accepted.
const MAX_TERM_BYTES: usize = 1024;
/// The most context events asked for on either side of a result.
const MAX_CONTEXT: u64 = 20;

/// `search_categories.room_events`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoomEventsCriteria {
    #[serde(default)]
    pub search_term: String,
    pub keys: Option<Vec<String>>,
    #[serde(default)]
    pub filter: RoomEventFilter,
    pub order_by: Option<String>,
    pub event_context: Option<EventContextRequest>,
    #[serde(default)]
    pub include_state: bool,
    pub groupings: Option<Groupings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventContextRequest {
    pub before_limit: Option<u64>,
    pub after_limit: Option<u64>,
    #[serde(default)]
    pub include_profile: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Groupings {
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupBy {
    pub key: Option<String>,
}

/// The criteria once checked: keys, order and context limits known to be valid.
pub(super) struct Checked {
    pub search_term: String,
    pub keys: Vec<String>,
    pub filter: RoomEventFilter,
    pub order: SearchOrder,
    /// `(before, after, include_profile)`.
    pub context: Option<(usize, usize, bool)>,
    pub include_state: bool,
    pub group_by_room: bool,
    pub group_by_sender: bool,
}

impl RoomEventsCriteria {
    pub(super) fn validated(self) -> ServiceResult<Checked> {
        if self.search_term.trim().is_empty() {
            return Err(ServiceError::BadJson(
                "search_term must not be empty".into(),
            ));
        }
        if self.search_term.len() > MAX_TERM_BYTES {
            return Err(ServiceError::InvalidParam("search_term is too long".into()));
        }
        let keys = self
            .keys
            .unwrap_or_else(|| KEYS.iter().map(|k| (*k).to_owned()).collect());
        if let Some(bad) = keys.iter().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ServiceError::InvalidParam(format!(
                "Cannot search by {bad}: keys are content.body, content.name and content.topic"
            )));
        }
        let order = match self.order_by.as_deref() {
            None | Some("rank") => SearchOrder::Rank,
            Some("recent") => SearchOrder::Recent,
            Some(other) => {
                return Err(ServiceError::InvalidParam(format!(
                    "order_by must be rank or recent, not {other}"
                )))
            }
        };
        let context = self.event_context.map(|c| {
            let side = |n: Option<u64>| n.unwrap_or(5).min(MAX_CONTEXT) as usize;
            (side(c.before_limit), side(c.after_limit), c.include_profile)
        });
        let mut group_by_room = false;
        let mut group_by_sender = false;
        for group in self.groupings.map(|g| g.group_by).unwrap_or_default() {
            match group.key.as_deref() {
                Some("room_id") => group_by_room = true,
                Some("sender") => group_by_sender = true,
                other => {
                    return Err(ServiceError::InvalidParam(format!(
                        "Cannot group by {}",
                        other.unwrap_or("nothing")
                    )))
                }
            }
        }
        Ok(Checked {
            search_term: self.search_term,
            keys,
            filter: self.filter,
            order,
            context,
            include_state: self.include_state,
            group_by_room,
            group_by_sender,
        })
    }
}
