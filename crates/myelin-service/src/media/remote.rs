//! Fetching other servers' media for our users (spec: Server-Server API, "Content Repository"):
//! `/_matrix/federation/v1/media/download` and `/thumbnail`, signed, answered as
//! `multipart/mixed` (a JSON metadata part, then the file or a `Location` to fetch it from,
//! through the private-address filter), falling back to the legacy
//! `/_matrix/media/v3/download/{server}/{id}?allow_remote=false` for servers that do not know
//! the new endpoints. Bodies stream into a media file under `media.max_remote_bytes`.
//!
//! Requests for the same remote file share one fetch ([`Inflight`]): the first starts it as a
//! task of its own (so a client going away does not cancel it for the others), the others wait
//! for its outcome, and the task leaves the map once the copy is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use myelin_federation::{ClientOptions, RequestError};
use myelin_storage::MediaContent;
use reqwest::header::{HeaderMap, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use ruma::{OwnedServerName, ServerName};

use super::files::{FileStore, FileWriter};
use super::headers;
use super::thumbnail::ThumbnailSpec;
use crate::{Context, ServiceError};

/// How long the remote server may wait for a created media to be uploaded, in milliseconds.
const REMOTE_WAIT_MS: u64 = 20_000;

/// The largest metadata part read (it is `{}` today).
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Why a remote media could not be had; `Clone`, since one outcome answers every waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    NotFound,
    TooLarge(u64),
    Remote(String),
    Internal(String),
}

impl From<FetchError> for ServiceError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::NotFound => ServiceError::NotFound("Media not found".into()),
            FetchError::TooLarge(limit) => ServiceError::RemoteTooLarge(format!(
                "The remote media is larger than the limit of {limit} bytes"
            )),
            FetchError::Remote(why) => ServiceError::Remote(why),
            FetchError::Internal(why) => ServiceError::Internal(why),
        }
    }
}

/// Which remote file: its origin, media ID and, for a thumbnail, the size asked of the origin.
pub(crate) type FetchKey = (OwnedServerName, String, Option<ThumbnailSpec>);

type SharedFetch = Shared<BoxFuture<'static, Result<MediaContent, FetchError>>>;

/// The fetches under way, by remote file.
#[derive(Clone, Default)]
pub(crate) struct Inflight(Arc<Mutex<HashMap<FetchKey, SharedFetch>>>);

