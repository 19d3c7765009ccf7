//! Profiles (`GET /profile`, spec v1.16 extended profiles): `displayname` and `avatar_url` (which
//! membership events carry; changing them is `Memberships::set_profile_field`) and the custom
//! fields (`m.tz`, namespaced keys), which stay on the profile. A profile is at most 64 KiB.

use myelin_federation::path;
use ruma::UserId;
use serde_json::{json, Map, Value};

use crate::{ServiceError, ServiceResult, Users};

/// The largest profile, serialized.
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;
/// The longest profile key.
pub const MAX_PROFILE_KEY_BYTES: usize = 255;

/// Whether `key` names a custom field: `m.tz` or a namespaced identifier
/// (`[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+`).
pub fn is_custom_profile_key(key: &str) -> bool {
    if key == "m.tz" {
        return true;
    }
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            p.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

impl Users {
    /// `GET /profile/{userId}`: a local user's profile, or a remote user's asked of their server.
    pub async fn profile(&self, user_id: &UserId) -> ServiceResult<Value> {
        if user_id.server_name() != self.ctx.server_name() {
            return self.remote_profile(user_id).await;
        }
        let user = self
            .ctx
            .storage
            .get_user(user_id)
            .await?
            .filter(|u| !u.deactivated);
        let user = user.ok_or_else(|| ServiceError::NotFound("Profile not found".into()))?;
        let mut profile = Map::new();
        for (key, value) in self.ctx.storage.profile_fields(user_id).await? {
            profile.insert(key, value);
        }
        if let Some(name) = user.displayname {
            profile.insert("displayname".into(), json!(name));
        }
        if let Some(url) = user.avatar_url {
            profile.insert("avatar_url".into(), json!(url));
        }
        Ok(Value::Object(profile))
    }

    /// `PUT` (with a value) or `DELETE` (without) `/profile/{userId}/{keyName}` for a custom
    /// field.
    pub async fn set_custom_profile_field(
        &self,
        user_id: &UserId,
        key: &str,
        value: Option<Value>,
    ) -> ServiceResult<()> {
        if key.len() > MAX_PROFILE_KEY_BYTES {
            return Err(ServiceError::KeyTooLarge(format!(
                "Profile keys are at most {MAX_PROFILE_KEY_BYTES} bytes"
            )));
        }
        if !is_custom_profile_key(key) {
            return Err(ServiceError::InvalidParam(format!(
                "{key} is not a profile field name (m.tz or a namespaced identifier)"
            )));
        }
        if key == "m.tz" && value.as_ref().is_some_and(|v| !v.is_string()) {
            return Err(ServiceError::BadJson("m.tz must be a string".into()));
        }
        if let Some(value) = &value {
            let mut profile = self.profile(user_id).await?;
            profile[key] = value.clone();
            if profile.to_string().len() > MAX_PROFILE_BYTES {
                return Err(ServiceError::ProfileTooLarge(format!(
                    "A profile is at most {MAX_PROFILE_BYTES} bytes"
                )));
            }
        }
        self.ctx
            .storage
            .set_profile_field(user_id, key, value.as_ref())
            .await?;
        Ok(())
    }

    /// A remote user's profile, asked of their server (`/query/profile`): the standard fields
    /// and custom ones, within the size a profile may have.
    async fn remote_profile(&self, user_id: &UserId) -> ServiceResult<Value> {
        let path = path::query_profile(user_id, None);
        let answer: Map<String, Value> = self
            .ctx
            .federation_call(
                myelin_federation::Method::GET,
                user_id.server_name(),
                &path,
                None,
            )
            .await
            .map_err(|e| match e {
                ServiceError::Remote(m) if m.contains("404") => {
                    ServiceError::NotFound("Profile not found".into())
                }
                other => other,
            })?;
        let mut profile = Map::new();
        let mut size = 0;
        for (key, value) in answer {
            let standard = matches!(key.as_str(), "displayname" | "avatar_url");
            if (standard && !value.is_string()) || (!standard && !is_custom_profile_key(&key)) {
                continue;
            }
            size += key.len() + value.to_string().len();
            if size > MAX_PROFILE_BYTES {
                break;
            }
            profile.insert(key, value);
        }
        Ok(Value::Object(profile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_keys_follow_the_namespaced_grammar() {
        for ok in ["m.tz", "org.example.pets", "com.ex_ample.a1"] {
            assert!(is_custom_profile_key(ok), "{ok}");
        }
        for bad in [
            "displayname",
            "tz",
            "Org.example",
            "org..x",
            "org.1x",
            "org.example.",
            "m.tz.x.Y",
        ] {
            assert!(!is_custom_profile_key(bad), "{bad}");
        }
    }
}
