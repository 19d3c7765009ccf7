//! The read side of the server-server API: what a remote server may fetch from our rooms
//! (single events, the state at an event, auth chains, history, timestamps) and alias queries,
//! with each room's server ACL and history visibility applied to the requesting server.

mod access;
mod directory;
mod events;
mod history;

use std::sync::Arc;

pub use directory::DirectoryAnswer;
pub use events::{StateAtEvent, StateIdsAtEvent};
pub use history::{MissingEventsRequest, DEFAULT_MISSING_EVENTS, MAX_BACKFILL, MAX_MISSING_EVENTS};

use crate::{Context, Rooms};

pub struct FederationReads {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
}

impl FederationReads {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>) -> FederationReads {
        FederationReads { ctx, rooms }
    }
}
