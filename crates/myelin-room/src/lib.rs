//! Room logic: building and signing PDUs, checking them against the authorisation rules of the
//! room's version, redaction. Pure functions: no IO, events come in through closures.

mod auth;
mod builder;
mod error;
mod redact;
mod versions;

pub use auth::{auth_event_ids, check_auth};
pub use builder::{build_pdu, EventTemplate, PduContext, SigningKey};
pub use error::RoomError;
pub use redact::redact_pdu_json;
pub use versions::{rules_for, SUPPORTED_VERSIONS};
