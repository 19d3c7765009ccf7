//! `GET /sync`: initial and incremental, with long-polling woken by the notifier.
//!
//! By job: `pass` builds one response from everything that changed since the token, calling
//! `joined` (with `state` and `timeline`) for joined rooms, `left` for left ones, `invites` for
//! invites and knocks, and `account` for the per-user sections; `token` is the cursor.

mod account;
mod invites;
mod joined;
mod left;
mod pass;
mod state;
mod timeline;
mod token;

pub(crate) use account::presence_event;
pub use token::{pagination_token, SyncToken};
// The pieces sliding sync (`crate::sliding_sync`) shares with `/sync`.
pub(crate) use account::push_rules_event;
pub(crate) use invites::{remote_stripped_state, stripped_room_state};
pub(crate) use joined::receipt_event;
pub(crate) use timeline::{prev_batch, timeline_of};

use std::{sync::Arc, time::Duration};

use ruma::UserId;
use serde_json::Value;

use crate::{
    accounts::Authed, filter::Filter, Context, E2ee, Ephemeral, History, Rooms, ServiceError,
    ServiceResult, Users,
};

/// `/sync`: reads rooms through the history-visibility check, plus the ephemeral, e2ee and
/// per-user data of the response; it writes nothing but presence.
pub struct Syncer {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) history: Arc<History>,
    pub(crate) e2ee: Arc<E2ee>,
    pub(crate) ephemeral: Arc<Ephemeral>,
    pub(crate) users: Arc<Users>,
    /// Unread notification counts.
    pub(crate) push: Arc<crate::Push>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout_ms: u64,
    pub full_state: bool,
    pub filter: Option<String>,
    pub set_presence: Option<String>,
}

impl Syncer {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        history: Arc<History>,
        e2ee: Arc<E2ee>,
        ephemeral: Arc<Ephemeral>,
        users: Arc<Users>,
        push: Arc<crate::Push>,
    ) -> Syncer {
        Syncer {
            ctx,
            rooms,
            history,
            e2ee,
            ephemeral,
            users,
            push,
        }
    }

    pub async fn sync(&self, authed: &Authed, req: SyncRequest) -> ServiceResult<Value> {
        let since = match &req.since {
            Some(t) => Some(
                SyncToken::parse(t)
                    .ok_or_else(|| ServiceError::InvalidParam("Invalid since token".into()))?,
            ),
            None => None,
        };
        let filter = self
            .resolve_filter(&authed.user_id, req.filter.as_deref())
            .await?;
        if let Some(presence) = req.set_presence.as_deref() {
            self.update_presence_from_sync(&authed.user_id, presence)
                .await?;
        }
        let mut waiter = self.ctx.notifier.subscribe(&authed.user_id);
        let timeout =
            Duration::from_millis(req.timeout_ms.min(self.ctx.config.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (response, empty) = self
                .build_sync(authed, since, &filter, req.full_state)
                .await?;
            let must_answer = since.is_none() || req.full_state || waiter.is_closing();
            if !empty || must_answer || tokio::time::Instant::now() >= deadline {
                return Ok(response);
            }
            tokio::select! {
                _ = waiter.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The request's `filter`: inline JSON, or the ID of one the user uploaded.
    async fn resolve_filter(
        &self,
        user_id: &UserId,
        filter: Option<&str>,
    ) -> ServiceResult<Filter> {
        let value = match filter {
            None => return Ok(Filter::default()),
            Some(f) if f.trim_start().starts_with('{') => serde_json::from_str(f)
                .map_err(|e| ServiceError::BadJson(format!("Invalid filter: {e}")))?,
            Some(id) => self.users.get_filter(user_id, id).await?,
        };
        Filter::from_json(&value).map_err(|e| ServiceError::BadJson(format!("Invalid filter: {e}")))
    }
}
