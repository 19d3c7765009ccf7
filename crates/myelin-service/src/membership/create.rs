//! `POST /createRoom`: the spec's event sequence, persisted in one transaction.
//!
//! In four steps: the request is checked and its room version picked; the initial events are
//! built in the spec's order by a pure function, [`initial_events`]; they are committed as a new
//! room through the append path of [`crate::Rooms`]; then what lives outside the room's DAG
//! follows: the alias, the directory entry, and invites of remote users (their servers co-sign).

use myelin_room::EventTemplate;
use myelin_storage::{NewRoom, UserRecord};
use ruma::{
    room_version_rules::RoomVersionRules, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

use crate::rooms::Append;
use crate::{accounts::token::random_alnum, Memberships, ServiceError, ServiceResult};

#[derive(Debug, Clone, Default)]
pub struct InitialStateEvent {
    pub kind: String,
    pub state_key: String,
    pub content: Value,
}

#[derive(Debug, Clone, Default)]
pub struct CreateRoomRequest {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    pub initial_state: Vec<InitialStateEvent>,
    pub preset: Option<String>,
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
}

/// A creation request's `preset`: the defaults for join rules, guest access and who may invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preset {
    Public,
    Private,
    TrustedPrivate,
}

impl Preset {
    /// The preset asked for; without one, the visibility decides (`public` → `public_chat`).
    fn of(req: &CreateRoomRequest) -> ServiceResult<Preset> {
        match req.preset.as_deref() {
            Some("public_chat") => Ok(Preset::Public),
            Some("private_chat") => Ok(Preset::Private),
            Some("trusted_private_chat") => Ok(Preset::TrustedPrivate),
            Some(other) => Err(ServiceError::BadJson(format!("Unknown preset {other}"))),
            None if req.visibility.as_deref() == Some("public") => Ok(Preset::Public),
            None => Ok(Preset::Private),
        }
    }
}

/// What checking a creation request settled.
struct Checked {
    version: RoomVersionId,
    rules: RoomVersionRules,
    alias: Option<OwnedRoomAliasId>,
    preset: Preset,
}

/// Everything the initial events are built from: the checked request and the profiles they show.
struct RoomSetup<'a> {
    creator: &'a UserId,
    version: &'a RoomVersionId,
    rules: &'a RoomVersionRules,
    preset: Preset,
    alias: Option<&'a OwnedRoomAliasId>,
    req: &'a CreateRoomRequest,
    /// Shown in the creator's join.
    creator_profile: Option<&'a UserRecord>,
    /// Invitees of this server with their display names, in the request's order. Remote
    /// invitees are not among the initial events: they are invited once the room exists.
    local_invitees: &'a [(&'a UserId, Option<String>)],
}

impl Memberships {
    pub async fn create_room(
        &self,
        creator: &UserId,
        req: CreateRoomRequest,
    ) -> ServiceResult<OwnedRoomId> {
        let checked = self.check_request(&req).await?;
        // Remote invitees are invited once the room exists: their server must co-sign.
        let (local_invites, remote_invites): (Vec<_>, Vec<_>) = req
            .invite
            .iter()
            .partition(|u| u.server_name() == self.ctx.config.server_name);
        let creator_profile = self.ctx.storage.get_user(creator).await?;
        let mut local_invitees = Vec::with_capacity(local_invites.len());
        for invitee in local_invites {
            let profile = self.ctx.storage.get_user(invitee).await?;
            local_invitees.push((&**invitee, profile.and_then(|p| p.displayname)));
        }
        let events = initial_events(&RoomSetup {
            creator,
            version: &checked.version,
            rules: &checked.rules,
            preset: checked.preset,
            alias: checked.alias.as_ref(),
            req: &req,
            creator_profile: creator_profile.as_ref(),
            local_invitees: &local_invitees,
        });
        let room_id = self
            .commit_new_room(creator, checked.version, events)
            .await?;
        self.finish_creation(creator, &room_id, checked.alias, &req, &remote_invites)
            .await?;
        Ok(room_id)
    }

