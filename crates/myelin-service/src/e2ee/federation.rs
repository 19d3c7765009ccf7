//! The server-server side of end-to-end encryption: answering other servers' device and key
//! queries about our users (`/user/devices`, `/user/keys/query`, `/user/keys/claim`), and the
//! device-list and signing-key EDUs they send about theirs (applied to the cache of their
//! device lists, `remote_cache.rs`).

use std::collections::BTreeMap;

use ruma::{OwnedDeviceId, OwnedUserId, ServerName, UserId};
use serde_json::{json, Value};

use myelin_storage::RemoteDeviceChange;

use super::remote_cache::{self, UpdateStep};
use crate::{E2ee, ServiceError, ServiceResult};

impl E2ee {
    fn require_local_user(&self, user_id: &UserId) -> ServiceResult<()> {
        if user_id.server_name() != self.ctx.server_name() {
            return Err(ServiceError::InvalidParam(format!(
                "{user_id} is not a user of this server"
            )));
        }
        Ok(())
    }

    /// `GET /_matrix/federation/v1/user/devices/{userId}`.
    pub async fn federation_user_devices(&self, user_id: &UserId) -> ServiceResult<Value> {
        self.require_local_user(user_id)?;
        // The ID of the user's latest update, read before the devices: an update committed in
        // between is in the list and follows on from this ID, so the receiver applies it again
        // harmlessly. With no update yet, the current stream position: the first update (which
        // names no previous one) is either later, and applied, or in this list already.
        let stream_id = match self.ctx.storage.device_list_stream_id(user_id).await? {
            Some(id) => id,
            None => self.ctx.storage.current_stream_pos().await?.0,
        };
        let users = [user_id.to_owned()];
        let mut with_keys = self
            .local_device_keys(&users)
            .await?
            .remove(user_id)
            .unwrap_or_default();
        let devices: Vec<Value> = self
            .ctx
            .storage
            .list_devices(user_id)
            .await?
            .into_iter()
            .filter_map(|d| {
                // A device without identity keys cannot take part in encryption.
                let keys = with_keys.remove(&d.device_id)?;
                let mut entry = json!({ "device_id": d.device_id, "keys": keys });
                if let Some(name) = d.display_name {
                    entry["device_display_name"] = json!(name);
                }
                Some(entry)
            })
            .collect();
        let mut body = json!({ "user_id": user_id, "stream_id": stream_id, "devices": devices });
        self.add_public_signing_keys(user_id, &mut body).await?;
        Ok(body)
    }

    /// `POST /_matrix/federation/v1/user/keys/query`.
    pub async fn federation_query_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> ServiceResult<Value> {
        refuse_too_many_users(wanted.len())?;
        let own = self.ctx.server_name();
        let local = wanted
            .into_iter()
            .filter(|(u, _)| u.server_name() == own)
            .collect();
        self.local_keys_answer(local, None).await
    }

    /// `POST /_matrix/federation/v1/user/keys/claim`.
    pub async fn federation_claim_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> ServiceResult<Value> {
        refuse_too_many_users(wanted.len())?;
        let own = self.ctx.server_name();
        let local = wanted
            .into_iter()
            .filter(|(u, _)| u.server_name() == own)
            .collect();
        Ok(json!({ "one_time_keys": self.claim_local_keys(local).await? }))
    }

