//! Alias queries from remote servers (`/query/directory`).

use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, ServerName};

use crate::{FederationReads, ServiceError, ServiceResult};

/// Where an alias of ours points, and servers that can be asked to join the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryAnswer {
    pub room_id: OwnedRoomId,
    /// This server first, then every other server with a joined user, sorted.
    pub servers: Vec<OwnedServerName>,
}

impl FederationReads {
    /// `GET /_matrix/federation/v1/query/directory?room_alias=`: `NotFound` unless the alias is
    /// one of ours.
    pub async fn federation_query_directory(
        &self,
        origin: &ServerName,
        alias: &RoomAliasId,
    ) -> ServiceResult<DirectoryAnswer> {
        if alias.server_name() != self.ctx.server_name() {
            return Err(ServiceError::NotFound(format!(
                "Room alias {alias} is not on this server"
            )));
        }
        let (room_id, _) = self
            .ctx
            .storage
            .resolve_alias(alias)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("Room alias {alias} not found")))?;
        tracing::debug!(%origin, %alias, %room_id, "federation directory query");
        let state = self.rooms.room_state(&room_id).await?;
        let mut others: Vec<OwnedServerName> = state
            .joined_members()
            .iter()
            .map(|user| user.server_name().to_owned())
            .filter(|server| server != self.ctx.server_name())
            .collect();
        others.sort();
        others.dedup();
        let mut servers = vec![self.ctx.server_name().to_owned()];
        servers.extend(others);
        Ok(DirectoryAnswer { room_id, servers })
    }
}
