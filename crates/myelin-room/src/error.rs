//! Errors of the room logic.

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// The event is not allowed by the room's authorisation rules.
    #[error("{0}")]
    Forbidden(String),
    /// The room version is unknown or unsupported.
    #[error("unsupported room version {0}")]
    UnsupportedVersion(String),
    /// The event's content does not have the shape its type needs.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The signed PDU exceeds 65,536 bytes.
    #[error("event is too large")]
    TooLarge,
    /// A required signature is missing or does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("signing key error: {0}")]
    Key(String),
}