    /// The room version (asked for or the default), the alias (valid and free) and the preset;
    /// `initial_state` may not set the events the server makes itself.
    async fn check_request(&self, req: &CreateRoomRequest) -> ServiceResult<Checked> {
        let version = match &req.room_version {
            Some(v) => RoomVersionId::try_from(v.as_str()).map_err(|_| {
                ServiceError::UnsupportedRoomVersion(format!("Unsupported room version {v}"))
            })?,
            None => self.ctx.config.default_room_version.clone(),
        };
        let rules = myelin_room::rules_for(&version)?;
        let alias = match &req.room_alias_name {
            Some(local) => Some(self.check_new_alias(local).await?),
            None => None,
        };
        let preset = Preset::of(req)?;
        check_initial_state(&req.initial_state)?;
        Ok(Checked {
            version,
            rules,
            alias,
            preset,
        })
    }

    /// Validates a local alias name and checks that it is free.
    async fn check_new_alias(&self, local: &str) -> ServiceResult<OwnedRoomAliasId> {
        if local.contains(':') || local.contains('#') || local.chars().any(char::is_whitespace) {
            return Err(ServiceError::InvalidParam(
                "Invalid characters in room alias".into(),
            ));
        }
        let alias = OwnedRoomAliasId::try_from(format!("#{local}:{}", self.ctx.config.server_name))
            .map_err(|e| ServiceError::InvalidParam(e.to_string()))?;
        if self.ctx.storage.resolve_alias(&alias).await?.is_some() {
            return Err(ServiceError::RoomInUse("Room alias already taken".into()));
        }
        Ok(alias)
    }

    /// Stores the room and its initial events in one transaction, all sent by the creator.
    async fn commit_new_room(
        &self,
        creator: &UserId,
        version: RoomVersionId,
        events: Vec<EventTemplate>,
    ) -> ServiceResult<OwnedRoomId> {
        let room_id = OwnedRoomId::try_from(format!(
            "!{}:{}",
            random_alnum(18),
            self.ctx.config.server_name
        ))
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let new_room = NewRoom {
            room_id: room_id.clone(),
            version,
            creator: creator.to_owned(),
            created_ms: self.ctx.now_ms(),
        };
        let appends = events
            .into_iter()
            .map(|template| Append {
                sender: creator.to_owned(),
                template,
                txn: None,
                prebuilt: None,
                ts: None,
            })
            .collect();
        let room_state = self
            .rooms
            .append_new_room(room_id, new_room, appends)
            .await?;
        Ok(room_state.room_id.clone())
    }

    /// What follows the commit: the alias, the directory entry, and invites of remote users.
    async fn finish_creation(
        &self,
        creator: &UserId,
        room_id: &RoomId,
        alias: Option<OwnedRoomAliasId>,
        req: &CreateRoomRequest,
        remote_invites: &[&OwnedUserId],
    ) -> ServiceResult<()> {
        if let Some(alias) = alias {
            if !self
                .ctx
                .storage
                .create_alias(&alias, room_id, creator)
                .await?
            {
                tracing::warn!(%alias, "alias taken while the room was being created");
            }
        }
        if req.visibility.as_deref() == Some("public") {
            self.ctx.storage.set_room_published(room_id, true).await?;
        }
        for invitee in remote_invites {
            // The room exists either way; an unreachable invitee is told later by hand.
            if let Err(e) = self
                .handshakes
                .invite_remote(creator, room_id, invitee, invite_content(req.is_direct))
                .await
            {
                tracing::warn!(%room_id, %invitee, error = %e, "remote invite at room creation failed");
            }
        }
        Ok(())
    }
}

/// `initial_state` may not hold the create event or memberships: the server makes those.
fn check_initial_state(initial_state: &[InitialStateEvent]) -> ServiceResult<()> {
    match initial_state
        .iter()
        .find(|ev| ev.kind == "m.room.create" || ev.kind == "m.room.member")
    {
        Some(ev) => Err(ServiceError::BadJson(format!(
            "initial_state may not contain {}",
            ev.kind
        ))),
        None => Ok(()),
    }
}

