//! Conversions every backend needs between stored values and the storage types: parsing stored
//! identifiers and JSON (a failure means corrupt data), integer range checks, and the time rows
//! are stamped with.

use std::fmt::Display;

use crate::{StorageError, StorageResult};

/// Stored data that does not parse.
pub fn corrupt(what: &str, err: impl Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {err}"))
}

/// Parses a stored identifier (user, room, event ID, ...).
pub fn parse_id<T>(value: String, what: &str) -> StorageResult<T>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    T::try_from(value).map_err(|e| corrupt(what, e))
}

pub fn parse_opt_id<T>(value: Option<String>, what: &str) -> StorageResult<Option<T>>
where
    T: TryFrom<String>,
    T::Error: Display,
{
    value.map(|v| parse_id(v, what)).transpose()
}

pub fn parse_json(value: &str, what: &str) -> StorageResult<serde_json::Value> {
    serde_json::from_str(value).map_err(|e| corrupt(what, e))
}

/// An unsigned input value as a signed 64-bit database integer.
pub fn to_i64(value: u64, what: &str) -> StorageResult<i64> {
    i64::try_from(value).map_err(|_| StorageError::Backend(format!("{what} out of range: {value}")))
}

pub fn opt_to_i64(value: Option<u64>, what: &str) -> StorageResult<Option<i64>> {
    value.map(|v| to_i64(v, what)).transpose()
}

/// A stored integer that must be non-negative.
pub fn to_u64(value: i64, what: &str) -> StorageResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(what, format!("negative value {value}")))
}

pub fn opt_to_u64(value: Option<i64>, what: &str) -> StorageResult<Option<u64>> {
    value.map(|v| to_u64(v, what)).transpose()
}

/// A `usize` limit as a database integer (saturating).
pub fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The current time in milliseconds since the Unix epoch, for rows that record when they were
/// written (the traits pass no time for those).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
