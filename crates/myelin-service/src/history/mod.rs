//! Reading a room's history: `/messages`, `/context`, `/event`, `/state`, `/members`,
//! `timestamp_to_event`, `/relations` and `/threads`, each through the one history-visibility
//! check (`rooms/visibility.rs`), with backfill from other servers when a reader reaches the
//! start of what we hold; timeline events carry their bundled aggregations (`relations/`).

mod read;
pub mod relations;

use std::sync::Arc;

pub use read::{ContextPage, MembersQuery, MessagesPage};

use crate::{
    federation::{Ingest, Outbox},
    Context, Rooms, Users,
};

pub struct History {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) outbox: Arc<Outbox>,
    /// For the reader's ignore list.
    pub(crate) users: Arc<Users>,
}

impl History {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        ingest: Arc<Ingest>,
        outbox: Arc<Outbox>,
        users: Arc<Users>,
    ) -> History {
        History {
            ctx,
            rooms,
            ingest,
            outbox,
            users,
        }
    }
}

#[cfg(test)]
mod tests;
