//! Cross-signing: `POST /keys/device_signing/upload` and `POST /keys/signatures/upload`.

use crate::federation::EduKind;
use myelin_storage::CrossSigningKind;
use ruma::{OwnedDeviceId, UserId};
use serde_json::{json, Map, Value};

use crate::{accounts::Authed, E2ee, ServiceError, ServiceResult};

/// The keys of `POST /keys/device_signing/upload`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SigningKeysUpload {
    pub master_key: Option<Map<String, Value>>,
    pub self_signing_key: Option<Map<String, Value>>,
    pub user_signing_key: Option<Map<String, Value>>,
}

/// The single public key of a cross-signing key object (`ed25519:<public>` → `<public>`).
fn public_key(key: &Value) -> Option<String> {
    let keys = key.get("keys")?.as_object()?;
    let (id, value) = keys.iter().next()?;
    let public = id.strip_prefix("ed25519:")?;
    (value.as_str() == Some(public)).then(|| public.to_owned())
}

fn check_signing_key(
    user_id: &UserId,
    kind: CrossSigningKind,
    key: &Map<String, Value>,
) -> ServiceResult<()> {
    if key.get("user_id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return Err(ServiceError::InvalidParam(format!(
            "The {} key must belong to {user_id}",
            kind.as_str()
        )));
    }
    let usage_ok = key
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(kind.as_str())));
    let key_value = Value::Object(key.clone());
    if !usage_ok || public_key(&key_value).is_none() {
        return Err(ServiceError::InvalidParam(format!(
            "The {} key needs usage [\"{}\"] and one ed25519 key",
            kind.as_str(),
            kind.as_str()
        )));
    }
    Ok(())
}

/// Adds the signatures of `signed` to `stored` (same object otherwise); `None` if the two
/// objects differ in anything but their signatures.
fn merge_signatures(stored: &Value, signed: &Value) -> Option<Value> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("signatures");
            o.remove("unsigned");
        }
        v
    };
    if strip(stored) != strip(signed) {
        return None;
    }
    let mut merged = stored.clone();
    let signatures = merged
        .as_object_mut()?
        .entry("signatures")
        .or_insert_with(|| json!({}));
    for (signer, sigs) in signed.get("signatures")?.as_object()? {
        for (key_id, sig) in sigs.as_object()? {
            signatures[signer.as_str()][key_id.as_str()] = sig.clone();
        }
    }
    Some(merged)
}

/// Refused signatures of `/keys/signatures/upload`: user ID → key ID → why.
pub type SignatureFailures =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

impl E2ee {
    /// Whether the user has a master key already (replacing it needs user-interactive auth).
    pub async fn has_master_key(&self, user_id: &UserId) -> ServiceResult<bool> {
        Ok(self
            .ctx
            .storage
            .cross_signing_keys(&[user_id.to_owned()])
            .await?
            .iter()
            .any(|k| k.kind == CrossSigningKind::Master))
    }

