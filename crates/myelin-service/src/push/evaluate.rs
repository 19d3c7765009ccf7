//! Push rules evaluated when an event is stored: for every local joined member but the sender,
//! ruma's evaluator over the event with the room's member count, the member's display name, the
//! power levels (for `sender_notification_permission`) and the event's own `m.mentions`. Only
//! the outcomes that notify are kept; they are written in the event's transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_core::Pdu;
use myelin_storage::NewPushAction;
use ruma::events::StateEventType;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{
    Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset,
};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedUserId, ServerName, UInt};
use serde_json::Value;

use super::Push;
use crate::rooms::{Membership, RoomState};

impl Push {
    /// The notifications `pdu` gives the local members of the room, `state` being the room's
    /// state before it. Nothing when no local user but the sender is joined.
    pub(crate) async fn actions_for(&self, state: &RoomState, pdu: &Pdu) -> Vec<NewPushAction> {
        if pdu.rejected {
            return Vec::new();
        }
        let server = self.ctx.server_name();
        let mut member_count = 0u64;
        let mut local = Vec::new();
        for (user_id, entry) in state.member_entries() {
            if entry.membership() != Some(Membership::Join) {
                continue;
            }
            member_count += 1;
            if user_id.server_name() == server && user_id != pdu.sender {
                local.push((user_id.to_owned(), entry.pdu.clone()));
            }
        }
        // An invite notifies its local invitee, who is not joined yet (`.m.rule.invite_for_me`).
        if let Some(invitee) = local_invitee(pdu, server) {
            local.push((invitee, Arc::new(pdu.clone())));
        }
        if local.is_empty() {
            return Vec::new();
        }
        let Some(event) = rule_input(pdu) else {
            return Vec::new();
        };
        let event = FlattenedJson::from_raw(&event);
        let power_levels = power_levels_ctx(state);
        let thread_id = pdu
            .relation()
            .filter(|r| r.rel_type == "m.thread")
            .map(|r| r.event_id.to_string());
        let personal = PersonalTriggers::of(pdu);
        // The outcome of the server-default rules for a member they do not name: the same for
        // every such member, so evaluated once.
        let mut shared: Option<Option<(String, bool)>> = None;
        let mut out = Vec::new();
        for (user_id, member) in local {
            let rules = match self.ruleset(&user_id).await {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::warn!(%user_id, error = %e, "cannot read push rules");
                    continue;
                }
            };
            let display_name = display_name(&member).unwrap_or_else(|| user_id.localpart().into());
            let generic = rules.is_default && !personal.may_name(&user_id, &display_name);
            let outcome = match (&shared, generic) {
                (Some(outcome), true) => outcome.clone(),
                _ => {
                    let mut ctx = PushConditionRoomCtx::new(
                        state.room_id.clone(),
                        UInt::try_from(member_count).unwrap_or(UInt::MAX),
                        user_id.clone(),
                        display_name,
                    );
                    if let Some(power_levels) = &power_levels {
                        ctx = ctx.with_power_levels(power_levels.clone());
                    }
                    let outcome = notification(first_match(&rules.rules, &event, &ctx).await);
                    if generic {
                        shared = Some(outcome.clone());
                    }
                    outcome
                }
            };
            let Some((actions, highlight)) = outcome else {
                continue;
            };
            let queue = match self.pusher_ids(&user_id).await {
                Ok(ids) => !ids.is_empty(),
                // Unknown: queue for whatever pushers storage finds.
                Err(_) => true,
            };
            out.push(NewPushAction {
                user_id,
                actions,
                highlight,
                thread_id: thread_id.clone(),
                queue,
            });
        }
        out
    }
}

/// The actions of the first of the user's rules that applies: what `Ruleset::get_actions` does,
/// but over the event flattened once for all members rather than once per member, and without
/// the tracing span ruma opens per call (together most of the evaluation's cost in a big room).
async fn first_match<'a>(
    rules: &'a Ruleset,
    event: &FlattenedJson,
    ctx: &PushConditionRoomCtx,
) -> &'a [Action] {
    for rule in rules {
        if rule.applies(event, ctx).await {
            return rule.actions();
        }
    }
    &[]
}

/// What the rules read of the event, without the PDU's hashes, signatures and DAG fields (the
/// smaller, the cheaper to flatten).
fn rule_input(pdu: &Pdu) -> Option<Raw<Value>> {
    let mut event = serde_json::json!({
        "type": pdu.kind.to_string(),
        "sender": pdu.sender,
        "room_id": pdu.room_id,
        "event_id": pdu.event_id,
        "content": pdu.content,
    });
    if let Some(state_key) = &pdu.state_key {
        event["state_key"] = Value::String(state_key.clone());
    }
    serde_json::value::to_raw_value(&event)
        .ok()
        .map(Raw::from_json)
}

