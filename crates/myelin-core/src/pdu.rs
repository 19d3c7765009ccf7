//! The persistent data unit: a room event exactly as it travels between servers.
//!
//! A `Pdu` keeps the signed JSON it was built or received as (`json`, without `event_id` for
//! room versions 3+) and the handful of fields the server reads, parsed once.

use ruma::{
    canonical_json::CanonicalJsonObject, events::TimelineEventType, EventId,
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("invalid PDU JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("PDU has no room ID and is not a create event")]
    MissingRoomId,
}

/// The fields of a PDU that the server reads; the rest stays in `json`.
#[derive(Debug, Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    #[serde(default, deserialize_with = "event_references")]
    prev_events: Vec<OwnedEventId>,
    #[serde(default, deserialize_with = "event_references")]
    auth_events: Vec<OwnedEventId>,
    #[serde(default)]
    depth: UInt,
    redacts: Option<OwnedEventId>,
}

/// `prev_events`/`auth_events`: plain IDs (room versions 3+) or `[id, {hashes}]` pairs (1 and 2).
fn event_references<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<OwnedEventId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Reference {
        Id(OwnedEventId),
        WithHashes(OwnedEventId, serde::de::IgnoredAny),
    }
    let references = Vec::<Reference>::deserialize(deserializer)?;
    Ok(references
        .into_iter()
        .map(|r| match r {
            Reference::Id(id) | Reference::WithHashes(id, _) => id,
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    /// The room the event is in (derived from the event ID for a v12 create event).
    pub room_id: OwnedRoomId,
    /// Whether the JSON itself carries `room_id` (a v12 create event does not).
    pub room_id_in_json: bool,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
    /// `redacts` from the top level (v1-10) or from `content` (v11+).
    pub redacts: Option<OwnedEventId>,
    /// Set when the event failed authorisation (kept for the DAG, never served as state).
    pub rejected: bool,
    /// The signed PDU JSON.
    pub json: Box<RawJsonValue>,
}

impl Pdu {
    /// Parses a PDU from its JSON and its (already computed or received) event ID.
    pub fn from_json(event_id: OwnedEventId, json: Box<RawJsonValue>) -> Result<Self, PduError> {
        let fields: PduFields = serde_json::from_str(json.get())?;
        let room_id_in_json = fields.room_id.is_some();
        let room_id = match fields.room_id {
            Some(r) => r,
            None if fields.kind == TimelineEventType::RoomCreate => {
                // Room version 12: the room ID is the create event's reference hash.
                let id = format!("!{}", event_id.as_str().trim_start_matches('$'));
                OwnedRoomId::try_from(id).map_err(|_| PduError::MissingRoomId)?
            }
            None => return Err(PduError::MissingRoomId),
        };
        let redacts = fields.redacts.or_else(|| {
            #[derive(Deserialize)]
            struct C {
                redacts: Option<OwnedEventId>,
            }
            if fields.kind == TimelineEventType::RoomRedaction {
                serde_json::from_str::<C>(fields.content.get())
                    .ok()
                    .and_then(|c| c.redacts)
            } else {
                None
            }
        });
        Ok(Pdu {
            event_id,
            room_id,
            room_id_in_json,
            sender: fields.sender,
            origin_server_ts: fields.origin_server_ts,
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: fields.prev_events,
            auth_events: fields.auth_events,
            depth: fields.depth.into(),
            redacts,
            rejected: false,
            json,
        })
    }

    /// Parses from a canonical JSON object.
    pub fn from_canonical(
        event_id: OwnedEventId,
        object: &CanonicalJsonObject,
    ) -> Result<Self, PduError> {
        let json = serde_json::value::to_raw_value(object)?;
        Self::from_json(event_id, json)
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The PDU as a canonical JSON object.
    pub fn to_canonical(&self) -> Result<CanonicalJsonObject, PduError> {
        Ok(serde_json::from_str(self.json.get())?)
    }

    /// Deserializes `content` into `T`.
    pub fn content_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.content.get())
    }

    /// `content` as a JSON value.
    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.content.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// The relationship an event declares in `content["m.relates_to"]` (spec: Client-Server API,
/// "Forming relationships between events"): the parent event and the relationship type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub event_id: OwnedEventId,
    pub rel_type: String,
}

/// The longest `rel_type` a relation is recognised with. Types are short namespaced names; the
/// bound keeps a hostile event from putting a huge key into the relations index.
pub const MAX_REL_TYPE_LEN: usize = 255;

impl Pdu {
    /// The relation this event declares: `m.relates_to` with a valid `event_id` and a string
    /// `rel_type`. A rich reply alone (`m.in_reply_to`, no `rel_type`) is not a relation, and
    /// neither is anything malformed.
    pub fn relation(&self) -> Option<Relation> {
        #[derive(Deserialize)]
        struct Content {
            #[serde(rename = "m.relates_to")]
            relates_to: Option<RelatesTo>,
        }
        #[derive(Deserialize)]
        struct RelatesTo {
            event_id: Option<OwnedEventId>,
            rel_type: Option<String>,
        }
        let relates_to = self.content_as::<Content>().ok()?.relates_to?;
        let rel_type = relates_to
            .rel_type
            .filter(|t| t.len() <= MAX_REL_TYPE_LEN)?;
        Some(Relation {
            event_id: relates_to.event_id?,
            rel_type,
        })
    }
}

/// What server-side search indexes of an event: the key searched by (`content.body`,
/// `content.name` or `content.topic`, as `/search` names them) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchableText {
    pub key: &'static str,
    pub value: String,
}

