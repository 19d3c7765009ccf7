//! Media for other servers (spec: Server-Server API, "Content Repository", v1.11):
//! `/_matrix/federation/v1/media/download/{mediaId}` and `/thumbnail/{mediaId}`, answered as
//! `multipart/mixed` with an empty JSON metadata part and the file streamed as the second part.
//! Only this server's own media is served; a copy of a third server's media never is.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use myelin_service::media::{headers as media_headers, MediaFile};

use super::FederationOrigin;
use crate::{
    client::media::{
        content_type_value, open_file, security_headers, thumbnail_request, DownloadQuery,
        ThumbnailQuery,
    },
    error::ApiResult,
    extract::Query,
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/media/download/{media_id}",
            get(download),
        )
        .route(
            "/_matrix/federation/v1/media/thumbnail/{media_id}",
            get(thumbnail),
        )
}

/// GET /_matrix/federation/v1/media/download/{mediaId} (spec: Server-Server API, "Content
/// Repository").
async fn download(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(media_id): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let file = state
        .services
        .media
        .federation_download(&origin, &media_id, query.timeout_ms)
        .await?;
    multipart(file).await
}

/// GET /_matrix/federation/v1/media/thumbnail/{mediaId} (spec: Server-Server API, "Content
/// Repository").
async fn thumbnail(
    State(state): State<SharedState>,
    FederationOrigin(origin): FederationOrigin,
    Path(media_id): Path<String>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    let request = thumbnail_request(&query)?;
    let file = state
        .services
        .media
        .federation_thumbnail(&origin, &media_id, request, query.timeout_ms)
        .await?;
    multipart(file).await
}

/// The two parts: `{}` as `application/json`, then the file with its type and disposition.
async fn multipart(file: MediaFile) -> ApiResult<Response> {
    let boundary = boundary_of(&file);
    let content_type = content_type_value(&file);
    let disposition =
        media_headers::content_disposition(&file.content_type, file.filename.as_deref());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n\
         --{boundary}\r\nContent-Type: {}\r\nContent-Disposition: {disposition}\r\n\r\n",
        content_type.to_str().unwrap_or(media_headers::OCTET_STREAM),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + file.size + tail.len() as u64;
    let file_stream = open_file(&file).await?;
    let body = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file_stream)
        .chain(stream::once(async move { Ok(Bytes::from(tail)) }));
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    let multipart_type = format!("multipart/mixed; boundary={boundary}");
    if let Ok(value) = HeaderValue::from_str(&multipart_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    security_headers(headers);
    Ok(response)
}

/// A boundary that cannot occur in the file: its name is the SHA-256 of its bytes, and a file
/// holding (192 bits of) its own digest cannot be made. 55 characters, within RFC 2046's 70.
fn boundary_of(file: &MediaFile) -> String {
    let digest = file
        .path
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| name.len() >= 48 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or("0", |name| &name[..48]);
    format!("myelin-{digest}")
}