/// The local user an `m.room.member` invite is for, unless they invited themselves.
fn local_invitee(pdu: &Pdu, server: &ServerName) -> Option<OwnedUserId> {
    if pdu.kind.to_string() != "m.room.member" {
        return None;
    }
    let target = OwnedUserId::try_from(pdu.state_key.as_deref()?).ok()?;
    let invite = pdu
        .content_value()
        .get("membership")
        .and_then(Value::as_str)
        == Some("invite");
    (invite && target.server_name() == server && target != pdu.sender).then_some(target)
}

/// The stored actions (as JSON) and whether they highlight, for actions that notify.
fn notification(actions: &[Action]) -> Option<(String, bool)> {
    if !actions.iter().any(Action::should_notify) {
        return None;
    }
    Some((
        serde_json::to_string(actions).ok()?,
        actions.iter().any(Action::is_highlight),
    ))
}

/// What in an event could make the server-default rules treat one member differently from
/// another: a member event (`.m.rule.invite_for_me`, `.m.rule.member_event`), the body (which
/// `.m.rule.contains_display_name` and `.m.rule.contains_user_name` search for the member's
/// names) and `m.mentions.user_ids` (`.m.rule.is_user_mention`). Every other default rule reads
/// only the event, the room and the sender, the same for all members.
struct PersonalTriggers {
    member_event: bool,
    /// The body, lowercased as the rules compare it.
    body: Option<String>,
    mentioned: Vec<String>,
}

impl PersonalTriggers {
    fn of(pdu: &Pdu) -> PersonalTriggers {
        let content = pdu.content_value();
        PersonalTriggers {
            member_event: pdu.kind.to_string() == "m.room.member",
            body: content
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_lowercase),
            mentioned: content
                .get("m.mentions")
                .and_then(|m| m.get("user_ids"))
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether a default rule might apply to this member for who they are. Errs on the side of
    /// yes: any occurrence of a name counts (the rules want word boundaries), and a display
    /// name that is not plain ASCII or holds a wildcard (`*`, `?`, which the rules expand) is
    /// always evaluated in full.
    fn may_name(&self, user_id: &ruma::UserId, display_name: &str) -> bool {
        if self.member_event || self.mentioned.iter().any(|m| m == user_id.as_str()) {
            return true;
        }
        let Some(body) = &self.body else {
            return false;
        };
        let plain = |name: &str| !name.is_empty() && name.is_ascii() && !name.contains(['*', '?']);
        let localpart = user_id.localpart();
        !plain(display_name)
            || !plain(localpart)
            || body.contains(&display_name.to_lowercase())
            || body.contains(&localpart.to_lowercase())
    }
}

fn display_name(member: &Pdu) -> Option<String> {
    // Only the one field: this runs for every member on every message.
    #[derive(serde::Deserialize)]
    struct Member<'a> {
        #[serde(borrow, default)]
        displayname: Option<std::borrow::Cow<'a, str>>,
    }
    let member: Member<'_> = serde_json::from_str(member.content.get()).ok()?;
    member
        .displayname
        .filter(|n| !n.is_empty())
        .map(|n| n.into_owned())
}

/// What the evaluator needs of the room's power levels; `None` (no `@room` for anyone) when the
/// room has none.
fn power_levels_ctx(state: &RoomState) -> Option<PushConditionPowerLevelsCtx> {
    let content = state.content(&StateEventType::RoomPowerLevels, "")?;
    let users: BTreeMap<OwnedUserId, Int> = content
        .get("users")
        .and_then(Value::as_object)
        .map(|users| {
            users
                .iter()
                .filter_map(|(user, level)| {
                    Some((OwnedUserId::try_from(user.as_str()).ok()?, as_int(level)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let users_default = content
        .get("users_default")
        .and_then(as_int)
        .unwrap_or_default();
    let mut notifications = NotificationPowerLevels::new();
    if let Some(room) = content
        .get("notifications")
        .and_then(|n| n.get("room"))
        .and_then(as_int)
    {
        notifications.room = room;
    }
    let rules = RoomPowerLevelsRules::new(&state.rules.authorization, creators(state));
    Some(PushConditionPowerLevelsCtx::new(
        users,
        users_default,
        notifications,
        rules,
    ))
}

/// The room's creators: the create event's sender and its `additional_creators`.
fn creators(state: &RoomState) -> Vec<OwnedUserId> {
    let Some(create) = state.get(&StateEventType::RoomCreate, "") else {
        return Vec::new();
    };
    let mut creators = vec![create.pdu.sender.clone()];
    if let Some(more) = create
        .pdu
        .content_value()
        .get("additional_creators")
        .and_then(Value::as_array)
    {
        creators.extend(
            more.iter()
                .filter_map(Value::as_str)
                .filter_map(|u| OwnedUserId::try_from(u).ok()),
        );
    }
    creators
}

/// A power level: an integer, or (in old room versions) a string holding one.
fn as_int(value: &Value) -> Option<Int> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|i| Int::try_from(i).ok()),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|i| Int::try_from(i).ok()),
        _ => None,
    }
}
