//! The read side of the server-server API as use cases: what a remote server may fetch from our
//! rooms (single events, the state at an event, auth chains, history) and alias queries, with
//! each room's server ACL and history visibility applied to the requesting server.

mod access;
pub mod acl;
mod backfill;
mod directory;
mod events;
mod history;
mod ingest;
mod invite;
mod membership;
mod outside;
mod receive;
mod remote;
pub(crate) mod sender;
mod stripped;
mod template;

pub use directory::DirectoryAnswer;
pub use events::{StateAtEvent, StateIdsAtEvent};
pub use history::{MissingEventsRequest, DEFAULT_MISSING_EVENTS, MAX_BACKFILL, MAX_MISSING_EVENTS};
pub use ingest::IngestOutcome;
pub use membership::{JoinTemplate, SendJoinResponse};
pub use receive::{Edu, IncomingTransaction};
