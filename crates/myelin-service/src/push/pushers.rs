//! Pushers (`GET /pushers`, `POST /pushers/set`): validated, owned by the device whose access
//! token set them (they go with the device: logout, device deletion), and removed for every other
//! device when the password changes.

use myelin_storage::PusherRecord;
use ruma::{DeviceId, UserId};
use serde_json::{json, Map, Value};

use super::Push;
use crate::{ServiceError, ServiceResult};

/// The spec's limit on a pushkey.
pub const MAX_PUSHKEY_BYTES: usize = 512;
/// The spec's limit on an app ID.
const MAX_APP_ID_CHARS: usize = 64;
/// Bounds on the free-form fields and the `data` object we store.
const MAX_FIELD_BYTES: usize = 1024;
const MAX_DATA_BYTES: usize = 8192;
/// The only path a push gateway URL may have.
pub(crate) const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// A parsed `POST /pushers/set` body.
#[derive(Debug, Clone)]
pub enum PusherSet {
    /// `kind: null`.
    Delete { app_id: String, pushkey: String },
    Set {
        pusher: Box<PusherRecord>,
        append: bool,
    },
}

impl Push {
    /// `GET /pushers`: the user's pushers in the spec's format.
    pub async fn pushers_json(&self, user_id: &UserId) -> ServiceResult<Vec<Value>> {
        let pushers = self.ctx.storage.pushers(user_id).await?;
        Ok(pushers.iter().map(pusher_json).collect())
    }

    /// `POST /pushers/set`.
    pub async fn set_pusher(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        body: &Value,
    ) -> ServiceResult<()> {
        let request = self.parse_set(user_id, device_id, body)?;
        match request {
            PusherSet::Delete { app_id, pushkey } => {
                self.ctx
                    .storage
                    .delete_pusher(user_id, &app_id, &pushkey)
                    .await?;
            }
            PusherSet::Set { pusher, append } => {
                if pusher.kind == "email" {
                    self.check_email_pushkey(user_id, &pusher.pushkey).await?;
                }
                self.ctx.storage.set_pusher(*pusher, append).await?;
            }
        }
        // Another user's pusher of the same key may be gone too: forget every cached list.
        self.forget_all_pushers();
        Ok(())
    }

    /// After a password change: the pushers of every other device go.
    pub async fn remove_other_pushers(
        &self,
        user_id: &UserId,
        keep_device: &DeviceId,
    ) -> ServiceResult<()> {
        self.ctx
            .storage
            .delete_pushers_except(user_id, keep_device.as_str())
            .await?;
        self.forget_pushers(user_id);
        Ok(())
    }

    /// An e-mail pusher mails only an address validated and bound to the user's account.
    async fn check_email_pushkey(&self, user_id: &UserId, address: &str) -> ServiceResult<()> {
        let bound = self.ctx.storage.user_threepids(user_id).await?;
        if bound
            .iter()
            .any(|t| t.medium == "email" && t.address.eq_ignore_ascii_case(address))
        {
            return Ok(());
        }
        Err(ServiceError::ThreepidNotFound(
            "the pushkey is not an e-mail address of this account".into(),
        ))
    }

    fn forget_all_pushers(&self) {
        super::lock(&self.pushers_by_user).clear();
    }