/// The longest text indexed for search; longer values are cut (at a character boundary).
pub const MAX_SEARCH_TEXT_BYTES: usize = 64 * 1024;

impl Pdu {
    /// The text `/search` finds this event by: a message's body, a room's name or topic.
    /// Nothing for other events, rejected ones or malformed content.
    pub fn searchable_text(&self) -> Option<SearchableText> {
        if self.rejected {
            return None;
        }
        let (key, field) = match self.kind.to_string().as_str() {
            "m.room.message" => ("content.body", "body"),
            "m.room.name" => ("content.name", "name"),
            "m.room.topic" => ("content.topic", "topic"),
            _ => return None,
        };
        let content = self.content_value();
        let text = content.get(field)?.as_str()?;
        if text.trim().is_empty() {
            return None;
        }
        let mut end = text.len().min(MAX_SEARCH_TEXT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(SearchableText {
            key,
            // PostgreSQL text cannot hold NUL.
            value: text[..end].replace('\0', " "),
        })
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id_in_json.then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Lets `&EventId` lookups work on maps keyed by owned IDs.
pub fn event_id_str(id: &EventId) -> &str {
    id.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content(content: serde_json::Value) -> Pdu {
        let json = serde_json::json!({
            "type": "m.room.message", "sender": "@a:x", "room_id": "!r:x",
            "origin_server_ts": 1, "content": content, "depth": 1,
            "prev_events": [], "auth_events": [],
        });
        let raw = serde_json::value::to_raw_value(&json).expect("serializable");
        Pdu::from_json(OwnedEventId::try_from("$e").expect("id"), raw).expect("valid PDU")
    }

    #[test]
    fn a_relation_needs_an_event_id_and_a_rel_type() {
        let thread = with_content(serde_json::json!({
            "m.relates_to": { "rel_type": "m.thread", "event_id": "$root",
                              "m.in_reply_to": { "event_id": "$other" } }
        }));
        assert_eq!(
            thread.relation(),
            Some(Relation {
                event_id: OwnedEventId::try_from("$root").expect("id"),
                rel_type: "m.thread".into(),
            })
        );
        for not_one in [
            serde_json::json!({ "body": "plain" }),
            serde_json::json!({ "m.relates_to": { "m.in_reply_to": { "event_id": "$x" } } }),
            serde_json::json!({ "m.relates_to": { "rel_type": "m.thread" } }),
            serde_json::json!({ "m.relates_to": { "rel_type": 5, "event_id": "$x" } }),
            serde_json::json!({ "m.relates_to": { "rel_type": "m.thread", "event_id": "nope" } }),
            serde_json::json!({ "m.relates_to": "$x" }),
            serde_json::json!({ "m.relates_to": { "rel_type": "x".repeat(256), "event_id": "$x" } }),
        ] {
            assert_eq!(with_content(not_one.clone()).relation(), None, "{not_one}");
        }
    }
}
