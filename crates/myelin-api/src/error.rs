//! The one mapping from service errors to Matrix errcodes and HTTP statuses.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use myelin_service::ServiceError;
use serde_json::{json, Value};

/// A Matrix error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    /// The `Retry-After` header, in seconds, for rate-limited requests.
    retry_after_secs: Option<u64>,
}

/// Every errcode of an error response is named in this file: handlers and extractors use the
/// constructors below (or return a `ServiceError`), never an errcode string of their own.
impl ApiError {
    fn new(status: StatusCode, errcode: &str, error: impl std::fmt::Display) -> Self {
        ApiError {
            status,
            body: json!({ "errcode": errcode, "error": error.to_string() }),
            retry_after_secs: None,
        }
    }

    pub fn unknown(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", error)
    }

    pub fn not_json(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", error)
    }

    pub fn bad_json(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", error)
    }

    pub fn invalid_param(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", error)
    }

    /// 400 `M_MISSING_PARAM`: a required query parameter is absent.
    pub fn missing_param(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", error)
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
            "Missing access token",
        )
    }

    pub fn too_large(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", error)
    }

    pub fn forbidden(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", error)
    }

    /// 404 `M_NOT_FOUND`: the thing asked for (a profile field, a well-known document) is not
    /// there.
    pub fn not_found(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", error)
    }

    /// 404 `M_UNRECOGNIZED`: an endpoint this server does not implement.
    pub fn unrecognized_endpoint() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "M_UNRECOGNIZED",
            "Unrecognized request",
        )
    }

    /// 405 `M_UNRECOGNIZED`: a known endpoint called with a method it does not have.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "M_UNRECOGNIZED",
            "Method not allowed for this endpoint",
        )
    }

    /// 400 `M_UNRECOGNIZED`: a kind of request (a login type, a profile field) this server does
    /// not know.
    pub fn unrecognized(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_UNRECOGNIZED", error)
    }

    /// 400 `M_UNKNOWN`: a request this server does not support, with no more specific errcode.
    pub fn unsupported(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", error)
    }

    /// 403 `M_GUEST_ACCESS_FORBIDDEN`.
    pub fn guest_access_forbidden(error: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN", error)
    }

    /// 408 `M_UNKNOWN`: the request body did not arrive in time.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "M_UNKNOWN",
            "The request body was not received in time",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        let (status, code) = match &e {
            E::Forbidden(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
            E::InvalidParam(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
            E::MissingParam(_) => (StatusCode::BAD_REQUEST, "M_MISSING_PARAM"),
            E::BadJson(_) => (StatusCode::BAD_REQUEST, "M_BAD_JSON"),
            E::LimitExceeded { retry_after_ms } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", &e);
                err.body["retry_after_ms"] = json!(retry_after_ms);
                err.retry_after_secs = Some(retry_after_ms.div_ceil(1000));
                return err;
            }
            E::ServerControlled(_) => (StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON"),
            E::InvalidUsername(_) => (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME"),
            E::UserInUse => (StatusCode::BAD_REQUEST, "M_USER_IN_USE"),
            E::RoomInUse(_) => (StatusCode::BAD_REQUEST, "M_ROOM_IN_USE"),
            // The spec's status and example errcode (as Synapse answers).
            E::AliasInUse(_) => (StatusCode::CONFLICT, "M_UNKNOWN"),
            E::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
            E::UnknownToken { soft_logout } => {
                let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", &e);
                err.body["soft_logout"] = json!(soft_logout);
                return err;
            }
            E::UserDeactivated => (StatusCode::FORBIDDEN, "M_USER_DEACTIVATED"),
            E::UserLocked => {
                let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "M_USER_LOCKED", &e);
                err.body["soft_logout"] = json!(true);
                return err;
            }
            E::UserSuspended(_) => (StatusCode::FORBIDDEN, "M_USER_SUSPENDED"),
            E::ThreepidInUse(_) => (StatusCode::BAD_REQUEST, "M_THREEPID_IN_USE"),
            E::ThreepidNotFound(_) => (StatusCode::BAD_REQUEST, "M_THREEPID_NOT_FOUND"),
            E::ThreepidMediumNotSupported(_) => {
                (StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
            }
            E::ThreepidAuthFailed(_) => (StatusCode::FORBIDDEN, "M_THREEPID_AUTH_FAILED"),
            E::ProfileTooLarge(_) => (StatusCode::BAD_REQUEST, "M_PROFILE_TOO_LARGE"),
            E::KeyTooLarge(_) => (StatusCode::BAD_REQUEST, "M_KEY_TOO_LARGE"),
            E::UnsupportedRoomVersion(_) => (StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"),
            E::GuestAccessForbidden(_) => (StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN"),
            E::UnknownPos => (StatusCode::BAD_REQUEST, "M_UNKNOWN_POS"),
            E::AuthRequired {
                challenge,
                stage_error,
            } => {
                let mut body = challenge.clone();
                // Spec: a failed stage adds the error to the challenge.
                if let Some(why) = stage_error {
                    body["errcode"] = json!("M_FORBIDDEN");
                    body["error"] = json!(why);
                }
                return ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    body,
                    retry_after_secs: None,
                };
            }
            E::WrongRoomKeysVersion { current_version } => {
                let mut err = ApiError::new(StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION", &e);
                err.body["current_version"] = json!(current_version);
                return err;
            }
            E::IncompatibleRoomVersion(version) => {
                let mut err =
                    ApiError::new(StatusCode::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION", &e);
                err.body["room_version"] = json!(version);
                return err;
            }
            E::CannotOverwriteMedia(_) => (StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA"),
            E::NotYetUploaded(_) => (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED"),
            E::TooManyPendingUploads(_) => (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
            E::CannotThumbnail(_) => (StatusCode::BAD_REQUEST, "M_UNKNOWN"),
            E::Exclusive(_) => (StatusCode::BAD_REQUEST, "M_EXCLUSIVE"),
            E::AppservicePing(failure) => return ping_failure(failure),
            // Spec: the content is too large for the server to serve.
            E::RemoteTooLarge(_) => (StatusCode::BAD_GATEWAY, "M_TOO_LARGE"),
            E::IdentityServer {
                status,
                errcode,
                error,
            } => {
                // A client error of the identity server is the client's; anything else is ours
                // to report as a bad gateway. A 401 or a token errcode from the identity server
                // must not read as the client's access token here being refused (clients log
                // out on those), so it becomes a 403.
                let status = match StatusCode::from_u16(*status) {
                    Ok(StatusCode::UNAUTHORIZED) => StatusCode::FORBIDDEN,
                    Ok(s) if s.is_client_error() => s,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let errcode = match errcode.as_str() {
                    "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" => "M_FORBIDDEN",
                    code => code,
                };
                return ApiError::new(status, errcode, error);
            }
            E::Remote(_) => {
                tracing::warn!(error = %e, "remote server failed");
                (StatusCode::BAD_GATEWAY, "M_UNKNOWN")
            }
            E::Storage(_) | E::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                return ApiError::unknown("Internal server error");
            }
        };
        ApiError::new(status, code, &e)
    }
}

/// The errors of `POST /appservice/{id}/ping` (spec: Client-Server API, "Application
/// services").
fn ping_failure(failure: &myelin_service::appservices::PingFailure) -> ApiError {
    use myelin_service::appservices::PingFailure as F;
    match failure {
        F::UrlNotSet => ApiError::new(
            StatusCode::BAD_REQUEST,
            "M_URL_NOT_SET",
            "The application service has no URL",
        ),
        F::BadStatus { status, body } => {
            let mut err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "M_BAD_STATUS",
                "The application service answered with an error",
            );
            err.body["status"] = json!(status);
            err.body["body"] = json!(body);
            err
        }
        F::ConnectionFailed(why) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "M_CONNECTION_FAILED",
            format!("Could not reach the application service: {why}"),
        ),
        F::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "M_CONNECTION_TIMEOUT",
            "The application service did not answer in time",
        ),
    }
}

impl From<myelin_federation::AuthError> for ApiError {
    /// Spec: Server-Server API, "Request Authentication": a request that is not correctly
    /// signed for this server gets 401 `M_UNAUTHORIZED`.
    fn from(e: myelin_federation::AuthError) -> Self {
        use myelin_federation::AuthError as E;
        match &e {
            E::Missing
            | E::Malformed(_)
            | E::WrongDestination { .. }
            | E::UnknownKey { .. }
            | E::BadSignature { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", &e)
            }
            E::BadContent(_) => ApiError::bad_json(&e),
            E::Signing(_) => {
                tracing::error!(error = %e, "internal error");
                ApiError::unknown("Internal server error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The `failures` of `/keys/signatures/upload`: each refused signature as an
/// `M_INVALID_SIGNATURE` error object.
/// The status of the page an SSO callback shows when no login happened (an HTML page for the
/// browser, without errcode): the browser's request 400, an account that cannot be made 403,
/// the provider's failure 502.
pub fn sso_failure_status(kind: myelin_service::sso::FailureKind) -> StatusCode {
    use myelin_service::sso::FailureKind as K;
    match kind {
        K::Session => StatusCode::BAD_REQUEST,
        K::Mapping => StatusCode::FORBIDDEN,
        K::Provider => StatusCode::BAD_GATEWAY,
        K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn signature_failures(failures: myelin_service::SignatureFailures) -> Value {
    failures
        .into_iter()
        .map(|(user, keys)| {
            let keys: serde_json::Map<String, Value> = keys
                .into_iter()
                .map(|(key, why)| {
                    (
                        key,
                        json!({ "errcode": "M_INVALID_SIGNATURE", "error": why }),
                    )
                })
                .collect();
            (user, Value::Object(keys))
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}
