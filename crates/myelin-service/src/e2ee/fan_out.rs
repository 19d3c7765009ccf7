//! Which other servers a client's to-device messages and key requests may reach.
//!
//! One request could otherwise name thousands of invented servers and make us queue, resolve
//! and contact every one. Three bounds apply: a cap on the distinct servers one request names
//! (`resources.max_servers_per_request`), a budget per user of servers named over time
//! (`rate_limits.remote_fan_out`), and only servers that share a room with the requesting user
//! are contacted at all; a client has no business with the devices of a server none of its rooms
//! involves.

use crate::rooms::Membership;
use std::collections::BTreeSet;

use ruma::{OwnedServerName, ServerName, UserId};

use crate::{E2ee, RateAction, ServiceError, ServiceResult};

impl E2ee {
    /// Refuses a request of `user_id` naming more distinct other servers than configured, and
    /// spends one token of their fan-out budget per server it names (429 when it is used up).
    pub(crate) fn check_fan_out<'a>(
        &self,
        user_id: &UserId,
        servers: impl IntoIterator<Item = &'a ServerName>,
    ) -> ServiceResult<()> {
        let own = self.ctx.server_name();
        let named: BTreeSet<&ServerName> = servers.into_iter().filter(|s| *s != own).collect();
        let cap = self.ctx.config.resources.max_servers_per_request;
        if named.len() > cap {
            return Err(ServiceError::InvalidParam(format!(
                "The request names users on {} other servers; at most {cap} are allowed in one request",
                named.len()
            )));
        }
        if named.is_empty() {
            return Ok(());
        }
        let cost = u32::try_from(named.len()).unwrap_or(u32::MAX);
        self.ctx
            .rate_limiter
            .check_cost(
                RateAction::RemoteFanOut,
                user_id.as_str(),
                self.ctx.now_ms(),
                cost,
            )
            .map_err(|retry_after_ms| ServiceError::LimitExceeded { retry_after_ms })
    }

    /// The other servers with a joined or invited member in a room `user_id` is joined to,
    /// blocked servers left out: the only ones their to-device messages and key requests reach.
    pub(crate) async fn servers_sharing_rooms(
        &self,
        user_id: &UserId,
    ) -> ServiceResult<BTreeSet<OwnedServerName>> {
        let own = self.ctx.server_name();
        let mut servers = BTreeSet::new();
        for room_id in self.rooms.joined_rooms(user_id).await? {
            let state = self.rooms.room_state(&room_id).await?;
            servers.extend(
                state
                    .members_with(&[Membership::Join, Membership::Invite])
                    .iter()
                    .map(|u| u.server_name())
                    .filter(|s| *s != own && !self.ctx.is_blocked_server(s.as_str()))
                    .map(ToOwned::to_owned),
            );
        }
        Ok(servers)
    }
}

/// The `failures` entry of a server that shares no room with the requesting user.
pub(crate) fn no_shared_room(server: &ServerName) -> String {
    format!("{server} was not contacted: it shares no room with you")
}
