//! What a use case can refuse with. The HTTP edge maps each variant to an errcode and status.

use myelin_room::RoomError;
use myelin_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    BadJson(String),
    /// A required field of the request body is absent.
    #[error("{0}")]
    MissingParam(String),
    /// The client used up its rate-limit budget; it may retry after this long.
    #[error("Too many requests; retry in {retry_after_ms} ms")]
    LimitExceeded { retry_after_ms: u64 },
    /// Data only the server may write (e.g. `m.fully_read` account data).
    #[error("{0}")]
    ServerControlled(String),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("User ID already taken")]
    UserInUse,
    #[error("{0}")]
    RoomInUse(String),
    /// `PUT /directory/room/{alias}` for an alias that already names a room.
    #[error("{0}")]
    AliasInUse(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("Invalid access token")]
    UnknownToken { soft_logout: bool },
    #[error("This account has been deactivated")]
    UserDeactivated,
    /// Locked by an administrator (401, the client keeps its session: `soft_logout`).
    /// `M_THREEPID_IN_USE`: the address belongs to an account already.
    #[error("{0}")]
    ThreepidInUse(String),
    /// `M_THREEPID_NOT_FOUND`: no account has the address.
    #[error("{0}")]
    ThreepidNotFound(String),
    /// `M_THREEPID_MEDIUM_NOT_SUPPORTED`: phone numbers, or e-mail without `[smtp]`.
    #[error("{0}")]
    ThreepidMediumNotSupported(String),
    /// `M_THREEPID_AUTH_FAILED`: the session was not validated.
    #[error("{0}")]
    ThreepidAuthFailed(String),
    /// `M_PROFILE_TOO_LARGE`: the change would make the profile exceed its size.
    #[error("{0}")]
    ProfileTooLarge(String),
    /// `M_KEY_TOO_LARGE`: a profile key is too long.
    #[error("{0}")]
    KeyTooLarge(String),
    #[error("This account has been locked")]
    UserLocked,
    /// Suspended by an administrator: this action is not allowed while it lasts.
    #[error("{0}")]
    UserSuspended(String),
    #[error("{0}")]
    UnsupportedRoomVersion(String),
    #[error("{0}")]
    GuestAccessForbidden(String),
    /// A sliding sync `pos` this server does not know (expired, evicted, or from before a
    /// restart): the client starts the connection afresh.
    #[error("Unknown or expired position; start the connection again")]
    UnknownPos,
    /// User-interactive auth must continue: the challenge (flows, params, session, completed
    /// stages) and, when the stage just tried failed, why.
    #[error("additional authentication required")]
    AuthRequired {
        challenge: serde_json::Value,
        stage_error: Option<String>,
    },
    /// Keys uploaded to a backup version that is not the user's current one.
    #[error("Wrong backup version; the current version is {current_version}")]
    WrongRoomKeysVersion { current_version: String },
    /// `PUT /upload/{serverName}/{mediaId}` for a media whose content is already uploaded.
    #[error("{0}")]
    CannotOverwriteMedia(String),
    /// A download of a media created but not uploaded within the client's wait.
    #[error("{0}")]
    NotYetUploaded(String),
    /// `/create` past the per-user cap on media created and not uploaded.
    #[error("{0}")]
    TooManyPendingUploads(String),
    /// A thumbnail asked of media that cannot be thumbnailed (not an image, too many pixels).
    #[error("{0}")]
    CannotThumbnail(String),
    /// Another server's media is larger than this server fetches (`media.max_remote_bytes`).
    #[error("{0}")]
    RemoteTooLarge(String),
    /// A remote server asked to join a room whose version it does not support.
    #[error("Your server does not support room version {0}")]
    IncompatibleRoomVersion(String),
    /// Another server could not be reached or gave an unusable answer.
    #[error("{0}")]
    Remote(String),
    /// An identity server refused a request made for the client: its status and Matrix error,
    /// passed on (spec: `/account/3pid/bind` "should simply proxy any errors").
    #[error("{error}")]
    IdentityServer {
        status: u16,
        errcode: String,
        error: String,
    },
    /// A user ID or alias in an appservice's exclusive namespace, asked by someone else.
    #[error("{0}")]
    Exclusive(String),
    /// `/appservice/{id}/ping` did not reach the appservice.
    #[error("ping failed: {0:?}")]
    AppservicePing(crate::appservices::queries::PingFailure),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RoomError> for ServiceError {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::Forbidden(m) => ServiceError::Forbidden(m),
            RoomError::UnsupportedVersion(v) => {
                ServiceError::UnsupportedRoomVersion(format!("Unsupported room version {v}"))
            }
            RoomError::InvalidEvent(m) => ServiceError::BadJson(m),
            RoomError::TooLarge => {
                ServiceError::TooLarge("Event is larger than 65536 bytes".into())
            }
            RoomError::BadSignature(m) => ServiceError::Forbidden(format!("Bad signature: {m}")),
            RoomError::Key(m) => ServiceError::Internal(m),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
