//! Memberships changes: join, leave, invite, kick, ban, unban, forget; profile propagation.

use crate::rooms::Membership;
use myelin_room::EventTemplate;
use myelin_storage::RoomStore;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, UserId};
use serde_json::{json, Value};

use crate::rooms::Append;
use crate::{Memberships, ServiceError, ServiceResult};

impl Memberships {
    /// Sends an `m.room.member` event for `target` by `sender`.
    async fn send_membership(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        mut content: Value,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let append = Append {
            sender: sender.to_owned(),
            template: EventTemplate {
                kind: "m.room.member".into(),
                state_key: Some(target.to_string()),
                content,
                redacts: None,
            },
            txn: None,
            prebuilt: None,
            ts: None,
        };
        self.rooms.append_event(room_id, append).await?;
        Ok(())
    }

    /// Where a join or knock goes: a room we are in is joined locally; any other goes through
    /// the servers that may be in it (those given, the alias's, an inviter's for a join).
    async fn route(
        &self,
        user_id: &UserId,
        room_id_or_alias: &str,
        via: &[OwnedServerName],
        handshake: Handshake,
    ) -> ServiceResult<Route> {
        let (room_id, alias_servers) = self
            .rooms
            .resolve_room_with_servers(room_id_or_alias)
            .await?;
        let known = RoomStore::room_info(self.ctx.storage.as_ref(), &room_id)
            .await?
            .is_some();
        if known && self.rooms.server_has_joined_member(&room_id).await? {
            return Ok(Route::Local(room_id));
        }
        let invite_sender = match handshake {
            Handshake::Join => {
                self.handshakes
                    .pending_invite_sender(user_id, &room_id)
                    .await?
            }
            Handshake::Knock => None,
        };
        let mut given = via.to_vec();
        given.extend(alias_servers);
        let servers = self
            .handshakes
            .join_candidates(&room_id, &given, invite_sender.as_deref());
        let own = self.ctx.server_name();
        if servers.iter().any(|s| s != own) {
            return Ok(Route::Remote(room_id, servers));
        }
        if !known {
            return Err(ServiceError::NotFound(format!("Room {room_id} not found")));
        }
        Ok(Route::Local(room_id))
    }

    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`.
    pub async fn join_room(
        &self,
        user_id: &UserId,
        room_id_or_alias: &str,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> ServiceResult<OwnedRoomId> {
        let room_id = match self
            .route(user_id, room_id_or_alias, via, Handshake::Join)
            .await?
        {
            Route::Local(room_id) => room_id,
            Route::Remote(room_id, servers) => {
                self.handshakes
                    .join_remote(user_id, &room_id, &servers, reason)
                    .await?;
                return Ok(room_id);
            }
        };
        let state = self.rooms.room_state(&room_id).await?;
        if state.membership(user_id) == Some(Membership::Join) {
            return Ok(room_id);
        }
        let content = self.rooms.member_content(user_id, "join").await?;
        self.send_membership(&room_id, user_id, user_id, content, reason)
            .await?;
        Ok(room_id)
    }

    /// `POST /join` for a guest: only into a room of this server whose `m.room.guest_access`
    /// is `can_join` (a guest cannot be vouched for to other servers).
    pub async fn join_room_as_guest(
        &self,
        user_id: &UserId,
        room_id_or_alias: &str,
        reason: Option<&str>,
    ) -> ServiceResult<OwnedRoomId> {
        let refused = || {
            ServiceError::GuestAccessForbidden("Guest access is not allowed in this room".into())
        };
        let Route::Local(room_id) = self
            .route(user_id, room_id_or_alias, &[], Handshake::Join)
            .await?
        else {
            return Err(refused());
        };
        let state = self.rooms.room_state(&room_id).await?;
        let guest_access = state
            .content(&StateEventType::RoomGuestAccess, "")
            .and_then(|c| {
                c.get("guest_access")
                    .and_then(|g| g.as_str())
                    .map(str::to_owned)
            });
        if guest_access.as_deref() != Some("can_join") {
            return Err(refused());
        }
        self.join_room(user_id, room_id.as_str(), reason, &[]).await
    }

    /// `POST /knock/{roomIdOrAlias}`: asks to be let into a room whose join rule is `knock`
    /// (the auth rules refuse other rooms and room versions before 7).
    pub async fn knock_room(
        &self,
        user_id: &UserId,
        room_id_or_alias: &str,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> ServiceResult<OwnedRoomId> {
        let room_id = match self
            .route(user_id, room_id_or_alias, via, Handshake::Knock)
            .await?
        {
            Route::Local(room_id) => room_id,
            Route::Remote(room_id, servers) => {
                self.handshakes
                    .knock_remote(user_id, &room_id, &servers, reason)
                    .await?;
                return Ok(room_id);
            }
        };
        let state = self.rooms.room_state(&room_id).await?;
        match state.membership(user_id) {
            Some(Membership::Join) => {
                return Err(ServiceError::Forbidden(
                    "You are already in this room".into(),
                ))
            }
            Some(Membership::Invite) => {
                return Err(ServiceError::Forbidden(
                    "You are already invited to this room".into(),
                ))
            }
            Some(Membership::Ban) => {
                return Err(ServiceError::Forbidden(
                    "You are banned from this room".into(),
                ))
            }
            _ => {}
        }
        let content = self.rooms.member_content(user_id, "knock").await?;
        self.send_membership(&room_id, user_id, user_id, content, reason)
            .await?;
        Ok(room_id)
    }

    /// `POST /rooms/{roomId}/leave` (also rejects invites and withdraws knocks).
    pub async fn leave_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let known = RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .is_some();
        if !known || !self.rooms.server_has_joined_member(room_id).await? {
            // An invite to a room we are not in is rejected through the inviting server.
            if let Some(inviter) = self
                .handshakes
                .pending_invite_sender(user_id, room_id)
                .await?
            {
                return self
                    .handshakes
                    .reject_remote_invite(user_id, room_id, &inviter, reason)
                    .await;
            }
            if self.handshakes.has_pending_knock(user_id, room_id).await? {
                return self
                    .handshakes
                    .withdraw_remote_knock(user_id, room_id, reason)
                    .await;
            }
            if !known {
                return Err(ServiceError::Forbidden("You are not in this room".into()));
            }
        }
        let state = self.rooms.room_state(room_id).await?;
        match state.membership(user_id) {
            Some(Membership::Join) | Some(Membership::Invite) | Some(Membership::Knock) => {}
            _ => return Err(ServiceError::Forbidden("You are not in this room".into())),
        }
        self.send_membership(
            room_id,
            user_id,
            user_id,
            json!({ "membership": "leave" }),
            reason,
        )
        .await
    }

    /// `POST /rooms/{roomId}/invite`.
    pub async fn invite(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        if target.server_name() != self.ctx.config.server_name {
            let state = self.rooms.room_state(room_id).await?;
            match state.membership(target) {
                Some(Membership::Join) => {
                    return Err(ServiceError::Forbidden(format!(
                        "{target} is already in the room"
                    )))
                }
                Some(Membership::Ban) => {
                    return Err(ServiceError::Forbidden(format!(
                        "{target} is banned from the room"
                    )))
                }
                _ => {}
            }
            let mut content = json!({ "membership": "invite" });
            if let Some(reason) = reason {
                content["reason"] = json!(reason);
            }
            return self
                .handshakes
                .invite_remote(sender, room_id, target, content)
                .await;
        }
        if self
            .ctx
            .storage
            .get_user(target)
            .await?
            .is_none_or(|u| u.deactivated)
        {
            return Err(ServiceError::NotFound(format!("Unknown user {target}")));
        }
        let state = self.rooms.room_state(room_id).await?;
        match state.membership(target) {
            Some(Membership::Join) => {
                return Err(ServiceError::Forbidden(format!(
                    "{target} is already in the room"
                )))
            }
            Some(Membership::Ban) => {
                return Err(ServiceError::Forbidden(format!(
                    "{target} is banned from the room"
                )))
            }
            Some(Membership::Invite) => return Ok(()),
            _ => {}
        }
        let mut content = json!({ "membership": "invite" });
        if let Some(p) = self.ctx.storage.get_user(target).await? {
            if let Some(name) = p.displayname {
                content["displayname"] = json!(name);
            }
        }
        self.send_membership(room_id, sender, target, content, reason)
            .await
    }

    /// `POST /rooms/{roomId}/kick`.
    pub async fn kick(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        if !matches!(
            state.membership(target),
            Some(Membership::Join | Membership::Invite | Membership::Knock)
        ) {
            return Err(ServiceError::Forbidden(format!(
                "{target} is not in the room"
            )));
        }
        self.send_membership(
            room_id,
            sender,
            target,
            json!({ "membership": "leave" }),
            reason,
        )
        .await
    }

    /// `POST /rooms/{roomId}/ban`.
    pub async fn ban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        self.send_membership(
            room_id,
            sender,
            target,
            json!({ "membership": "ban" }),
            reason,
        )
        .await
    }

    /// `POST /rooms/{roomId}/unban`.
    pub async fn unban(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
    ) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        if state.membership(target) != Some(Membership::Ban) {
            return Err(ServiceError::Forbidden(format!("{target} is not banned")));
        }
        self.send_membership(
            room_id,
            sender,
            target,
            json!({ "membership": "leave" }),
            reason,
        )
        .await
    }

    /// `POST /rooms/{roomId}/forget`.
    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> ServiceResult<()> {
        let state = self.rooms.room_state(room_id).await?;
        if matches!(
            state.membership(user_id),
            Some(Membership::Join | Membership::Invite | Membership::Knock)
        ) {
            return Err(ServiceError::InvalidParam(
                "You must leave the room before forgetting it".into(),
            ));
        }
        Ok(self.ctx.storage.forget_room(user_id, room_id).await?)
    }

    /// Sets a profile field and updates the member event in every joined room.
    pub async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: Option<&str>,
    ) -> ServiceResult<()> {
        match field {
            "displayname" => self.ctx.storage.set_displayname(user_id, value).await?,
            "avatar_url" => self.ctx.storage.set_avatar_url(user_id, value).await?,
            _ => {
                return Err(ServiceError::NotFound(format!(
                    "Profile field {field} is not supported"
                )))
            }
        }
        self.propagate_profile(user_id).await
    }

    /// Clears the display name and avatar of a user deactivated with `erase` and sends their
    /// join event without them to every room they are still in, as Synapse does before the
    /// user leaves (the later leave events carry no profile either).
    pub async fn erase_profile(&self, user_id: &UserId) -> ServiceResult<()> {
        let user = self.ctx.storage.get_user(user_id).await?;
        if user.is_none_or(|u| u.displayname.is_none() && u.avatar_url.is_none()) {
            return Ok(());
        }
        self.ctx.storage.set_displayname(user_id, None).await?;
        self.ctx.storage.set_avatar_url(user_id, None).await?;
        self.propagate_profile(user_id).await
    }

    /// Sends the user's join event with their current profile to every room they are in.
    async fn propagate_profile(&self, user_id: &UserId) -> ServiceResult<()> {
        for room_id in self.rooms.joined_rooms(user_id).await? {
            let content = self.rooms.member_content(user_id, "join").await?;
            if let Err(e) = self
                .send_membership(&room_id, user_id, user_id, content, None)
                .await
            {
                tracing::warn!(%room_id, %user_id, error = %e, "profile update in room failed");
            }
        }
        Ok(())
    }
}

/// Which handshake a [`Memberships::route`] is for.
#[derive(Clone, Copy)]
enum Handshake {
    Join,
    Knock,
}

/// Where a join or knock is made.
enum Route {
    Local(OwnedRoomId),
    /// Through one of these servers, in order.
    Remote(OwnedRoomId, Vec<OwnedServerName>),
}
