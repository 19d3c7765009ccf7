//! Federation as four subsystems, one folder each: the outbox (durable per-destination queues
//! and their workers), ingest (PDUs from other servers: checks, state resolution, backfill),
//! handshakes (the make_/send_ join, knock, leave and invite exchanges, both directions),
//! inbound (transactions and their EDUs) and the read side (what remote servers may fetch).
//! `acl` is the pure server-ACL check they share.

pub mod acl;
pub mod edu;
pub mod handshakes;
pub mod inbound;
pub mod ingest;
pub mod outbox;
pub mod read;

pub use edu::EduKind;
pub use handshakes::{Handshakes, JoinTemplate, SendJoinResponse};
pub use inbound::{Edu, Inbound, IncomingTransaction};
pub use ingest::{Ingest, IngestOutcome};
pub use outbox::Outbox;
pub use read::{
    DirectoryAnswer, FederationReads, MissingEventsRequest, StateAtEvent, StateIdsAtEvent,
    DEFAULT_MISSING_EVENTS, MAX_BACKFILL, MAX_MISSING_EVENTS,
};
