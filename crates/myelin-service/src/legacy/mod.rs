//! The deprecated endpoints the spec still defines, built on today's reads: `GET /initialSync`,
//! `GET /rooms/{roomId}/initialSync`, `GET /events` (with peeking into a `world_readable` room)
//! and `GET /events/{eventId}`. Every room read goes through [`History`], so through the one
//! history-visibility check.

mod events;
mod initial;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::{context::Context, Ephemeral, History, Rooms, Users};

pub use events::EventsRequest;

/// `/initialSync` and `/events`.
pub struct Legacy {
    ctx: Arc<Context>,
    rooms: Arc<Rooms>,
    history: Arc<History>,
    users: Arc<Users>,
    ephemeral: Arc<Ephemeral>,
}

impl Legacy {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        history: Arc<History>,
        users: Arc<Users>,
        ephemeral: Arc<Ephemeral>,
    ) -> Legacy {
        Legacy {
            ctx,
            rooms,
            history,
            users,
            ephemeral,
        }
    }
}
