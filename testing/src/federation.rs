//! Small helpers for the federation test files: server names, canonical JSON objects and the
//! wall clock that signed events and key queries are stamped with.

use myelin_federation::ruma::{CanonicalJsonObject, OwnedServerName};
use serde_json::Value;

/// `s` as a server name; panics if it is not one.
pub fn name(s: &str) -> OwnedServerName {
    s.try_into().expect("valid server name")
}

/// `value` as a canonical JSON object; panics if it is not one.
pub fn object(value: &Value) -> CanonicalJsonObject {
    serde_json::from_value(value.clone()).expect("canonical JSON object")
}

/// Milliseconds since the Unix epoch, for `origin_server_ts` and key validity.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}
