//! Inbound transactions (`PUT /send/{txnId}`): EDUs that must precede the PDUs (device lists,
//! to-device) are applied first, then each PDU goes to [`Ingest`] and the remaining EDUs to
//! their subsystems (typing and receipts to ephemeral, presence, device lists to e2ee).

mod transaction;

use std::sync::Arc;

pub use transaction::{Edu, IncomingTransaction};

use crate::{
    federation::{Ingest, Outbox},
    Context, E2ee, Ephemeral, Rooms,
};

pub struct Inbound {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) e2ee: Arc<E2ee>,
    pub(crate) ephemeral: Arc<Ephemeral>,
}

impl Inbound {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        ingest: Arc<Ingest>,
        outbox: Arc<Outbox>,
        e2ee: Arc<E2ee>,
        ephemeral: Arc<Ephemeral>,
    ) -> Inbound {
        Inbound {
            ctx,
            rooms,
            ingest,
            outbox,
            e2ee,
            ephemeral,
        }
    }
}