    /// `POST /keys/device_signing/upload` (after user-interactive auth, when required).
    pub async fn upload_signing_keys(
        &self,
        authed: &Authed,
        upload: SigningKeysUpload,
    ) -> ServiceResult<()> {
        let mut keys = Vec::new();
        for (kind, key) in [
            (CrossSigningKind::Master, upload.master_key),
            (CrossSigningKind::SelfSigning, upload.self_signing_key),
            (CrossSigningKind::UserSigning, upload.user_signing_key),
        ] {
            if let Some(key) = key {
                check_signing_key(&authed.user_id, kind, &key)?;
                keys.push((kind, Value::Object(key).to_string()));
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        self.ctx
            .storage
            .set_cross_signing_keys(&authed.user_id, &keys)
            .await?;
        self.announce_signing_keys(&authed.user_id).await
    }

    /// `POST /keys/signatures/upload`: signatures of the user's own devices and cross-signing
    /// keys are merged into the stored objects. Signatures of other users' keys are refused
    /// for now (they would need per-signer storage). Returns the refusals, by user and key ID,
    /// with the reason of each (an invalid signature, to the client).
    pub async fn upload_signatures(
        &self,
        authed: &Authed,
        body: Map<String, Value>,
    ) -> ServiceResult<SignatureFailures> {
        let mut failures = SignatureFailures::new();
        let user = &authed.user_id;
        for (user_str, objects) in body {
            let Some(objects) = objects.as_object() else {
                continue;
            };
            for (key_id, signed) in objects {
                let outcome = if user_str == user.as_str() {
                    self.merge_own_signature(user, key_id, signed).await?
                } else {
                    Err("Signing other users' keys is not supported yet")
                };
                if let Err(why) = outcome {
                    failures
                        .entry(user_str.clone())
                        .or_default()
                        .insert(key_id.clone(), why.to_owned());
                }
            }
        }
        Ok(failures)
    }

    async fn merge_own_signature(
        &self,
        user_id: &UserId,
        key_id: &str,
        signed: &Value,
    ) -> ServiceResult<Result<(), &'static str>> {
        let device_id = OwnedDeviceId::from(key_id);
        let users = [user_id.to_owned()];
        if let Some(stored) = self
            .ctx
            .storage
            .device_keys(&users)
            .await?
            .into_iter()
            .find(|d| d.device_id == device_id)
        {
            let stored: Value = serde_json::from_str(&stored.keys_json)
                .map_err(|e| ServiceError::Internal(format!("stored device keys: {e}")))?;
            let Some(merged) = merge_signatures(&stored, signed) else {
                return Ok(Err("The signed object does not match the device's keys"));
            };
            if let Some(pos) = self
                .ctx
                .storage
                .set_device_keys(user_id, key_id, &merged.to_string())
                .await?
            {
                self.announce_device_change(user_id, &device_id, false, pos)
                    .await?;
            }
            return Ok(Ok(()));
        }
        for key in self.ctx.storage.cross_signing_keys(&users).await? {
            let stored: Value = serde_json::from_str(&key.key_json)
                .map_err(|e| ServiceError::Internal(format!("stored signing key: {e}")))?;
            if public_key(&stored).as_deref() != Some(key_id) {
                continue;
            }
            let Some(merged) = merge_signatures(&stored, signed) else {
                return Ok(Err("The signed object does not match the stored key"));
            };
            self.ctx
                .storage
                .set_cross_signing_keys(user_id, &[(key.kind, merged.to_string())])
                .await?;
            self.announce_signing_keys(user_id).await?;
            return Ok(Ok(()));
        }
        Ok(Err("Unknown key"))
    }

    /// Adds the user's public cross-signing keys to `body` as `master_key` and
    /// `self_signing_key` (the user-signing key is the owner's alone), as other servers get them.
    pub(crate) async fn add_public_signing_keys(
        &self,
        user_id: &UserId,
        body: &mut Value,
    ) -> ServiceResult<()> {
        for key in self
            .ctx
            .storage
            .cross_signing_keys(&[user_id.to_owned()])
            .await?
        {
            let field = match key.kind {
                CrossSigningKind::Master => "master_key",
                CrossSigningKind::SelfSigning => "self_signing_key",
                CrossSigningKind::UserSigning => continue,
            };
            if let Ok(value) = serde_json::from_str::<Value>(&key.key_json) {
                body[field] = value;
            }
        }
        Ok(())
    }

    /// Tells local users sharing a room and the other servers in those rooms
    /// (`m.signing_key_update`) that the user's cross-signing keys changed.
    async fn announce_signing_keys(&self, user_id: &UserId) -> ServiceResult<()> {
        let servers = self.rooms.notify_sharers(user_id).await?;
        if servers.is_empty() {
            return Ok(());
        }
        let mut content = json!({ "user_id": user_id });
        self.add_public_signing_keys(user_id, &mut content).await?;
        self.outbox
            .queue_edu_for(servers, EduKind::SigningKeyUpdate, content)
            .await
    }
}
