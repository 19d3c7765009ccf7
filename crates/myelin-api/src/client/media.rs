//! The content repository (spec: Client-Server API, "Content repository"): uploads
//! (`/_matrix/media/v3/upload`, `/_matrix/media/v1/create` and `PUT` to a created ID), the
//! authenticated reads of spec v1.11 (`/_matrix/client/v1/media/...`) and the legacy
//! unauthenticated ones (`/_matrix/media/v3/download` and `/thumbnail`, served only for media
//! older than `media.legacy_freeze_ms`, as the spec allows), and URL previews when configured.
//! Upload bodies stream to disk; files stream back, with the headers that keep a browser from
//! running them.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::StreamExt;
use myelin_service::media::{
    headers as media_headers, thumbnail::Method, Access, FileWriter, MediaFile, UploadInfo,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{timed_out, Auth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/media/v3/upload", post(upload))
        .route(
            "/_matrix/media/v3/upload/{server_name}/{media_id}",
            axum::routing::put(upload_to),
        )
        .route("/_matrix/media/v1/create", post(create))
        .route("/_matrix/client/v1/media/config", get(config))
        .route("/_matrix/media/v3/config", get(config))
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}",
            get(download_named),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
            get(thumbnail),
        )
        .route(
            "/_matrix/media/v3/download/{server_name}/{media_id}",
            get(legacy_download),
        )
        .route(
            "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}",
            get(legacy_download_named),
        )
        .route(
            "/_matrix/media/v3/thumbnail/{server_name}/{media_id}",
            get(legacy_thumbnail),
        )
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route("/_matrix/media/v3/preview_url", get(preview_url))
}

#[derive(Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ThumbnailQuery {
    width: Option<u32>,
    height: Option<u32>,
    method: Option<String>,
    pub(crate) timeout_ms: Option<u64>,
    /// An animated thumbnail for an animated GIF or WebP; others get the static one.
    animated: Option<bool>,
}

#[derive(Deserialize)]
struct PreviewQuery {
    url: Option<String>,
    /// The time the client would like the preview as of; previews are of now (the spec lets
    /// the server answer with a newer one).
    #[allow(dead_code)]
    ts: Option<u64>,
}

/// GET /_matrix/client/v1/media/preview_url (and the deprecated /_matrix/media/v3/preview_url):
/// 404 `M_UNRECOGNIZED` unless `media.url_previews` is on.
async fn preview_url(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(query): Query<PreviewQuery>,
) -> ApiResult<Json<Value>> {
    let media = &state.services.media;
    if !media.url_previews_enabled() {
        return Err(ApiError::unrecognized_endpoint());
    }
    let url = query
        .url
        .ok_or_else(|| ApiError::missing_param("url is required"))?;
    Ok(Json(media.preview_url(&authed.user_id, &url).await?))
}

/// POST /_matrix/media/v3/upload: the body is the file.
async fn upload(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let media = &state.services.media;
    let file = receive(media, &authed.user_id, &headers, body).await?;
    let info = upload_info(&headers, query.filename);
    let uri = media.upload(&authed.user_id, file, info).await?;
    Ok(Json(json!({ "content_uri": uri })))
}

/// POST /_matrix/media/v1/create: a media ID whose content comes later.
async fn create(State(state): State<SharedState>, Auth(authed): Auth) -> ApiResult<Json<Value>> {
    let (uri, expires) = state.services.media.create(&authed.user_id).await?;
    Ok(Json(
        json!({ "content_uri": uri, "unused_expires_at": expires }),
    ))
}

/// PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a created media ID.
async fn upload_to(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let media = &state.services.media;
    // Refused before a byte is read when it can only fail.
    media
        .check_upload_to(&authed.user_id, &server_name, &media_id)
        .await?;
    let file = receive(media, &authed.user_id, &headers, body).await?;
    let info = upload_info(&headers, query.filename);
    media
        .upload_to(&authed.user_id, &server_name, &media_id, file, info)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v1/media/config (and the legacy /_matrix/media/v3/config).
async fn config(State(state): State<SharedState>, Auth(_): Auth) -> Json<Value> {
    Json(json!({ "m.upload.size": state.services.media.max_upload_bytes() }))
}

/// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}.
async fn download(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    serve_download(
        &state,
        &server_name,
        &media_id,
        None,
        query,
        Access::Authenticated,
    )
    .await
}

/// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}.
async fn download_named(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let name = Some(file_name);
    serve_download(
        &state,
        &server_name,
        &media_id,
        name,
        query,
        Access::Authenticated,
    )
    .await
}

/// GET /_matrix/media/v3/download/{serverName}/{mediaId} (deprecated, unauthenticated).
async fn legacy_download(
    State(state): State<SharedState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    serve_download(&state, &server_name, &media_id, None, query, Access::Legacy).await
}

/// GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName} (deprecated).
async fn legacy_download_named(
    State(state): State<SharedState>,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let name = Some(file_name);
    serve_download(&state, &server_name, &media_id, name, query, Access::Legacy).await
}

/// GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}.
async fn thumbnail(
    State(state): State<SharedState>,
    Auth(_): Auth,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    serve_thumbnail(
        &state,
        &server_name,
        &media_id,
        query,
        Access::Authenticated,
    )
    .await
}

/// GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated, unauthenticated).
async fn legacy_thumbnail(
    State(state): State<SharedState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(query): Query<ThumbnailQuery>,
) -> ApiResult<Response> {
    serve_thumbnail(&state, &server_name, &media_id, query, Access::Legacy).await
}

async fn serve_download(
    state: &SharedState,
    server_name: &str,
    media_id: &str,
    file_name: Option<String>,
    query: DownloadQuery,
    access: Access,
) -> ApiResult<Response> {
    let mut file = state
        .services
        .media
        .download(server_name, media_id, query.timeout_ms, access)
        .await?;
    if file_name.is_some() {
        file.filename = file_name;
    }
    serve_file(file).await
}

async fn serve_thumbnail(
    state: &SharedState,
    server_name: &str,
    media_id: &str,
    query: ThumbnailQuery,
    access: Access,
) -> ApiResult<Response> {
    let request = thumbnail_request(&query)?;
    let file = state
        .services
        .media
        .thumbnail(server_name, media_id, request, query.timeout_ms, access)
        .await?;
    serve_file(file).await
}

/// The size and method a thumbnail request asks for, validated.
pub(crate) fn thumbnail_request(query: &ThumbnailQuery) -> ApiResult<(u32, u32, Method, bool)> {
    let (Some(width), Some(height)) = (query.width, query.height) else {
        return Err(ApiError::missing_param("width and height are required"));
    };
    let max = myelin_service::media::thumbnail::MAX_DIMENSION;
    if width == 0 || height == 0 || width > max || height > max {
        return Err(ApiError::invalid_param(format!(
            "width and height must be between 1 and {max}"
        )));
    }
    let method = match query.method.as_deref() {
        None => Method::Scale,
        Some(method) => Method::parse(method)
            .ok_or_else(|| ApiError::invalid_param("method must be crop or scale"))?,
    };
    Ok((width, height, method, query.animated.unwrap_or(false)))
}

/// Streams the upload body into a new media file.
async fn receive(
    media: &myelin_service::Media,
    user_id: &ruma::UserId,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<FileWriter> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut file = media.begin_upload(user_id, declared).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if timed_out(&e) {
                ApiError::body_timeout()
            } else {
                ApiError::unsupported(format!("Could not read body: {e}"))
            }
        })?;
        file.write(&chunk).await?;
    }
    Ok(file)
}

fn upload_info(headers: &HeaderMap, filename: Option<String>) -> UploadInfo {
    UploadInfo {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        filename,
    }
}

/// The buffer a served file is read through.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// The file opened for streaming.
pub(crate) async fn open_file(
    file: &MediaFile,
) -> ApiResult<tokio_util::io::ReaderStream<tokio::fs::File>> {
    let handle = tokio::fs::File::open(&file.path).await.map_err(|e| {
        tracing::error!(error = %e, path = %file.path.display(), "media file missing");
        ApiError::unknown("Internal server error")
    })?;
    // Read in large chunks: the default 4 KiB made a 10 MiB download 2,560 body frames, and
    // Myelin's downloads slower than Synapse's in `myelin-bench upload`.
    Ok(tokio_util::io::ReaderStream::with_capacity(
        handle,
        READ_CHUNK_BYTES,
    ))
}

/// The `Content-Type` of a served file, as a header value.
pub(crate) fn content_type_value(file: &MediaFile) -> HeaderValue {
    HeaderValue::from_str(&file.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static(media_headers::OCTET_STREAM))
}

/// The file's bytes with its type, disposition and the security headers.
async fn serve_file(file: MediaFile) -> ApiResult<Response> {
    let body = Body::from_stream(open_file(&file).await?);
    let disposition =
        media_headers::content_disposition(&file.content_type, file.filename.as_deref());
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type_value(&file));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Ok(disposition) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    security_headers(headers);
    Ok(response)
}

/// The headers every media response carries, so a browser opening it runs nothing.
pub(crate) fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(media_headers::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
}