    /// Checks a `POST /pushers/set` body.
    pub(crate) fn parse_set(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        body: &Value,
    ) -> ServiceResult<PusherSet> {
        let body = body
            .as_object()
            .ok_or_else(|| ServiceError::BadJson("the body must be an object".into()))?;
        let app_id = required_str(body, "app_id")?;
        let pushkey = required_str(body, "pushkey")?;
        if app_id.is_empty() || app_id.chars().count() > MAX_APP_ID_CHARS {
            return Err(invalid("app_id must have 1 to 64 characters"));
        }
        if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY_BYTES {
            return Err(invalid("pushkey must have 1 to 512 bytes"));
        }
        let kind = match body.get("kind") {
            None => return Err(ServiceError::MissingParam("Missing parameter: kind".into())),
            Some(Value::Null) => {
                return Ok(PusherSet::Delete {
                    app_id: app_id.into(),
                    pushkey: pushkey.into(),
                })
            }
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => return Err(invalid("kind must be a string or null")),
        };
        let missing: Vec<&str> = ["app_display_name", "device_display_name", "lang", "data"]
            .into_iter()
            .filter(|f| body.get(*f).is_none_or(Value::is_null))
            .collect();
        if !missing.is_empty() {
            return Err(ServiceError::MissingParam(format!(
                "Missing parameters: {}",
                missing.join(", ")
            )));
        }
        let data = body
            .get("data")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("data must be an object"))?;
        match kind {
            "http" => self.check_gateway_url(data)?,
            "email" if self.ctx.mailer.is_none() => {
                return Err(invalid(
                    "email notifications are not configured on this server",
                ))
            }
            "email" => {}
            _ => return Err(invalid("kind must be http or email")),
        }
        let data = serde_json::to_string(data).map_err(|e| invalid(e.to_string()))?;
        if data.len() > MAX_DATA_BYTES {
            return Err(invalid("data is too large"));
        }
        let profile_tag = match body.get("profile_tag") {
            None | Some(Value::Null) => None,
            Some(Value::String(tag)) => Some(bounded(tag, "profile_tag")?),
            Some(_) => return Err(invalid("profile_tag must be a string")),
        };
        let append = match body.get("append") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("append must be a boolean")),
        };
        let pusher = PusherRecord {
            id: 0,
            user_id: user_id.to_owned(),
            device_id: device_id.to_string(),
            kind: kind.into(),
            app_id: app_id.into(),
            pushkey: pushkey.into(),
            app_display_name: bounded(required_str(body, "app_display_name")?, "app_display_name")?,
            device_display_name: bounded(
                required_str(body, "device_display_name")?,
                "device_display_name",
            )?,
            profile_tag,
            lang: bounded(required_str(body, "lang")?, "lang")?,
            data,
            created_ms: self.ctx.now_ms(),
        };
        Ok(PusherSet::Set {
            pusher: Box::new(pusher),
            append,
        })
    }

    /// An HTTP pusher's `data.url`: an `https` URL with the notify path, or plain `http` to a
    /// host the `[egress]` configuration allows (a self-hosted gateway); never a forbidden
    /// address.
    fn check_gateway_url(&self, data: &Map<String, Value>) -> ServiceResult<()> {
        let url = data
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ServiceError::MissingParam("data.url is required".into()))?;
        let url = reqwest::Url::parse(url).map_err(|_| invalid("data.url is not a URL"))?;
        if url.path() != NOTIFY_PATH {
            return Err(invalid(format!(
                "data.url must have the path {NOTIFY_PATH}"
            )));
        }
        let host = url.host_str().unwrap_or_default();
        let allowed_plain = self.ctx.egress.policy().allows_plain_http(host);
        if url.scheme() != "https" && !(url.scheme() == "http" && allowed_plain) {
            return Err(invalid("data.url must be an https URL"));
        }
        self.ctx
            .egress
            .check_url(&url)
            .map_err(|e| invalid(format!("data.url: {e}")))
    }
}

/// A pusher as `GET /pushers` lists it.
fn pusher_json(p: &PusherRecord) -> Value {
    let data: Value = serde_json::from_str(&p.data).unwrap_or_else(|_| json!({}));
    let mut out = json!({
        "app_display_name": p.app_display_name,
        "app_id": p.app_id,
        "data": data,
        "device_display_name": p.device_display_name,
        "kind": p.kind,
        "lang": p.lang,
        "pushkey": p.pushkey,
    });
    if let Some(tag) = &p.profile_tag {
        out["profile_tag"] = json!(tag);
    }
    out
}

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> ServiceResult<&'a str> {
    match body.get(field) {
        None | Some(Value::Null) => Err(ServiceError::MissingParam(format!(
            "Missing parameter: {field}"
        ))),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

fn bounded(value: &str, field: &str) -> ServiceResult<String> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(invalid(format!("{field} is too long")));
    }
    Ok(value.to_owned())
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParam(message.into())
}