impl Inflight {
    /// The outcome of the fetch of `key`: the one under way, or `fetch` started now.
    pub(crate) async fn run<F>(&self, key: FetchKey, fetch: F) -> Result<MediaContent, FetchError>
    where
        F: std::future::Future<Output = Result<MediaContent, FetchError>> + Send + 'static,
    {
        let shared = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(running) => running.clone(),
                None => {
                    let inflight = self.clone();
                    let done_key = key.clone();
                    let task = tokio::spawn(async move {
                        let outcome = fetch.await;
                        // Stored (or failed) before it leaves: a later request finds the row.
                        inflight.remove(&done_key);
                        outcome
                    });
                    let shared = async move {
                        task.await
                            .unwrap_or_else(|e| Err(FetchError::Internal(format!("fetch: {e}"))))
                    }
                    .boxed()
                    .shared();
                    map.insert(key, shared.clone());
                    shared
                }
            }
        };
        shared.await
    }

    fn remove(&self, key: &FetchKey) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// How many fetches are under way (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What a fetch needs, cloned into its task.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) ctx: Arc<Context>,
    pub(crate) files: FileStore,
    /// For `Location` redirects: built once, through the private-address filter.
    pub(crate) http: Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl Fetcher {
    fn limit(&self) -> u64 {
        self.ctx.config.media.max_remote_bytes
    }

    /// The file of `origin`'s media `media_id`, stored as a media file (not yet as a row).
    pub(crate) async fn download(
        &self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<MediaContent, FetchError> {
        let path =
            format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={REMOTE_WAIT_MS}");
        match self.ctx.federation_get_response(origin, &path, true).await {
            Ok(response) => self.read_multipart(response).await,
            Err(e) if unrecognized(&e) => {
                tracing::debug!(%origin, "no federation media endpoint; trying the legacy one");
                self.legacy_download(origin, media_id).await
            }
            Err(e) => Err(request_failed(e)),
        }
    }

    /// A thumbnail of `origin`'s media as the origin makes it.
    pub(crate) async fn thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        spec: ThumbnailSpec,
    ) -> Result<MediaContent, FetchError> {
        let path = format!(
            "/_matrix/federation/v1/media/thumbnail/{media_id}?width={}&height={}&method={}\
             &timeout_ms={REMOTE_WAIT_MS}",
            spec.width,
            spec.height,
            spec.method.as_str()
        );
        let response = self
            .ctx
            .federation_get_response(origin, &path, true)
            .await
            .map_err(request_failed)?;
        let content = self.read_multipart(response).await?;
        let is_image = content
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("image/"));
        if !is_image {
            return Err(FetchError::Remote("the thumbnail is not an image".into()));
        }
        Ok(content)
    }

    async fn legacy_download(
        &self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<MediaContent, FetchError> {
        let path = format!(
            "/_matrix/media/v3/download/{}/{media_id}?allow_remote=false&timeout_ms={REMOTE_WAIT_MS}",
            myelin_federation::path::encode_segment(origin.as_str())
        );
        let response = self
            .ctx
            .federation_get_response(origin, &path, false)
            .await
            .map_err(request_failed)?;
        self.save_response(response).await
    }

    /// The second part of a `multipart/mixed` answer, saved; a `Location` part is followed.
    async fn read_multipart(
        &self,
        response: reqwest::Response,
    ) -> Result<MediaContent, FetchError> {
        let content_type = header_str(response.headers(), CONTENT_TYPE).unwrap_or_default();
        let boundary = multipart_boundary(content_type).ok_or_else(|| {
            FetchError::Remote(format!("not a multipart/mixed answer: {content_type:?}"))
        })?;
        let limit = self.limit();
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit.saturating_add(MAX_METADATA_BYTES as u64 + 4096))
                .per_field(limit),
        );
        let mut multipart =
            multer::Multipart::with_constraints(body_stream(response), boundary, constraints);
        let mut metadata = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, limit))?
            .ok_or_else(|| FetchError::Remote("no metadata part".into()))?;
        let mut read = 0;
        while let Some(chunk) = metadata
            .chunk()
            .await
            .map_err(|e| multipart_error(e, limit))?
        {
            read += chunk.len();
            if read > MAX_METADATA_BYTES {
                return Err(FetchError::Remote("metadata part too large".into()));
            }
        }
        drop(metadata);
        let mut field = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, limit))?
            .ok_or_else(|| FetchError::Remote("no media part".into()))?;
        if let Some(location) = header_str(field.headers(), LOCATION) {
            let location = location.to_owned();
            drop(field);
            return self.follow_location(&location).await;
        }
        let labels = Labels::of(field.headers());
        let mut file = self.begin().await?;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            write(&mut file, &chunk, limit).await?;
        }
        finish(file, labels).await
    }

    /// The media at a `Location` part's URL, fetched through the private-address filter.
    async fn follow_location(&self, location: &str) -> Result<MediaContent, FetchError> {
        let url = reqwest::Url::parse(location)
            .map_err(|e| FetchError::Remote(format!("bad Location {location:?}: {e}")))?;
        self.ctx
            .egress
            .check_url(&url)
            .map_err(|e| FetchError::Remote(e.to_string()))?;
        let response = self
            .http_client()?
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Remote(format!("Location fetch failed: {e}")))?;
        if !response.status().is_success() {
            return Err(FetchError::Remote(format!(
                "Location answered {}",
                response.status()
            )));
        }
        self.save_response(response).await
    }

    fn http_client(&self) -> Result<reqwest::Client, FetchError> {
        let timeout =
            std::time::Duration::from_millis(self.ctx.federation.config.request_timeout_ms.max(1));
        let options = ClientOptions {
            timeout,
            max_redirects: 5,
            ..ClientOptions::default()
        };
        self.ctx
            .egress
            .shared_client(&self.http, &options)
            .cloned()
            .map_err(|e| FetchError::Internal(e.to_string()))
    }

    /// A whole response body saved as a media file, labelled by the response's headers.
    async fn save_response(
        &self,
        mut response: reqwest::Response,
    ) -> Result<MediaContent, FetchError> {
        let limit = self.limit();
        let declared =
            header_str(response.headers(), CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(FetchError::TooLarge(limit));
        }
        let labels = Labels::of(response.headers());
        let mut file = self.begin().await?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Remote(format!("reading the media: {e}")))?
        {
            write(&mut file, &chunk, limit).await?;
        }
        finish(file, labels).await
    }

    async fn begin(&self) -> Result<FileWriter, FetchError> {
        self.files
            .begin(self.limit())
            .await
            .map_err(|e| FetchError::Internal(e.to_string()))
    }
}