/// The new room's events in the spec's order: create, the creator's join, power levels, the
/// canonical alias, the preset's join rules, history visibility and guest access, then
/// `initial_state`, name, topic and the invites of local users. A later event of the same type
/// and state key replaces an earlier one in the room's state, so `initial_state` overrides what
/// the preset set (both events are sent).
fn initial_events(setup: &RoomSetup<'_>) -> Vec<EventTemplate> {
    let req = setup.req;
    let mut events = vec![
        state_event("m.room.create", "", create_content(setup)),
        state_event(
            "m.room.member",
            setup.creator.as_str(),
            creator_join(setup.creator_profile),
        ),
        state_event("m.room.power_levels", "", power_levels(setup)),
    ];
    if let Some(alias) = setup.alias {
        events.push(state_event(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    let (join_rule, guest) = match setup.preset {
        Preset::Public => ("public", "forbidden"),
        Preset::Private | Preset::TrustedPrivate => ("invite", "can_join"),
    };
    events.push(state_event(
        "m.room.join_rules",
        "",
        json!({ "join_rule": join_rule }),
    ));
    events.push(state_event(
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "shared" }),
    ));
    events.push(state_event(
        "m.room.guest_access",
        "",
        json!({ "guest_access": guest }),
    ));
    for ev in &req.initial_state {
        events.push(state_event(&ev.kind, &ev.state_key, ev.content.clone()));
    }
    if let Some(name) = &req.name {
        events.push(state_event("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = &req.topic {
        events.push(state_event(
            "m.room.topic",
            "",
            json!({ "topic": topic, "m.topic": [{ "body": topic, "mimetype": "text/plain" }] }),
        ));
    }
    for (invitee, displayname) in setup.local_invitees {
        let mut content = invite_content(req.is_direct);
        if let Some(name) = displayname {
            content["displayname"] = json!(name);
        }
        events.push(state_event("m.room.member", invitee.as_str(), content));
    }
    events
}

/// `creation_content` with the room version; the creator is named where the version does not
/// take it from the create event's sender.
fn create_content(setup: &RoomSetup<'_>) -> Value {
    let mut content = setup.req.creation_content.clone().unwrap_or_default();
    content.insert("room_version".into(), json!(setup.version.as_str()));
    if !setup.rules.authorization.use_room_create_sender {
        content.insert("creator".into(), json!(setup.creator));
    }
    Value::Object(content)
}

/// The creator's join, with their display name and avatar when they have them.
fn creator_join(profile: Option<&UserRecord>) -> Value {
    let mut member = json!({ "membership": "join" });
    if let Some(p) = profile {
        if let Some(name) = &p.displayname {
            member["displayname"] = json!(name);
        }
        if let Some(url) = &p.avatar_url {
            member["avatar_url"] = json!(url);
        }
    }
    member
}

/// The default power levels for the preset, then `power_level_content_override`, whose
/// top-level keys replace the defaults' whole (an override of `users` replaces the map).
fn power_levels(setup: &RoomSetup<'_>) -> Value {
    let mut users = Map::new();
    // Where the version privileges creators by itself, they may not be listed.
    if !setup.rules.authorization.explicitly_privilege_room_creators {
        users.insert(setup.creator.to_string(), json!(100));
    }
    if setup.preset == Preset::TrustedPrivate {
        for invitee in &setup.req.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut power = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100, "m.room.topic": 50,
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
        "invite": if setup.preset == Preset::Public { 50 } else { 0 },
        "notifications": { "room": 50 },
    });
    for (k, v) in setup
        .req
        .power_level_content_override
        .clone()
        .unwrap_or_default()
    {
        power[k] = v;
    }
    power
}

/// An invite's content; `is_direct` marks a direct chat for the invitee.
fn invite_content(is_direct: bool) -> Value {
    let mut content = json!({ "membership": "invite" });
    if is_direct {
        content["is_direct"] = json!(true);
    }
    content
}

fn state_event(kind: &str, state_key: &str, content: Value) -> EventTemplate {
    EventTemplate {
        kind: kind.into(),
        state_key: Some(state_key.into()),
        content,
        redacts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATOR: &str = "@alice:me.example";

    fn user(id: &str) -> &UserId {
        <&UserId>::try_from(id).expect("user ID")
    }

    fn rules(version: &RoomVersionId) -> RoomVersionRules {
        myelin_room::rules_for(version).expect("supported version")
    }

    /// The initial events of `req` by `CREATOR` in room version 10, its invitees all local and
    /// without profiles.
    fn build(req: &CreateRoomRequest) -> Vec<EventTemplate> {
        build_in(&RoomVersionId::V10, req)
    }

    fn build_in(version: &RoomVersionId, req: &CreateRoomRequest) -> Vec<EventTemplate> {
        let rules = rules(version);
        let local_invitees: Vec<(&UserId, Option<String>)> =
            req.invite.iter().map(|u| (&**u, None)).collect();
        initial_events(&RoomSetup {
            creator: user(CREATOR),
            version,
            rules: &rules,
            preset: Preset::of(req).expect("known preset"),
            alias: None,
            req,
            creator_profile: None,
            local_invitees: &local_invitees,
        })
    }

    /// The content of the last event of `kind` with an empty state key: what the room's state
    /// holds once all are sent.
    fn last_content(events: &[EventTemplate], kind: &str) -> Value {
        events
            .iter()
            .rev()
            .find(|e| e.kind == kind && e.state_key.as_deref() == Some(""))
            .map(|e| e.content.clone())
            .expect("event present")
    }

    fn power_of(events: &[EventTemplate]) -> Value {
        last_content(events, "m.room.power_levels")
    }

    #[test]
    fn events_come_in_the_spec_order() {
        let req = CreateRoomRequest {
            name: Some("Name".into()),
            topic: Some("Topic".into()),
            invite: vec![user("@bob:me.example").to_owned()],
            initial_state: vec![InitialStateEvent {
                kind: "m.room.encryption".into(),
                state_key: String::new(),
                content: json!({ "algorithm": "m.megolm.v1.aes-sha2" }),
            }],
            ..CreateRoomRequest::default()
        };
        let rules = rules(&RoomVersionId::V10);
        let alias = OwnedRoomAliasId::try_from("#room:me.example").expect("alias");
        let bob = [(user("@bob:me.example"), Some("Bob".to_owned()))];
        let events = initial_events(&RoomSetup {
            creator: user(CREATOR),
            version: &RoomVersionId::V10,
            rules: &rules,
            preset: Preset::Private,
            alias: Some(&alias),
            req: &req,
            creator_profile: None,
            local_invitees: &bob,
        });
        let order: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.state_key.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            order,
            [
                ("m.room.create", ""),
                ("m.room.member", CREATOR),
                ("m.room.power_levels", ""),
                ("m.room.canonical_alias", ""),
                ("m.room.join_rules", ""),
                ("m.room.history_visibility", ""),
                ("m.room.guest_access", ""),
                ("m.room.encryption", ""),
                ("m.room.name", ""),
                ("m.room.topic", ""),
                ("m.room.member", "@bob:me.example"),
            ]
        );
        assert_eq!(events[3].content, json!({ "alias": "#room:me.example" }));
        assert_eq!(
            events[10].content,
            json!({ "membership": "invite", "displayname": "Bob" })
        );
    }

    #[test]
    fn private_chat_is_invite_only_with_shared_history() {
        let events = build(&CreateRoomRequest {
            preset: Some("private_chat".into()),
            ..CreateRoomRequest::default()
        });
        assert_eq!(
            last_content(&events, "m.room.join_rules"),
            json!({ "join_rule": "invite" })
        );
        assert_eq!(
            last_content(&events, "m.room.history_visibility"),
            json!({ "history_visibility": "shared" })
        );
        assert_eq!(
            last_content(&events, "m.room.guest_access"),
            json!({ "guest_access": "can_join" })
        );
        assert_eq!(power_of(&events)["invite"], json!(0));
    }

    #[test]
    fn a_public_room_without_a_preset_is_a_public_chat() {
        let events = build(&CreateRoomRequest {
            visibility: Some("public".into()),
            ..CreateRoomRequest::default()
        });
        assert_eq!(
            last_content(&events, "m.room.join_rules"),
            json!({ "join_rule": "public" })
        );
        assert_eq!(
            last_content(&events, "m.room.guest_access"),
            json!({ "guest_access": "forbidden" })
        );
        assert_eq!(power_of(&events)["invite"], json!(50));
        // Without a preset or a visibility, the room is private.
        let events = build(&CreateRoomRequest::default());
        assert_eq!(
            last_content(&events, "m.room.join_rules"),
            json!({ "join_rule": "invite" })
        );
    }

    #[test]
    fn initial_state_comes_after_the_preset_and_so_wins() {
        let events = build(&CreateRoomRequest {
            preset: Some("private_chat".into()),
            initial_state: vec![InitialStateEvent {
                kind: "m.room.join_rules".into(),
                state_key: String::new(),
                content: json!({ "join_rule": "public" }),
            }],
            ..CreateRoomRequest::default()
        });
        let join_rules: Vec<&Value> = events
            .iter()
            .filter(|e| e.kind == "m.room.join_rules")
            .map(|e| &e.content)
            .collect();
        assert_eq!(
            join_rules,
            [
                &json!({ "join_rule": "invite" }),
                &json!({ "join_rule": "public" })
            ]
        );
    }

    #[test]
    fn the_power_level_override_replaces_top_level_keys_whole() {
        let overrides = json!({ "ban": 100, "users": { "@carol:me.example": 75 } });
        let events = build(&CreateRoomRequest {
            power_level_content_override: overrides.as_object().cloned(),
            ..CreateRoomRequest::default()
        });
        let power = power_of(&events);
        assert_eq!(power["ban"], json!(100));
        assert_eq!(power["kick"], json!(50));
        // Not merged: the creator's entry is gone with the default map.
        assert_eq!(power["users"], json!({ "@carol:me.example": 75 }));
    }

    #[test]
    fn trusted_private_chat_invitees_get_the_creators_power() {
        let req = CreateRoomRequest {
            preset: Some("trusted_private_chat".into()),
            invite: vec![
                user("@bob:me.example").to_owned(),
                user("@dan:remote.example").to_owned(),
            ],
            ..CreateRoomRequest::default()
        };
        let power = power_of(&build(&req));
        assert_eq!(
            power["users"],
            json!({ CREATOR: 100, "@bob:me.example": 100, "@dan:remote.example": 100 })
        );
        assert_eq!(
            last_content(&build(&req), "m.room.join_rules"),
            json!({ "join_rule": "invite" })
        );
        // In any other preset, invitees get the default.
        let private = CreateRoomRequest {
            preset: Some("private_chat".into()),
            ..req
        };
        assert_eq!(power_of(&build(&private))["users"], json!({ CREATOR: 100 }));
    }

    #[test]
    fn the_room_version_decides_how_the_creator_is_named_and_privileged() {
        let req = CreateRoomRequest {
            creation_content: json!({ "m.federate": false }).as_object().cloned(),
            ..CreateRoomRequest::default()
        };
        let v10 = build_in(&RoomVersionId::V10, &req);
        assert_eq!(
            v10[0].content,
            json!({ "m.federate": false, "room_version": "10", "creator": CREATOR })
        );
        assert_eq!(power_of(&v10)["users"], json!({ CREATOR: 100 }));
        // Version 12 takes the creator from the create event's sender and privileges them
        // without a power level.
        let v12 = build_in(&RoomVersionId::V12, &req);
        assert_eq!(
            v12[0].content,
            json!({ "m.federate": false, "room_version": "12" })
        );
        assert_eq!(power_of(&v12)["users"], json!({}));
    }

    #[test]
    fn the_creators_join_shows_their_profile() {
        let profile = UserRecord {
            user_id: user(CREATOR).to_owned(),
            password_hash: None,
            is_admin: false,
            deactivated: false,
            created_ms: 0,
            displayname: Some("Alice".into()),
            avatar_url: Some("mxc://me.example/a".into()),
            is_guest: false,
            locked: false,
            suspended: false,
        };
        assert_eq!(
            creator_join(Some(&profile)),
            json!({ "membership": "join", "displayname": "Alice", "avatar_url": "mxc://me.example/a" })
        );
        assert_eq!(creator_join(None), json!({ "membership": "join" }));
    }

    #[test]
    fn direct_invites_say_so() {
        assert_eq!(
            invite_content(true),
            json!({ "membership": "invite", "is_direct": true })
        );
        assert_eq!(invite_content(false), json!({ "membership": "invite" }));
    }

    #[test]
    fn unknown_presets_and_server_made_initial_state_are_refused() {
        let req = CreateRoomRequest {
            preset: Some("secret_chat".into()),
            ..CreateRoomRequest::default()
        };
        assert!(matches!(Preset::of(&req), Err(ServiceError::BadJson(_))));
        for kind in ["m.room.create", "m.room.member"] {
            let initial_state = [InitialStateEvent {
                kind: kind.into(),
                ..InitialStateEvent::default()
            }];
            assert!(matches!(
                check_initial_state(&initial_state),
                Err(ServiceError::BadJson(_))
            ));
        }
        let initial_state = [InitialStateEvent {
            kind: "m.room.topic".into(),
            ..InitialStateEvent::default()
        }];
        assert!(check_initial_state(&initial_state).is_ok());
    }
}
