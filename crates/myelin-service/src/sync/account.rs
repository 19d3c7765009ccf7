//! The per-user sections of `/sync`: account data (with the push rules of an initial sync) and
//! presence, plus the `set_presence` a sync request may carry.

use std::collections::{HashMap, HashSet};

use myelin_core::StreamPos;
use myelin_storage::PresenceRecord;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Value};

use super::{pass::Pass, Syncer};
use crate::{ServiceError, ServiceResult, Users};

/// Account data changed since the token: the global events for `account_data`, and the per-room
/// ones for the `account_data` of each joined room.
pub(super) struct AccountData {
    pub global: Vec<Value>,
    pub rooms: HashMap<OwnedRoomId, Vec<Value>>,
}

impl Syncer {
    /// `set_presence` of the request: stored only when it differs, keeping the status message.
    pub(super) async fn update_presence_from_sync(
        &self,
        user_id: &UserId,
        presence: &str,
    ) -> ServiceResult<()> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(ServiceError::InvalidParam(format!(
                "Unknown presence state {presence}"
            )));
        }
        let current = self.ctx.storage.get_presence(user_id).await?;
        if current.as_ref().map(|p| p.state.as_str()) != Some(presence) {
            self.ephemeral
                .set_presence(
                    user_id,
                    presence,
                    current.and_then(|p| p.status_msg).as_deref(),
                )
                .await?;
        }
        Ok(())
    }

    /// `account_data` changed since the token, and each joined room's share of it.
    pub(super) async fn account_data(&self, pass: &Pass<'_>) -> ServiceResult<AccountData> {
        let user_id = &pass.authed.user_id;
        let since = pass.since_pos();
        let filter = &pass.filter.account_data;
        let mut data = AccountData {
            global: Vec::new(),
            rooms: HashMap::new(),
        };
        for d in self
            .ctx
            .storage
            .account_data_since(user_id, since.unwrap_or(StreamPos::ZERO))
            .await?
        {
            let event = json!({ "type": d.data_type, "content": d.content });
            match d.room_id {
                Some(room) => data.rooms.entry(room).or_default().push(event),
                None if filter.allows(&d.data_type) => data.global.push(event),
                None => {}
            }
        }
        // Clients read their push rules from the initial sync, changed by them or not.
        let push_rules_sent = data.global.iter().any(|e| e["type"] == "m.push_rules");
        if since.is_none() && !push_rules_sent && filter.allows("m.push_rules") {
            data.global
                .push(push_rules_event(&self.users, user_id).await?);
        }
        Ok(data)
    }

    /// `presence`: changes of the user, of the members of the joined rooms in the response
    /// (`members`), and of everyone else sharing a room with the user.
    pub(super) async fn presence(
        &self,
        pass: &Pass<'_>,
        members: HashSet<OwnedUserId>,
        now: u64,
    ) -> ServiceResult<Vec<Value>> {
        if !pass.filter.presence.allows("m.presence") {
            return Ok(Vec::new());
        }
        let user_id = &pass.authed.user_id;
        let mut users = members;
        users.insert(user_id.clone());
        // Rooms without news are not in `join`, yet their members' presence changes count.
        users.extend(self.rooms.users_sharing_rooms(user_id).await?);
        let users: Vec<_> = users.into_iter().collect();
        Ok(self
            .ctx
            .storage
            .presence_since(&users, pass.since_pos().unwrap_or(StreamPos::ZERO))
            .await?
            .into_iter()
            .map(|p| presence_event(p, now))
            .collect())
    }
}

/// The `m.push_rules` account data event: the user's rules merged with the server defaults.
pub(crate) async fn push_rules_event(users: &Users, user_id: &UserId) -> ServiceResult<Value> {
    let rules = users.push_rules_json(user_id).await?;
    Ok(json!({ "type": "m.push_rules", "content": { "global": rules } }))
}

pub(crate) fn presence_event(p: PresenceRecord, now: u64) -> Value {
    let mut content = json!({
        "presence": p.state,
        "last_active_ago": now.saturating_sub(p.last_active_ms),
        "currently_active": p.state == "online",
    });
    if let Some(msg) = p.status_msg {
        content["status_msg"] = json!(msg);
    }
    json!({ "type": "m.presence", "sender": p.user_id, "content": content })
}
