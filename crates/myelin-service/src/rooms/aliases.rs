//! Room aliases on this server.

use crate::rooms::Membership;
use myelin_federation::path;
use ruma::events::StateEventType;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, UserId};

use crate::{Rooms, ServiceError, ServiceResult};

impl Rooms {
    /// A room ID, or an alias resolved to one.
    pub async fn resolve_room(&self, room_id_or_alias: &str) -> ServiceResult<OwnedRoomId> {
        if room_id_or_alias.starts_with('#') {
            let alias = OwnedRoomAliasId::try_from(room_id_or_alias)
                .map_err(|e| ServiceError::InvalidParam(e.to_string()))?;
            return self.get_alias(&alias).await;
        }
        OwnedRoomId::try_from(room_id_or_alias)
            .map_err(|e| ServiceError::InvalidParam(format!("Invalid room ID or alias: {e}")))
    }

    /// A room ID, or an alias resolved to one, with the servers the alias's server says are
    /// in the room (for joining it).
    pub async fn resolve_room_with_servers(
        &self,
        room_id_or_alias: &str,
    ) -> ServiceResult<(OwnedRoomId, Vec<OwnedServerName>)> {
        if room_id_or_alias.starts_with('#') {
            let alias = OwnedRoomAliasId::try_from(room_id_or_alias)
                .map_err(|e| ServiceError::InvalidParam(e.to_string()))?;
            if alias.server_name() != self.ctx.config.server_name {
                return self.remote_alias(&alias).await;
            }
        }
        Ok((self.resolve_room(room_id_or_alias).await?, Vec::new()))
    }

    /// Asks the alias's server (`/query/directory`).
    async fn remote_alias(
        &self,
        alias: &RoomAliasId,
    ) -> ServiceResult<(OwnedRoomId, Vec<OwnedServerName>)> {
        #[derive(serde::Deserialize)]
        struct Answer {
            room_id: OwnedRoomId,
            #[serde(default)]
            servers: Vec<OwnedServerName>,
        }
        let path = path::query_directory(alias);
        let answer: Answer = self
            .ctx
            .federation_call(
                myelin_federation::Method::GET,
                alias.server_name(),
                &path,
                None,
            )
            .await
            .map_err(|e| match e {
                ServiceError::Remote(m) if m.contains("404") => {
                    ServiceError::NotFound(format!("Room alias {alias} not found"))
                }
                other => other,
            })?;
        let mut servers = answer.servers;
        servers.insert(0, alias.server_name().to_owned());
        Ok((answer.room_id, servers))
    }

    /// Refuses an alias in an application service's exclusive namespace to anyone but that
    /// appservice (`appservice`: the one whose token made the request).
    pub fn check_alias_namespace(
        &self,
        alias: &RoomAliasId,
        appservice: Option<&str>,
    ) -> ServiceResult<()> {
        match self.ctx.appservices.exclusive_alias_owner(alias) {
            Some(owner) if appservice != Some(owner.id.as_str()) => Err(ServiceError::Exclusive(
                "This room alias is reserved by an application service".into(),
            )),
            _ => Ok(()),
        }
    }

    /// `GET /directory/room/{alias}`.
    pub async fn get_alias(&self, alias: &RoomAliasId) -> ServiceResult<OwnedRoomId> {
        Ok(self.get_alias_with_servers(alias).await?.0)
    }

    /// `GET /directory/room/{alias}`: the room and servers aware of it (for a remote alias,
    /// what its server answered, that server first; for ours, this server).
    pub async fn get_alias_with_servers(
        &self,
        alias: &RoomAliasId,
    ) -> ServiceResult<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() != self.ctx.config.server_name {
            let (room_id, mut servers) = self.remote_alias(alias).await?;
            let mut seen = std::collections::HashSet::new();
            servers.retain(|s| seen.insert(s.clone()));
            return Ok((room_id, servers));
        }
        let (room_id, _) = self
            .ctx
            .storage
            .resolve_alias(alias)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("Room alias {alias} not found")))?;
        Ok((room_id, vec![self.ctx.server_name().to_owned()]))
    }

    /// `PUT /directory/room/{alias}`.
    pub async fn put_alias(
        &self,
        user_id: &UserId,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> ServiceResult<()> {
        if alias.server_name() != self.ctx.config.server_name {
            return Err(ServiceError::InvalidParam(
                "Alias must be on this server".into(),
            ));
        }
        // As Synapse's default `require_membership_for_aliases`: otherwise anyone could point
        // a name of this server at any room, private ones included.
        let state = self.room_state(room_id).await?;
        if state.membership(user_id) != Some(Membership::Join) {
            return Err(ServiceError::Forbidden(
                "You must be in the room to create an alias for it".into(),
            ));
        }
        if !self
            .ctx
            .storage
            .create_alias(alias, room_id, user_id)
            .await?
        {
            return Err(ServiceError::AliasInUse(format!(
                "Room alias {alias} already exists"
            )));
        }
        Ok(())
    }

    /// `DELETE /directory/room/{alias}`: the creator or a room moderator may delete it.
    pub async fn delete_alias(&self, user_id: &UserId, alias: &RoomAliasId) -> ServiceResult<()> {
        let (room_id, creator) = self
            .ctx
            .storage
            .resolve_alias(alias)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("Room alias {alias} not found")))?;
        if creator != user_id {
            let state = self.room_state(&room_id).await?;
            let needed = state
                .content(&StateEventType::RoomPowerLevels, "")
                .and_then(|p| p.get("state_default").and_then(|v| v.as_i64()))
                .unwrap_or(50);
            if state.user_power(user_id) < needed {
                return Err(ServiceError::Forbidden(
                    "You may not delete this alias".into(),
                ));
            }
        }
        self.ctx.storage.delete_alias(alias).await?;
        Ok(())
    }

    /// `GET /rooms/{roomId}/aliases`: members (or anyone, for world-readable rooms).
    pub async fn room_aliases(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> ServiceResult<Vec<String>> {
        let state = self.room_state(room_id).await?;
        if state.membership(user_id) != Some(Membership::Join)
            && state.history_visibility() != "world_readable"
        {
            return Err(ServiceError::Forbidden("You are not in this room".into()));
        }
        Ok(self.ctx.storage.aliases_of_room(room_id).await?)
    }
}