    /// `m.device_list_update`: one of the origin's users changed a device. The cached list is
    /// patched when the update follows on from it, fetched again after a gap; either way the
    /// change is recorded for `/sync` and local users sharing a room are woken.
    pub(crate) async fn receive_device_list_update(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        let user_id = edu_user(origin, content)?;
        let stream_id = content
            .get("stream_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ServiceError::BadJson("the update has no stream_id".into()))?;
        let change = remote_cache::device_change(&user_id, content)
            .ok_or_else(|| ServiceError::BadJson("the update has no valid device_id".into()))?;
        let cached = self
            .ctx
            .storage
            .remote_device_lists(std::slice::from_ref(&user_id))
            .await?
            .pop();
        let step = remote_cache::update_step(
            cached.as_ref().map(|l| l.stream_id),
            stream_id,
            &remote_cache::prev_ids(content),
        );
        match step {
            UpdateStep::AlreadySeen => return Ok(()),
            UpdateStep::NotCached => {
                // Recorded whoever it concerns: `/sync` filters changes by the rooms its user
                // shares, from full room state, while the membership index has no rows for
                // members that were only in the state of a room when we joined it.
                self.ctx.storage.mark_device_list_changed(&user_id).await?;
            }
            UpdateStep::Apply => {
                let cached = cached.map(|l| (l.stream_id, l.devices.len()));
                self.apply_update(&user_id, cached, stream_id, &change)
                    .await?;
            }
            UpdateStep::Resync => self.resync(&user_id).await?,
        }
        self.rooms.notify_sharers(&user_id).await?;
        Ok(())
    }

    /// Patches the cached list (at `(stream ID, device count)`); a list that would grow past its
    /// bound, or that moved meanwhile, is fetched again instead.
    async fn apply_update(
        &self,
        user_id: &UserId,
        cached: Option<(i64, usize)>,
        stream_id: i64,
        change: &RemoteDeviceChange,
    ) -> ServiceResult<()> {
        let Some((cached_id, count)) = cached else {
            return Ok(());
        };
        let grows = matches!(change, RemoteDeviceChange::Upsert(_));
        if grows && count >= remote_cache::MAX_REMOTE_DEVICES {
            let users = [user_id.to_owned()];
            self.ctx.storage.forget_remote_device_lists(&users).await?;
            self.ctx.storage.mark_device_list_changed(user_id).await?;
            return Ok(());
        }
        let applied = self
            .ctx
            .storage
            .apply_remote_device_change(user_id, cached_id, stream_id, change)
            .await?;
        if applied.is_none() {
            self.resync(user_id).await?;
        }
        Ok(())
    }

    /// A gap: the cached list is dropped at once (queries meanwhile ask the user's server) and
    /// fetched again in the background.
    async fn resync(&self, user_id: &UserId) -> ServiceResult<()> {
        tracing::debug!(%user_id, "gap in device list updates: fetching the list again");
        let users = [user_id.to_owned()];
        self.ctx.storage.forget_remote_device_lists(&users).await?;
        self.ctx.storage.mark_device_list_changed(user_id).await?;
        remote_cache::resync_in_background(
            self.ctx.clone(),
            self.rooms.clone(),
            self.resyncs.clone(),
            user_id.to_owned(),
        );
        Ok(())
    }

    /// `m.signing_key_update`: one of the origin's users changed their master or self-signing
    /// key. The cached keys are replaced; the change is recorded for `/sync` either way.
    pub(crate) async fn receive_signing_key_update(
        &self,
        origin: &ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        let user_id = edu_user(origin, content)?;
        let mut cached = false;
        for (kind, key) in remote_cache::signing_keys(&user_id, content) {
            let set = self
                .ctx
                .storage
                .set_remote_signing_key(&user_id, kind, &key);
            cached |= set.await?.is_some();
        }
        if !cached {
            self.ctx.storage.mark_device_list_changed(&user_id).await?;
        }
        self.rooms.notify_sharers(&user_id).await?;
        Ok(())
    }
}

/// The EDU's `user_id`, which must be a user of the sending server.
fn edu_user(origin: &ServerName, content: &Value) -> ServiceResult<OwnedUserId> {
    let user_id = content
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| ServiceError::BadJson("the EDU has no valid user_id".into()))?;
    if user_id.server_name() != origin {
        return Err(ServiceError::Forbidden(format!(
            "{origin} cannot speak for {user_id}"
        )));
    }
    Ok(user_id)
}

/// The most users one federation key query or claim may name: a server asks about the users its
/// own users share rooms with, never about a whole directory at once.
const MAX_USERS_PER_QUERY: usize = 1_000;

fn refuse_too_many_users(count: usize) -> ServiceResult<()> {
    if count > MAX_USERS_PER_QUERY {
        return Err(ServiceError::InvalidParam(format!(
            "a query may name at most {MAX_USERS_PER_QUERY} users, not {count}"
        )));
    }
    Ok(())
}
