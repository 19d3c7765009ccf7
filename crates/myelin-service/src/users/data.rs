//! Account data (global and per room), tags, profiles and stored filters.

use std::{collections::HashSet, sync::Arc};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Value};

use crate::{filter::Filter, ServiceError, ServiceResult, Users};

impl Users {
    /// `PUT /user/{userId}/account_data/{type}` and the per-room variant.
    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: Value,
    ) -> ServiceResult<()> {
        if !content.is_object() {
            return Err(ServiceError::BadJson(
                "Account data must be a JSON object".into(),
            ));
        }
        // The server owns these: read markers go through /read_markers, push rules through /pushrules.
        if matches!(data_type, "m.fully_read" | "m.push_rules") {
            return Err(ServiceError::ServerControlled(format!(
                "Cannot set {data_type} through this API"
            )));
        }
        self.store_account_data(user_id, room_id, data_type, content)
            .await
    }

    /// Writes account data without the client-facing checks, for types the server owns.
    pub(crate) async fn store_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: Value,
    ) -> ServiceResult<()> {
        self.ctx
            .storage
            .set_account_data(user_id, room_id, data_type, &content)
            .await?;
        self.ctx.notifier.notify([user_id]);
        Ok(())
    }

    pub async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> ServiceResult<Value> {
        self.ctx
            .storage
            .get_account_data(user_id, room_id, data_type)
            .await?
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            .ok_or_else(|| ServiceError::NotFound("Account data not found".into()))
    }

    /// `GET /user/{userId}/rooms/{roomId}/tags`.
    pub async fn tags(&self, user_id: &UserId, room_id: &RoomId) -> ServiceResult<Value> {
        let data = self
            .ctx
            .storage
            .get_account_data(user_id, Some(room_id), "m.tag")
            .await?;
        Ok(data
            .and_then(|d| d.get("tags").cloned())
            .unwrap_or_else(|| json!({})))
    }

    /// `PUT` or (with `None`) `DELETE /user/{userId}/rooms/{roomId}/tags/{tag}`.
    pub async fn set_tag(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        content: Option<Value>,
    ) -> ServiceResult<()> {
        let mut tags = self.tags(user_id, room_id).await?;
        let map = tags
            .as_object_mut()
            .ok_or_else(|| ServiceError::Internal("tags is not an object".into()))?;
        match content {
            Some(c) => {
                if !c.is_object() {
                    return Err(ServiceError::BadJson(
                        "Tag content must be an object".into(),
                    ));
                }
                map.insert(tag.to_owned(), c);
            }
            None => {
                map.remove(tag);
            }
        }
        self.ctx
            .storage
            .set_account_data(user_id, Some(room_id), "m.tag", &json!({ "tags": tags }))
            .await?;
        self.ctx.notifier.notify([user_id]);
        Ok(())
    }

    /// `POST /user/{userId}/filter`.
    pub async fn create_filter(&self, user_id: &UserId, filter: Value) -> ServiceResult<String> {
        Filter::from_json(&filter)
            .map_err(|e| ServiceError::BadJson(format!("Invalid filter: {e}")))?;
        Ok(self.ctx.storage.create_filter(user_id, &filter).await?)
    }

    /// `GET /user/{userId}/filter/{filterId}`.
    pub async fn get_filter(&self, user_id: &UserId, filter_id: &str) -> ServiceResult<Value> {
        self.ctx
            .storage
            .get_filter(user_id, filter_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Filter not found".into()))
    }
}

impl Users {
    /// The users `user_id` ignores (`m.ignored_user_list`): their events and invites are hidden
    /// from `user_id`'s reads from the next request on.
    pub async fn ignored_users(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<Arc<HashSet<OwnedUserId>>> {
        let list = self
            .ctx
            .storage
            .get_account_data(user_id, None, IGNORED_USER_LIST)
            .await?;
        Ok(Arc::new(list.as_ref().map(ignored_in).unwrap_or_default()))
    }
}

/// The account data type of the ignore list.
pub const IGNORED_USER_LIST: &str = "m.ignored_user_list";

/// The user IDs of an `m.ignored_user_list` content (keys that are not user IDs are skipped).
pub fn ignored_in(content: &Value) -> HashSet<OwnedUserId> {
    content
        .get("ignored_users")
        .and_then(Value::as_object)
        .map(|users| {
            users
                .keys()
                .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
                .collect()
        })
        .unwrap_or_default()
}
