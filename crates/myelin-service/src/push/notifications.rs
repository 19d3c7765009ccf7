//! What the stored notification rows answer: a room's unread counts for `/sync` and sliding sync,
//! and `GET /notifications`. Nothing here evaluates push rules again.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::{
    EventRecord, NotificationCounts, RoomNotificationCounts, RoomStore, StateKey,
};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use super::Push;
use crate::format::client_event;
use crate::{ServiceError, ServiceResult};

/// Most notifications one `/notifications` page returns.
const MAX_LIMIT: usize = 100;
/// The page size when the client names none.
const DEFAULT_LIMIT: usize = 20;

/// One entry of `GET /notifications`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notification {
    pub actions: Value,
    pub event: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_tag: Option<String>,
    pub read: bool,
    pub room_id: String,
    pub ts: u64,
}

/// The answer of `GET /notifications`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationsPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub notifications: Vec<Notification>,
}

impl Push {
    /// The user's unread counts in a room, after their read receipts.
    pub async fn unread_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<RoomNotificationCounts> {
        Ok(self
            .ctx
            .storage
            .notification_counts(user_id, room_id)
            .await?)
    }

    /// The user's unread counts in each of `rooms` (in that order), over the main timeline and
    /// every thread: one storage call for all of them.
    pub async fn unread_counts_in(
        &self,
        user_id: &UserId,
        rooms: &[OwnedRoomId],
    ) -> ServiceResult<Vec<NotificationCounts>> {
        let counts = self
            .ctx
            .storage
            .notification_counts_in(user_id, rooms)
            .await?;
        Ok(counts.iter().map(RoomNotificationCounts::total).collect())
    }

    /// `GET /notifications`: newest first, from the `from` token, `only=highlight` for mentions.
    pub async fn notifications(
        &self,
        user_id: &UserId,
        from: Option<&str>,
        limit: Option<usize>,
        only: Option<&str>,
    ) -> ServiceResult<NotificationsPage> {
        let before = match from {
            Some(token) => Some(StreamPos(token.parse::<i64>().map_err(|_| {
                ServiceError::InvalidParam(format!("invalid from token {token:?}"))
            })?)),
            None => None,
        };
        let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let only_highlight = only.is_some_and(|o| o.contains("highlight"));
        let page = self
            .ctx
            .storage
            .notifications(user_id, before, limit, only_highlight)
            .await?;
        let rows = page.records;
        let ids: Vec<OwnedEventId> = rows.iter().map(|r| r.event_id.clone()).collect();
        let mut events: HashMap<OwnedEventId, _> = HashMap::new();
        let records = self.ctx.storage.get_events(&ids).await?;
        let erased = self.erased_senders(&records).await?;
        for record in records {
            let record = if erased.contains(&record.pdu.sender) {
                self.as_seen_by(user_id, record).await?
            } else {
                record
            };
            events.insert(record.pdu.event_id.clone(), record);
        }
        let now = self.ctx.now_ms();
        let next_token = page.next.map(|p| p.0.to_string());
        let notifications = rows
            .into_iter()
            .filter_map(|row| {
                let record = events.remove(&row.event_id)?;
                Some(Notification {
                    actions: serde_json::from_str(&row.actions).unwrap_or(Value::Array(vec![])),
                    ts: record.pdu.origin_server_ts.0.into(),
                    event: client_event(&record, None, now, None),
                    profile_tag: None,
                    read: row.read,
                    room_id: row.room_id.to_string(),
                })
            })
            .collect();
        Ok(NotificationsPage {
            next_token,
            notifications,
        })
    }

    /// The local senders of `records` deactivated with `erase`.
    async fn erased_senders(&self, records: &[EventRecord]) -> ServiceResult<HashSet<OwnedUserId>> {
        let mut local: Vec<OwnedUserId> = records
            .iter()
            .map(|r| r.pdu.sender.clone())
            .filter(|s| s.server_name() == self.ctx.server_name())
            .collect();
        local.sort();
        local.dedup();
        Ok(self
            .ctx
            .storage
            .erased_users(&local)
            .await?
            .into_iter()
            .collect())
    }

    /// An event of an erased sender as `user_id` gets it: whole if they were joined when it was
    /// sent, else redacted (the rule of `rooms/visibility.rs`; an invitee is notified too).
    async fn as_seen_by(
        &self,
        user_id: &UserId,
        mut record: EventRecord,
    ) -> ServiceResult<EventRecord> {
        let key: StateKey = ("m.room.member".to_owned(), user_id.to_string());
        let storage = &self.ctx.storage;
        let entries = storage
            .state_entries_at(record.state_snapshot, std::slice::from_ref(&key))
            .await?;
        let ids: Vec<OwnedEventId> = entries.into_values().collect();
        let joined = storage.get_events(&ids).await?.iter().any(|m| {
            m.pdu
                .content_value()
                .get("membership")
                .and_then(Value::as_str)
                == Some("join")
        });
        if joined || record.redacted_by.is_some() || record.pdu.sender == user_id {
            return Ok(record);
        }
        let Some(room) = RoomStore::room_info(storage.as_ref(), &record.pdu.room_id).await? else {
            return Ok(record);
        };
        let rules = myelin_room::rules_for(&room.version)?;
        let json = myelin_room::redact_pdu_json(&record.pdu, &rules)?;
        record.pdu = myelin_core::Pdu::from_json(record.pdu.event_id.clone(), json)
            .map_err(|e| ServiceError::Internal(format!("redacted event: {e}")))?;
        Ok(record)
    }
}
