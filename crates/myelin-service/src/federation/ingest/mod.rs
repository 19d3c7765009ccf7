//! Ingest: PDUs from other servers. Each is checked (signatures, hashes, auth rules against its
//! own state and the current state), missing history and state are fetched from the server
//! that sent it before the room is locked, forks are resolved, and the result goes through the
//! same commit → publish path as local events. Backfill fills history for readers.

mod backfill;
mod fetch;
mod pdu;
mod state;

use std::sync::Arc;

pub use pdu::IngestOutcome;

use crate::{federation::Outbox, Context, Rooms};

pub struct Ingest {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) outbox: Arc<Outbox>,
}

impl Ingest {
    pub fn new(ctx: Arc<Context>, rooms: Arc<Rooms>, outbox: Arc<Outbox>) -> Ingest {
        Ingest { ctx, rooms, outbox }
    }
}
