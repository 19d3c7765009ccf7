//! End-to-end encryption support (spec: Client-Server API, "End-to-End Encryption"): device
//! and cross-signing keys, one-time key claims, device-list tracking and to-device messages.
//!
//! The server never sees plaintext: it stores signed key objects as given and routes them,
//! locally or to the user's server over federation.

mod cached;
mod cross_signing;
mod device_lists;
mod fan_out;
mod federation;
mod query;
mod remote_cache;
pub mod to_device;

use std::collections::BTreeMap;

use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Map, Value};

use std::sync::Arc;

use crate::{accounts::Authed, federation::Outbox, Context, Rooms, ServiceError, ServiceResult};

pub struct E2ee {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) outbox: Arc<Outbox>,
    /// Remote device lists being fetched again after a gap.
    pub(crate) resyncs: Arc<remote_cache::Resyncs>,
}

impl E2ee {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, outbox: Arc<Outbox>) -> E2ee {
        E2ee {
            ctx,
            rooms,
            outbox,
            resyncs: Arc::default(),
        }
    }
}

pub use cross_signing::{SignatureFailures, SigningKeysUpload};
pub use device_lists::DeviceListChanges;
pub use query::{ClaimRequest, KeysQuery};

/// The body of `POST /keys/upload`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KeysUpload {
    pub device_keys: Option<Map<String, Value>>,
    #[serde(default)]
    pub one_time_keys: Map<String, Value>,
    #[serde(default, alias = "org.matrix.msc2732.fallback_keys")]
    pub fallback_keys: Map<String, Value>,
}

/// A one-time key ID must be `algorithm:key_id`.
fn split_key_id(id: &str) -> ServiceResult<(&str, &str)> {
    id.split_once(':')
        .filter(|(alg, key)| !alg.is_empty() && !key.is_empty())
        .ok_or_else(|| ServiceError::BadJson(format!("Key ID {id:?} is not algorithm:key_id")))
}

/// One-time and fallback keys as `(algorithm:key_id, JSON)` pairs, checked for shape.
fn key_pairs(keys: &Map<String, Value>) -> ServiceResult<Vec<(String, String)>> {
    keys.iter()
        .map(|(id, key)| {
            split_key_id(id)?;
            if !(key.is_object() || key.is_string()) {
                return Err(ServiceError::BadJson(format!(
                    "Key {id} must be an object or a string"
                )));
            }
            Ok((id.clone(), key.to_string()))
        })
        .collect()
}

impl E2ee {
    /// `POST /keys/upload`: stores the device's identity, one-time and fallback keys and
    /// answers with the one-time key counts.
    pub async fn upload_keys(
        &self,
        authed: &Authed,
        upload: KeysUpload,
    ) -> ServiceResult<BTreeMap<String, u64>> {
        if let Some(device_keys) = upload.device_keys {
            self.upload_device_keys(authed, device_keys).await?;
        }
        let one_time = key_pairs(&upload.one_time_keys)?;
        if !one_time.is_empty() {
            self.ctx
                .storage
                .add_one_time_keys(&authed.user_id, authed.device_id.as_str(), &one_time)
                .await?;
        }
        let fallback = key_pairs(&upload.fallback_keys)?;
        if !fallback.is_empty() {
            self.ctx
                .storage
                .set_fallback_keys(&authed.user_id, authed.device_id.as_str(), &fallback)
                .await?;
        }
        if !one_time.is_empty() || !fallback.is_empty() {
            self.keys_to_appservices(&authed.user_id, &authed.device_id);
        }
        self.one_time_key_counts(authed).await
    }

    /// A device's one-time or fallback keys changed: MSC3202 appservices owning the user get
    /// its counts in their next transaction.
    pub(crate) fn keys_to_appservices(&self, user_id: &ruma::UserId, device_id: &ruma::DeviceId) {
        if self.ctx.appservices.is_empty() {
            return;
        }
        self.ctx.appservices.note_key_change(user_id, device_id);
        self.ctx.notifier.notify(std::iter::empty());
    }

    /// The device's unclaimed one-time keys per algorithm; `signed_curve25519` is always
    /// present, since clients read a missing count as "unknown" rather than zero.
    pub async fn one_time_key_counts(
        &self,
        authed: &Authed,
    ) -> ServiceResult<BTreeMap<String, u64>> {
        let mut counts = self
            .ctx
            .storage
            .one_time_key_counts(&authed.user_id, authed.device_id.as_str())
            .await?;
        counts.entry("signed_curve25519".to_owned()).or_insert(0);
        Ok(counts)
    }

    async fn upload_device_keys(
        &self,
        authed: &Authed,
        device_keys: Map<String, Value>,
    ) -> ServiceResult<()> {
        let claims_user = device_keys.get("user_id").and_then(Value::as_str);
        let claims_device = device_keys.get("device_id").and_then(Value::as_str);
        if claims_user != Some(authed.user_id.as_str())
            || claims_device != Some(authed.device_id.as_str())
        {
            return Err(ServiceError::InvalidParam(
                "device_keys must name the uploading user and device".into(),
            ));
        }
        for field in ["algorithms", "keys", "signatures"] {
            if device_keys.get(field).is_none() {
                return Err(ServiceError::BadJson(format!("device_keys lacks {field}")));
            }
        }
        let json = Value::Object(device_keys).to_string();
        let stored = self
            .ctx
            .storage
            .device_keys(std::slice::from_ref(&authed.user_id))
            .await?
            .into_iter()
            .find(|d| d.device_id == authed.device_id);
        // Clients re-upload the same keys; only a real change is news to other users.
        if stored.is_some_and(|d| d.keys_json == json) {
            return Ok(());
        }
        let pos = self
            .ctx
            .storage
            .set_device_keys(&authed.user_id, authed.device_id.as_str(), &json)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Unknown device".into()))?;
        self.announce_device_change(&authed.user_id, &authed.device_id, false, pos)
            .await
    }

    /// The devices of `user_id` with their identity keys, as the spec's `DeviceKeys` objects
    /// carrying `unsigned.device_display_name`, keyed by device ID.
    pub(crate) async fn local_device_keys(
        &self,
        user_ids: &[OwnedUserId],
    ) -> ServiceResult<BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Value>>> {
        let mut out: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Value>> = BTreeMap::new();
        for record in self.ctx.storage.device_keys(user_ids).await? {
            let Ok(mut keys) = serde_json::from_str::<Value>(&record.keys_json) else {
                continue;
            };
            if let (Some(name), Some(object)) = (&record.display_name, keys.as_object_mut()) {
                let unsigned = object
                    .entry("unsigned")
                    .or_insert_with(|| Value::Object(Map::new()));
                unsigned["device_display_name"] = Value::String(name.clone());
            }
            out.entry(record.user_id)
                .or_default()
                .insert(record.device_id, keys);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