/// The type and file name a remote server gave a file.
struct Labels {
    content_type: Option<String>,
    filename: Option<String>,
}

impl Labels {
    fn of(headers: &HeaderMap) -> Labels {
        Labels {
            content_type: headers::sanitize_content_type(header_str(headers, CONTENT_TYPE)),
            filename: header_str(headers, CONTENT_DISPOSITION).and_then(disposition_filename),
        }
    }
}

async fn write(file: &mut FileWriter, chunk: &[u8], limit: u64) -> Result<(), FetchError> {
    file.write(chunk).await.map_err(|e| match e {
        ServiceError::TooLarge(_) => FetchError::TooLarge(limit),
        other => FetchError::Internal(other.to_string()),
    })
}

async fn finish(file: FileWriter, labels: Labels) -> Result<MediaContent, FetchError> {
    let (sha256, size) = file
        .finish()
        .await
        .map_err(|e| FetchError::Internal(e.to_string()))?;
    Ok(MediaContent {
        content_type: labels.content_type,
        filename: labels.filename,
        size,
        sha256,
    })
}

fn header_str(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A response body as the byte stream `multer` reads.
fn body_stream(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + 'static {
    futures_util::stream::unfold(response, |mut response| async move {
        response
            .chunk()
            .await
            .transpose()
            .map(|chunk| (chunk, response))
    })
}

/// The boundary of a `multipart/mixed` content type (`multer`'s own parser wants form-data);
/// longer than RFC 2046's 70 characters is tolerated.
pub(crate) fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty() && value.len() <= 200)
            .then(|| value.to_owned())
    })
}

fn multipart_error(e: multer::Error, limit: u64) -> FetchError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            FetchError::TooLarge(limit)
        }
        other => FetchError::Remote(format!("bad multipart answer: {other}")),
    }
}

/// Whether the server does not know the endpoint (an older server): 404 or 400
/// `M_UNRECOGNIZED`, a 404 that is not a Matrix error, 405 or 501.
fn unrecognized(e: &RequestError) -> bool {
    let RequestError::Status { status, body } = e else {
        return false;
    };
    let errcode = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errcode").and_then(|c| c.as_str()).map(str::to_owned));
    matches!(
        (status, errcode.as_deref()),
        (404 | 400, Some("M_UNRECOGNIZED")) | (404, None) | (405 | 501, _)
    )
}

fn request_failed(e: RequestError) -> FetchError {
    match &e {
        RequestError::Status { status: 404, .. } => FetchError::NotFound,
        RequestError::Status { status: 502, body } if body.contains("M_TOO_LARGE") => {
            FetchError::Remote("the remote server finds the media too large to serve".into())
        }
        _ => FetchError::Remote(e.to_string()),
    }
}

/// The file name of a `Content-Disposition` header: `filename*=utf-8''…` (RFC 5987) first, then
/// `filename="…"` or a bare token.
pub(crate) fn disposition_filename(value: &str) -> Option<String> {
    let params = value.split(';').skip(1).filter_map(|p| p.split_once('='));
    let mut plain = None;
    for (name, raw) in params {
        let (name, raw) = (name.trim().to_ascii_lowercase(), raw.trim());
        if name == "filename*" {
            let (charset, rest) = raw.split_once('\'')?;
            let (_, encoded) = rest.split_once('\'')?;
            if charset.eq_ignore_ascii_case("utf-8") {
                if let Some(decoded) = percent_decode(encoded) {
                    return Some(decoded).filter(|n| !n.is_empty());
                }
            }
        } else if name == "filename" {
            plain = Some(
                raw.trim_matches('"')
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
            );
        }
    }
    plain.filter(|n| !n.is_empty())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
