//! VoIP: short-lived TURN credentials (the "TURN REST API" shared-secret scheme that coturn
//! implements), so that clients can relay calls through the operator's TURN server.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use ruma::UserId;
use serde_json::{json, Value};

use crate::Users;

/// The TURN server clients should use; empty `uris` or no secret means "none configured".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// e.g. `turn:turn.example.org:3478?transport=udp`.
    pub uris: Vec<String>,
    /// The `static-auth-secret` shared with the TURN server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
    /// How long issued credentials stay valid, in milliseconds.
    pub user_lifetime_ms: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            uris: Vec::new(),
            shared_secret: None,
            user_lifetime_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl Users {
    /// `GET /voip/turnServer`: credentials for `user_id`, or `{}` when no TURN server is
    /// configured (what Synapse answers, and what clients expect then).
    pub fn turn_server(&self, user_id: &UserId) -> Value {
        let turn = &self.ctx.config.turn;
        let Some(secret) = turn
            .shared_secret
            .as_deref()
            .filter(|_| !turn.uris.is_empty())
        else {
            return json!({});
        };
        let expiry_secs = (self.ctx.now_ms() + turn.user_lifetime_ms) / 1000;
        let (username, password) = turn_credentials(secret, user_id, expiry_secs);
        json!({ "username": username, "password": password, "uris": turn.uris, "ttl": turn.user_lifetime_ms / 1000 })
    }
}

/// `username = "<expiry>:<user>"`, `password = base64(HMAC-SHA1(secret, username))`.
fn turn_credentials(secret: &str, user_id: &UserId, expiry_secs: u64) -> (String, String) {
    let username = format!("{expiry_secs}:{user_id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let user: ruma::OwnedUserId = "@alice:example.org".try_into().unwrap();
        let (username, password) = turn_credentials("secret", &user, 1_700_000_000);
        assert_eq!(username, "1700000000:@alice:example.org");
        // echo -n '1700000000:@alice:example.org' | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(password, "g/l/t/tR2Emj7Ax0fkxwtp3GUrQ=");
    }
}
