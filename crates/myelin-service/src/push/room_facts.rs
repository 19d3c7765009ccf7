//! What push evaluation reads of a room's state: the joined member count, the local joined
//! members with their display names, and the power levels as the evaluator wants them. Worked
//! out once per state and kept in the `RoomState` it was read from (which drops it when its
//! state changes), rather than parsed again from the member and power-level events for every
//! message sent.

use std::collections::BTreeMap;

use myelin_core::Pdu;
use ruma::events::StateEventType;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::PushConditionPowerLevelsCtx;
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::{Int, OwnedUserId, ServerName, UInt, UserId};
use serde_json::Value;

use crate::rooms::{Membership, RoomState};

#[derive(Debug)]
pub(crate) struct RoomPushFacts {
    /// Joined members, local or not (`room_member_count`).
    pub member_count: UInt,
    /// The local joined members.
    pub local_members: Vec<LocalMember>,
    /// `None` (no `@room` for anyone) when the room has no power levels.
    pub power_levels: Option<PushConditionPowerLevelsCtx>,
}

/// A local user the rules are evaluated for, with the names the default rules look for.
#[derive(Debug)]
pub(crate) struct LocalMember {
    pub user_id: OwnedUserId,
    /// Their display name in the room, or their localpart when they have none.
    pub display_name: String,
    /// The display name and localpart lowercased, for a quick search of a message's body;
    /// `None` when either is not plain ASCII or holds a wildcard (`*`, `?`, which the rules
    /// expand): such a member's rules are always evaluated in full.
    pub plain_names: Option<(String, String)>,
}

impl LocalMember {
    pub fn new(user_id: OwnedUserId, display_name: Option<String>) -> LocalMember {
        let display_name = display_name.unwrap_or_else(|| user_id.localpart().to_owned());
        let plain = |name: &str| !name.is_empty() && name.is_ascii() && !name.contains(['*', '?']);
        let plain_names = (plain(&display_name) && plain(user_id.localpart())).then(|| {
            (
                display_name.to_ascii_lowercase(),
                user_id.localpart().to_ascii_lowercase(),
            )
        });
        LocalMember {
            user_id,
            display_name,
            plain_names,
        }
    }
}

impl RoomPushFacts {
    pub fn of(state: &RoomState, server: &ServerName) -> RoomPushFacts {
        let mut member_count = 0u64;
        let mut local_members = Vec::new();
        for (user_id, entry) in state.member_entries() {
            if entry.membership() != Some(Membership::Join) {
                continue;
            }
            member_count += 1;
            if user_id.server_name() == server {
                local_members.push(LocalMember::new(
                    user_id.to_owned(),
                    display_name(&entry.pdu),
                ));
            }
        }
        RoomPushFacts {
            member_count: UInt::try_from(member_count).unwrap_or(UInt::MAX),
            local_members,
            power_levels: power_levels_ctx(state),
        }
    }

    /// The local joined members other than `sender`.
    pub fn members_but<'a>(&'a self, sender: &'a UserId) -> impl Iterator<Item = &'a LocalMember> {
        self.local_members
            .iter()
            .filter(move |m| m.user_id != sender)
    }
}

/// The non-empty `displayname` of a member event.
pub(crate) fn display_name(member: &Pdu) -> Option<String> {
    // Only the one field is read.
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

/// What the evaluator needs of the room's power levels.
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
