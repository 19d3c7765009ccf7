//! Push rules: each user's ruleset (ruma's server defaults plus their own rules), kept as the
//! global account data `m.push_rules` so that clients also receive it through `/sync`.

use ruma::push::{
    Action, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
    NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Value};

use crate::push::PUSH_RULES;
use crate::{ServiceError, ServiceResult, Users};

/// The body of `PUT /pushrules/global/{kind}/{ruleId}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NewRuleBody {
    pub actions: Vec<Action>,
    #[serde(default)]
    pub conditions: Vec<PushCondition>,
    pub pattern: Option<String>,
}

/// Where to put a new rule relative to the user's other rules of its kind.
#[derive(Debug, Default)]
pub struct Placement {
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Users {
    /// The user's whole ruleset, with the server defaults of this version merged in.
    pub async fn push_rules(&self, user_id: &UserId) -> ServiceResult<Ruleset> {
        crate::push::load_ruleset(&self.ctx, user_id).await
    }

    /// The user's ruleset as clients read it (`GET /pushrules/global/`, `m.push_rules`).
    pub async fn push_rules_json(&self, user_id: &UserId) -> ServiceResult<Value> {
        ruleset_json(&self.push_rules(user_id).await?)
    }

    /// `GET /pushrules/global/{kind}/{ruleId}`: the rule as JSON.
    pub async fn push_rule(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
    ) -> ServiceResult<Value> {
        let kind = parse_kind(kind)?;
        let rules = self.push_rules(user_id).await?;
        rule_json(&rules, &kind, rule_id)
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`: adds or replaces one of the user's rules.
    pub async fn set_push_rule(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        body: NewRuleBody,
        placement: Placement,
    ) -> ServiceResult<()> {
        let kind = parse_kind(kind)?;
        let rule = new_rule(&kind, rule_id, body)?;
        let mut rules = self.push_rules(user_id).await?;
        rules
            .insert(
                rule,
                placement.after.as_deref(),
                placement.before.as_deref(),
            )
            .map_err(|e| match e {
                InsertPushRuleError::UnknownRuleId => ServiceError::NotFound(e.to_string()),
                _ => ServiceError::InvalidParam(e.to_string()),
            })?;
        self.save_push_rules(user_id, &rules).await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`.
    pub async fn delete_push_rule(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
    ) -> ServiceResult<()> {
        let kind = parse_kind(kind)?;
        let mut rules = self.push_rules(user_id).await?;
        rules.remove(kind, rule_id).map_err(|e| match e {
            RemovePushRuleError::NotFound => ServiceError::NotFound("Push rule not found".into()),
            _ => ServiceError::InvalidParam(e.to_string()),
        })?;
        self.save_push_rules(user_id, &rules).await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/enabled`.
    pub async fn set_push_rule_enabled(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        enabled: bool,
    ) -> ServiceResult<()> {
        let kind = parse_kind(kind)?;
        let mut rules = self.push_rules(user_id).await?;
        rules
            .set_enabled(kind, rule_id, enabled)
            .map_err(|_| ServiceError::NotFound("Push rule not found".into()))?;
        self.save_push_rules(user_id, &rules).await
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}/actions`.
    pub async fn set_push_rule_actions(
        &self,
        user_id: &UserId,
        kind: &str,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> ServiceResult<()> {
        let kind = parse_kind(kind)?;
        let mut rules = self.push_rules(user_id).await?;
        rules
            .set_actions(kind, rule_id, actions)
            .map_err(|_| ServiceError::NotFound("Push rule not found".into()))?;
        self.save_push_rules(user_id, &rules).await
    }

    async fn save_push_rules(&self, user_id: &UserId, rules: &Ruleset) -> ServiceResult<()> {
        let global = ruleset_json(rules)?;
        let stored = self
            .store_account_data(user_id, None, PUSH_RULES, json!({ "global": global }))
            .await;
        // New events are evaluated with the new rules from now on.
        self.push.forget_ruleset(user_id);
        stored
    }
}

/// A ruleset as JSON with all five kinds present: ruma leaves out empty ones, and clients
/// expect each kind's array (an empty `room` or `sender` list included).
pub fn ruleset_json(rules: &Ruleset) -> ServiceResult<Value> {
    let mut json =
        serde_json::to_value(rules).map_err(|e| ServiceError::Internal(e.to_string()))?;
    if let Some(kinds) = json.as_object_mut() {
        for kind in ["override", "content", "room", "sender", "underride"] {
            kinds.entry(kind).or_insert_with(|| json!([]));
        }
    }
    Ok(json)
}

/// The rule kinds a client may address (`global` is the only scope).
fn parse_kind(kind: &str) -> ServiceResult<RuleKind> {
    match kind {
        "override" | "underride" | "sender" | "room" | "content" => Ok(RuleKind::from(kind)),
        _ => Err(ServiceError::InvalidParam(format!(
            "Unknown push rule kind {kind:?}"
        ))),
    }
}

fn new_rule(kind: &RuleKind, rule_id: &str, body: NewRuleBody) -> ServiceResult<NewPushRule> {
    let NewRuleBody {
        actions,
        conditions,
        pattern,
    } = body;
    Ok(match kind {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions,
            actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions,
            actions,
        )),
        RuleKind::Content => {
            let pattern = pattern
                .ok_or_else(|| ServiceError::BadJson("Content rules need a pattern".into()))?;
            NewPushRule::Content(NewPatternedPushRule::new(
                rule_id.to_owned(),
                pattern,
                actions,
            ))
        }
        RuleKind::Room => {
            let room_id = OwnedRoomId::try_from(rule_id).map_err(|e| {
                ServiceError::InvalidParam(format!("Room rules are named by room ID: {e}"))
            })?;
            NewPushRule::Room(NewSimplePushRule::new(room_id, actions))
        }
        RuleKind::Sender => {
            let user_id = OwnedUserId::try_from(rule_id).map_err(|e| {
                ServiceError::InvalidParam(format!("Sender rules are named by user ID: {e}"))
            })?;
            NewPushRule::Sender(NewSimplePushRule::new(user_id, actions))
        }
        _ => return Err(ServiceError::InvalidParam("Unknown push rule kind".into())),
    })
}

/// One rule of the ruleset, in its JSON form.
fn rule_json(rules: &Ruleset, kind: &RuleKind, rule_id: &str) -> ServiceResult<Value> {
    let all = serde_json::to_value(rules).map_err(|e| ServiceError::Internal(e.to_string()))?;
    all.get(kind.as_str())
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|r| r.get("rule_id").and_then(Value::as_str) == Some(rule_id))
        })
        .cloned()
        .ok_or_else(|| ServiceError::NotFound("Push rule not found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_found_by_kind_and_id() {
        let user: OwnedUserId = "@alice:localhost".try_into().unwrap();
        let rules = Ruleset::server_default(&user);
        let master = rule_json(&rules, &RuleKind::Override, ".m.rule.master").unwrap();
        assert_eq!(master["enabled"], false);
        assert!(rule_json(&rules, &RuleKind::Underride, ".m.rule.master").is_err());
    }

    #[test]
    fn kinds_are_checked() {
        assert!(parse_kind("global").is_err());
        assert!(parse_kind("room").is_ok());
        let body = NewRuleBody {
            actions: vec![],
            conditions: vec![],
            pattern: None,
        };
        assert!(matches!(
            new_rule(&RuleKind::Content, "x", body),
            Err(ServiceError::BadJson(_))
        ));
        let body = NewRuleBody::default();
        assert!(matches!(
            new_rule(&RuleKind::Room, "not a room", body),
            Err(ServiceError::InvalidParam(_))
        ));
    }
}
