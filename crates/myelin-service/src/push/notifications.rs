//! What the stored notification rows answer: a room's unread counts for `/sync` and sliding sync,
//! and `GET /notifications`. Nothing here evaluates push rules again.

use std::collections::HashMap;

use myelin_core::StreamPos;
use myelin_storage::RoomNotificationCounts;
use ruma::{OwnedEventId, RoomId, UserId};
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
        let mut events: HashMap<OwnedEventId, _> = self
            .ctx
            .storage
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|e| (e.pdu.event_id.clone(), e))
            .collect();
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
}
