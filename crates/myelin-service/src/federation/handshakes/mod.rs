//! Handshakes: the make_/send_ exchanges of joins, knocks, leaves and invites. Inbound
//! (`inbound.rs`, `invite.rs`): templates and signed events from servers joining our rooms.
//! Outbound (`outbound.rs`, `outside.rs`): joining, knocking on and leaving rooms through a
//! server that is in them, and inviting remote users. `template.rs` checks that what a peer asks
//! us to sign is what we meant; `stripped.rs` bounds the stripped state we hand out.

mod inbound;
mod invite;
mod outbound;
mod outside;
mod stripped;
mod template;

use std::sync::Arc;

pub use inbound::{JoinTemplate, SendJoinResponse};

use crate::{
    federation::{FederationReads, Ingest},
    Context, Rooms,
};

pub struct Handshakes {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) federation_reads: Arc<FederationReads>,
}

impl Handshakes {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        ingest: Arc<Ingest>,
        federation_reads: Arc<FederationReads>,
    ) -> Handshakes {
        Handshakes {
            ctx,
            rooms,
            ingest,
            federation_reads,
        }
    }
}
