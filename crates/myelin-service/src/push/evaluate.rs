//! Push rules evaluated when an event is stored: for every local joined member but the sender,
//! ruma's evaluator over the event with the room's member count, the member's display name, the
//! power levels (for `sender_notification_permission`) and the event's own `m.mentions`. Only
//! the outcomes that notify are kept; they are written in the event's transaction.

use myelin_core::Pdu;
use myelin_storage::NewPushAction;
use ruma::push::{Action, FlattenedJson, PushConditionRoomCtx, Ruleset};
use ruma::serde::Raw;
use ruma::{OwnedUserId, ServerName};
use serde_json::Value;

use super::room_facts::{self, LocalMember, RoomPushFacts};
use super::Push;
use crate::rooms::RoomState;

impl Push {
    /// The notifications `pdu` gives the local members of the room, `state` being the room's
    /// state before it. Nothing when no local user but the sender is joined.
    pub(crate) async fn actions_for(&self, state: &RoomState, pdu: &Pdu) -> Vec<NewPushAction> {
        if pdu.rejected {
            return Vec::new();
        }
        let server = self.ctx.server_name();
        let facts = state.push_facts(server);
        // An invite notifies its local invitee, who is not joined yet (`.m.rule.invite_for_me`).
        let invitee = local_invitee(pdu, server)
            .map(|user_id| LocalMember::new(user_id, room_facts::display_name(pdu)));
        // Collected: an iterator held across the awaits below would make this future not `Send`.
        let members: Vec<&LocalMember> = facts.members_but(&pdu.sender).chain(&invitee).collect();
        if members.is_empty() {
            return Vec::new();
        }
        let Some(event) = rule_input(pdu) else {
            return Vec::new();
        };
        let event = FlattenedJson::from_raw(&event);
        let thread_id = pdu
            .relation()
            .filter(|r| r.rel_type == "m.thread")
            .map(|r| r.event_id.to_string());
        let personal = PersonalTriggers::of(pdu);
        // The outcome of the server-default rules for a member they do not name: the same for
        // every such member, so evaluated once.
        let mut shared: Option<Option<(String, bool)>> = None;
        let mut out = Vec::new();
        for member in members {
            let user_id = &member.user_id;
            let rules = match self.ruleset(user_id).await {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::warn!(%user_id, error = %e, "cannot read push rules");
                    continue;
                }
            };
            let generic = rules.is_default && !personal.may_name(member);
            let outcome = match (&shared, generic) {
                (Some(outcome), true) => outcome.clone(),
                _ => {
                    let outcome = self
                        .evaluate(&rules.rules, &event, state, &facts, member)
                        .await;
                    if generic {
                        shared = Some(outcome.clone());
                    }
                    outcome
                }
            };
            let Some((actions, highlight)) = outcome else {
                continue;
            };
            let queue = match self.pusher_ids(user_id).await {
                Ok(ids) => !ids.is_empty(),
                // Unknown: queue for whatever pushers storage finds.
                Err(_) => true,
            };
            out.push(NewPushAction {
                user_id: user_id.clone(),
                actions,
                highlight,
                thread_id: thread_id.clone(),
                queue,
            });
        }
        out
    }

    /// One member's outcome: their rules over the event in this room.
    async fn evaluate(
        &self,
        rules: &Ruleset,
        event: &FlattenedJson,
        state: &RoomState,
        facts: &RoomPushFacts,
        member: &LocalMember,
    ) -> Option<(String, bool)> {
        let mut ctx = PushConditionRoomCtx::new(
            state.room_id.clone(),
            facts.member_count,
            member.user_id.clone(),
            member.display_name.clone(),
        );
        if let Some(power_levels) = &facts.power_levels {
            ctx = ctx.with_power_levels(power_levels.clone());
        }
        notification(first_match(rules, event, &ctx).await)
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
    /// yes: any occurrence of a name counts (the rules want word boundaries), and a member
    /// whose names are not plain ASCII is always evaluated in full.
    fn may_name(&self, member: &LocalMember) -> bool {
        if self.member_event || self.mentioned.iter().any(|m| m == member.user_id.as_str()) {
            return true;
        }
        let Some(body) = &self.body else {
            return false;
        };
        let Some((display_name, localpart)) = &member.plain_names else {
            return true;
        };
        body.contains(display_name.as_str()) || body.contains(localpart.as_str())
    }
}
