//! Room logic: building and signing PDUs, checking them against the authorisation rules of the
//! room's version, redaction. Pure functions: no IO, events come in through closures.

mod auth;
mod builder;
mod error;
mod incoming;
mod redact;
mod resolve;
mod resolve_v1;
mod versions;

pub use auth::{auth_event_ids, check_auth};
pub use builder::{
    build_pdu, co_sign, complete_template, EventTemplate, PduContext, SigningKey, MAX_PDU_BYTES,
};
pub use error::RoomError;
pub use incoming::{
    check_received_auth, parse_received, received_event_id, rules_for_received, signing_servers,
    verify_received, AuthVerdict, PduStateMap, Received,
};
pub use redact::redact_pdu_json;
pub use resolve::{auth_chain, conflicted_subgraph, resolve_state, MAX_WALK};
pub use resolve_v1::resolve_state_v1;
pub use versions::{rules_for, SUPPORTED_VERSIONS};
