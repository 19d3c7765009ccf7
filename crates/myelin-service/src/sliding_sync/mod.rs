//! Simplified sliding sync (MSC4186), `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`:
//! the sync Element X and matrix-sdk's `RoomListService` use. The client sends its whole
//! request each time, with the `pos` of the last response; the server works out what changed
//! since then for that connection and answers, long-polling when nothing did.
//!
//! By job: `request` and `response` are the wire types; `connection` keeps per connection
//! what was sent (in memory, bounded) and hands out `pos`; `candidates` gathers the user's
//! rooms, `bump` their bump stamps, `lists` filters, sorts and slices them; `room` builds one
//! room's update (with `required_state`'s matching), planned for all rooms first so that
//! `window` reads their timelines and counts in a few batched calls; `extensions` the
//! to-device, E2EE, account data, receipt and typing extensions; `pass` puts one response
//! together, and this module waits for news.

mod bump;
mod candidates;
mod connection;
mod extensions;
mod lists;
mod lru;
mod pass;
pub mod request;
mod required_state;
pub mod response;
mod room;
mod window;

#[cfg(test)]
mod tests;

pub use request::SlidingSyncRequest;
pub use response::SlidingSyncResponse;

use std::{sync::Arc, time::Duration};

use ruma::{OwnedDeviceId, OwnedUserId};

use self::{
    bump::BumpStamps,
    connection::{ConnectionStore, StoreLimits, Version},
};
use crate::{accounts::Authed, Context, E2ee, Ephemeral, History, Rooms, ServiceResult, Users};

/// Rooms whose bump stamp stays known in memory.
const BUMP_CACHE_CAPACITY: usize = 50_000;

/// Simplified sliding sync: reads rooms through the history-visibility check, plus the
/// ephemeral, E2EE and per-user data of the extensions; remembers per connection what it sent.
pub struct SlidingSync {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) history: Arc<History>,
    pub(crate) e2ee: Arc<E2ee>,
    pub(crate) ephemeral: Arc<Ephemeral>,
    pub(crate) users: Arc<Users>,
    /// Unread notification counts.
    pub(crate) push: Arc<crate::Push>,
    connections: ConnectionStore,
    bumps: BumpStamps,
}

impl SlidingSync {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        history: Arc<History>,
        e2ee: Arc<E2ee>,
        ephemeral: Arc<Ephemeral>,
        users: Arc<Users>,
        push: Arc<crate::Push>,
    ) -> SlidingSync {
        SlidingSync {
            ctx,
            rooms,
            history,
            e2ee,
            ephemeral,
            users,
            push,
            connections: ConnectionStore::new(StoreLimits::default()),
            bumps: BumpStamps::new(BUMP_CACHE_CAPACITY),
        }
    }

    /// One sliding sync request. `pos` is the `pos` of a previous response on this connection
    /// (400 `M_UNKNOWN_POS` if it names nothing this server remembers); without it the
    /// connection starts afresh and the answer comes at once. Otherwise it waits up to
    /// `timeout_ms` (bounded by the configuration) for something new.
    pub async fn sync(
        &self,
        authed: &Authed,
        pos: Option<&str>,
        timeout_ms: u64,
        req: SlidingSyncRequest,
    ) -> ServiceResult<SlidingSyncResponse> {
        req.validate()?;
        let device: (OwnedUserId, OwnedDeviceId) =
            (authed.user_id.clone(), authed.device_id.clone());
        let conn_id = req.conn_id.clone().unwrap_or_default();
        let prev = self.connections.resume(&device, &conn_id, pos)?;
        let mut waiter = self.ctx.notifier.subscribe(&authed.user_id);
        let timeout = Duration::from_millis(timeout_ms.min(self.ctx.config.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (mut response, next) = self.build(authed, &req, prev.as_ref()).await?;
            let answer_now = prev.is_none()
                || !response.is_empty()
                || waiter.is_closing()
                || tokio::time::Instant::now() >= deadline;
            if answer_now {
                response.pos = self.connections.record(
                    &device,
                    &conn_id,
                    prev.as_ref().map(Version::id),
                    next.stream,
                    next.typing,
                    next.state,
                );
                response.txn_id = req.txn_id;
                return Ok(response);
            }
            tokio::select! {
                _ = waiter.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
