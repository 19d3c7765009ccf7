//! User-Interactive Authentication: sessions, stages and the 401 challenge body.

use std::{collections::HashMap, sync::Mutex};

use ruma::UserId;
use serde_json::{json, Value};

use crate::{
    accounts::token::{is_one_of_secrets, random_alnum},
    Accounts, RateAction, RegistrationMode, ServiceError, ServiceResult,
};

/// Stage names this server implements.
pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
/// A validated e-mail address (`threepid_creds` of a `requestToken` session).
pub const EMAIL_IDENTITY: &str = "m.login.email.identity";

/// Sessions older than this are forgotten.
const SESSION_LIFETIME_MS: u64 = 30 * 60 * 1000;

#[derive(Default)]
pub(crate) struct UiaSessions {
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    completed: Vec<String>,
    created_ms: u64,
}

impl UiaSessions {
    fn completed(&self, id: &str, now: u64) -> Option<Vec<String>> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| now.saturating_sub(s.created_ms) < SESSION_LIFETIME_MS);
        map.get(id).map(|s| s.completed.clone())
    }

    fn save(&self, id: &str, completed: Vec<String>, now: u64) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.entry(id.to_owned()).or_insert(Session {
            completed: Vec::new(),
            created_ms: now,
        });
        session.completed = completed;
    }

    fn finish(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl Accounts {
    /// Runs one UIA step. `Ok(())` once some flow is complete; otherwise the 401 challenge.
    /// `user` is the account a password stage must match (the caller, when authenticated).
    pub async fn check_uia(
        &self,
        auth: Option<&Value>,
        flows: &[&[&str]],
        user: Option<&UserId>,
    ) -> ServiceResult<()> {
        let now = self.ctx.now_ms();
        let Some(auth) = auth.filter(|a| a.is_object()) else {
            let session = random_alnum(24);
            self.uia.save(&session, Vec::new(), now);
            return Err(challenge(flows, &session, &[], None));
        };
        let session = match auth.get("session").and_then(Value::as_str) {
            Some(s) => s.to_owned(),
            None => random_alnum(24),
        };
        let mut completed = match auth.get("session").and_then(Value::as_str) {
            Some(s) => self
                .uia
                .completed(s, now)
                .ok_or_else(|| ServiceError::NotFound("Unknown UIA session".into()))?,
            None => Vec::new(),
        };
        if let Some(stage) = auth.get("type").and_then(Value::as_str) {
            let allowed = flows.iter().any(|f| f.contains(&stage));
            // Password guessing is throttled per account: refused (429) while the account's
            // budget of wrong passwords is used up, whatever this attempt's password.
            let password_for = user.filter(|_| allowed && stage == PASSWORD);
            if let Some(user) = password_for {
                self.check_password_budget(user.as_str())?;
            }
            let outcome = if allowed {
                self.run_stage(stage, auth, user).await
            } else {
                Err("Stage not in any flow".to_owned())
            };
            if let (Some(user), Err(_)) = (password_for, &outcome) {
                self.spend_password_budget(user.as_str());
            }
            match outcome {
                Ok(()) => {
                    if !completed.iter().any(|c| c == stage) {
                        completed.push(stage.to_owned());
                    }
                }
                Err(message) => {
                    self.uia.save(&session, completed.clone(), now);
                    return Err(challenge(flows, &session, &completed, Some(message)));
                }
            }
        }
        if flows
            .iter()
            .any(|f| f.iter().all(|s| completed.iter().any(|c| c == s)))
        {
            self.uia.finish(&session);
            return Ok(());
        }
        self.uia.save(&session, completed.clone(), now);
        Err(challenge(flows, &session, &completed, None))
    }

    async fn run_stage(
        &self,
        stage: &str,
        auth: &Value,
        user: Option<&UserId>,
    ) -> Result<(), String> {
        match stage {
            DUMMY => Ok(()),
            REGISTRATION_TOKEN => {
                let token = auth
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if self.is_registration_token(token) {
                    Ok(())
                } else {
                    Err("Invalid registration token".into())
                }
            }
            PASSWORD => {
                let Some(user) = user else {
                    return Err("No account to check the password of".into());
                };
                let claimed = auth
                    .pointer("/identifier/user")
                    .or_else(|| auth.get("user"))
                    .and_then(Value::as_str)
                    .map(|u| self.qualify_user(u));
                if claimed.as_deref().is_some_and(|c| c != user.as_str()) {
                    return Err("Password stage is for another user".into());
                }
                let password = auth
                    .get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match self.verify_password(user, password).await {
                    Ok(true) => Ok(()),
                    _ => Err("Invalid password".into()),
                }
            }
            EMAIL_IDENTITY => {
                let creds = crate::threepids::ThreepidCreds::from_auth(auth).ok_or_else(|| {
                    "threepid_creds with sid and client_secret required".to_owned()
                })?;
                let session = self
                    .ctx
                    .storage
                    .threepid_session(&creds.sid, &creds.client_secret)
                    .await
                    .map_err(|e| e.to_string())?;
                match session {
                    Some(s) if s.validated_ms.is_some() => Ok(()),
                    _ => Err("The e-mail address has not been validated yet".into()),
                }
            }
            _ => Err(format!("Unsupported stage {stage}")),
        }
    }
}

impl Accounts {
    /// Whether `token` is one of the configured registration tokens (compared in constant time).
    fn is_registration_token(&self, token: &str) -> bool {
        is_one_of_secrets(token, &self.ctx.config.registration_tokens)
    }

    /// `GET /register/m.login.registration_token/validity`: whether `token` would be accepted.
    /// Each call is a guess, so calls are limited per client IP.
    pub fn registration_token_validity(&self, client_ip: &str, token: &str) -> ServiceResult<bool> {
        if self.ctx.config.registration != RegistrationMode::Token {
            return Err(ServiceError::Forbidden(
                "Registration tokens are not enabled".into(),
            ));
        }
        self.ctx.check_rate(RateAction::TokenValidity, client_ip)?;
        Ok(self.is_registration_token(token))
    }
}

/// The 401 that continues user-interactive auth.
fn challenge(
    flows: &[&[&str]],
    session: &str,
    completed: &[String],
    stage_error: Option<String>,
) -> ServiceError {
    ServiceError::AuthRequired {
        challenge: json!({
            "flows": flows.iter().map(|f| json!({ "stages": f })).collect::<Vec<_>>(),
            "params": {},
            "session": session,
            "completed": completed,
        }),
        stage_error,
    }
}
