//! URL previews (spec: Client-Server API, "GET /_matrix/client/v1/media/preview_url"): the
//! page's OpenGraph properties (`opengraph.rs`), its `og:image` fetched and stored as media of
//! the requesting user (so the preview names an `mxc://` URI, with the image's size and
//! dimensions), or, for a URL that is an image, that image. Off unless `media.url_previews`.
//!
//! Every request goes through the private-address filter (`ctx.egress`: the URL checked before
//! it is sent, the addresses after DNS and every redirect, at most five), under a timeout and
//! `media.url_preview_max_bytes`. Answers are cached in memory per URL for an hour; fetches
//! spend the user's `rate_limits.url_preview` budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use myelin_federation::ClientOptions;
use myelin_storage::MediaContent;
use reqwest::header::CONTENT_TYPE;
use ruma::UserId;
use serde_json::{json, Map, Value};

use super::{opengraph, Media, UploadInfo};
use crate::accounts::token::random_alnum;
use crate::context::RateAction;
use crate::{ServiceError, ServiceResult};

/// How long a preview is served from the cache.
const CACHE_TTL_MS: u64 = 60 * 60 * 1000;

/// The most URLs cached; past it the oldest goes.
const CACHE_CAPACITY: usize = 1024;

/// The whole-request timeout of one fetch (page or image).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest URL previewed.
const MAX_URL_BYTES: usize = 2048;

/// The previews made, and the filtered HTTP client they are fetched with.
#[derive(Default)]
pub(crate) struct Previews {
    cache: Mutex<HashMap<String, (u64, Value)>>,
    http: OnceLock<reqwest::Client>,
}

impl Previews {
    fn cached(&self, url: &str, now: u64) -> Option<Value> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(url)
            .filter(|(at, _)| now.saturating_sub(*at) < CACHE_TTL_MS)
            .map(|(_, value)| value.clone())
    }

    fn remember(&self, url: String, now: u64, value: Value) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (at, _)| now.saturating_sub(*at) < CACHE_TTL_MS);
            let oldest = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let (Some(oldest), true) = (oldest, cache.len() >= CACHE_CAPACITY) {
                cache.remove(&oldest);
            }
        }
        cache.insert(url, (now, value));
    }
}

impl Media {
    /// Whether URL previews are on.
    pub fn url_previews_enabled(&self) -> bool {
        self.config().url_previews
    }

    /// The preview of `url` for `user_id`: OpenGraph properties, `og:image` as an `mxc://` URI.
    pub async fn preview_url(&self, user_id: &UserId, url: &str) -> ServiceResult<Value> {
        let url = parse_url(url)?;
        let now = self.ctx.now_ms();
        if let Some(value) = self.previews.cached(url.as_str(), now) {
            return Ok(value);
        }
        self.ctx
            .check_rate(RateAction::UrlPreview, user_id.as_str())?;
        let response = self.preview_fetch(&url).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let value = if content_type.starts_with("image/") {
            let (uri, content) = self.store_image(user_id, response).await?;
            Value::Object(self.image_properties(&uri, &content).await)
        } else if content_type.starts_with("text/html")
            || content_type.starts_with("application/xhtml")
        {
            let limit = self.config().url_preview_max_bytes;
            let body = read_limited(response, limit).await?;
            let page = decode_page(&body, &content_type);
            let properties = tokio::task::spawn_blocking(move || opengraph::parse(&page))
                .await
                .map_err(|e| ServiceError::Internal(format!("parse task: {e}")))?;
            self.page_properties(user_id, &url, properties).await
        } else {
            json!({})
        };
        self.previews
            .remember(url.as_str().to_owned(), now, value.clone());
        Ok(value)
    }

    /// The page's properties as the spec's answer; `og:image` fetched and replaced by its URI
    /// and the stored image's type, size and dimensions (or left out if it cannot be had).
    async fn page_properties(
        &self,
        user_id: &UserId,
        page: &reqwest::Url,
        mut properties: BTreeMap<String, String>,
    ) -> Value {
        let image = ["og:image", "og:image:url", "og:image:secure_url"]
            .iter()
            .find_map(|name| properties.get(*name).cloned());
        properties.retain(|name, _| !name.starts_with("og:image"));
        let mut answer: Map<String, Value> = properties
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        if let Some(src) = image {
            match self.preview_image(user_id, page, &src).await {
                Ok(fields) => answer.extend(fields),
                Err(e) => tracing::debug!(%page, src, error = %e, "no preview image"),
            }
        }
        Value::Object(answer)
    }

    /// The image at `src` (relative to the page), stored; its properties.
    async fn preview_image(
        &self,
        user_id: &UserId,
        page: &reqwest::Url,
        src: &str,
    ) -> ServiceResult<Map<String, Value>> {
        let url = page
            .join(src)
            .map_err(|e| ServiceError::InvalidParam(format!("bad og:image {src:?}: {e}")))?;
        let url = parse_url(url.as_str())?;
        let response = self.preview_fetch(&url).await?;
        let is_image = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("image/"));
        if !is_image {
            return Err(ServiceError::Remote(format!("{url} is not an image")));
        }
        let (uri, content) = self.store_image(user_id, response).await?;
        Ok(self.image_properties(&uri, &content).await)
    }

    /// A GET through the private-address filter; a refused address is 403 before anything is
    /// sent.
    async fn preview_fetch(&self, url: &reqwest::Url) -> ServiceResult<reqwest::Response> {
        self.ctx
            .egress
            .check_url(url)
            .map_err(|e| ServiceError::Forbidden(format!("Cannot preview this URL: {e}")))?;
        let response = self
            .preview_client()?
            .get(url.clone())
            .send()
            .await
            .map_err(|e| ServiceError::Remote(format!("Cannot fetch {url}: {}", chain(&e))))?;
        if !response.status().is_success() {
            return Err(ServiceError::Remote(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        Ok(response)
    }

    fn preview_client(&self) -> ServiceResult<reqwest::Client> {
        let options = ClientOptions {
            timeout: FETCH_TIMEOUT,
            max_redirects: 5,
            ..ClientOptions::default()
        };
        self.ctx
            .egress
            .shared_client(&self.previews.http, &options)
            .cloned()
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// An image response stored as a new media of `user_id`: its URI and content.
    async fn store_image(
        &self,
        user_id: &UserId,
        mut response: reqwest::Response,
    ) -> ServiceResult<(String, MediaContent)> {
        let limit = self
            .config()
            .url_preview_max_bytes
            .min(self.max_upload_bytes());
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(ServiceError::Remote(format!(
                "the image is larger than {limit} bytes"
            )));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut file = self.files.begin(limit).await?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ServiceError::Remote(format!("reading the image: {}", chain(&e))))?
        {
            file.write(&chunk).await?;
        }
        let info = UploadInfo {
            content_type,
            filename: None,
        };
        let content = self.finish(file, info).await?;
        let media_id = random_alnum(24);
        self.ctx
            .storage
            .insert_media(&media_id, user_id, self.ctx.now_ms(), &content)
            .await?;
        Ok((self.mxc(&media_id), content))
    }

    /// `og:image` and what is known of it: type, size, and dimensions read from its header.
    async fn image_properties(&self, uri: &str, content: &MediaContent) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("og:image".into(), json!(uri));
        fields.insert("matrix:image:size".into(), json!(content.size));
        if let Some(content_type) = &content.content_type {
            fields.insert("og:image:type".into(), json!(content_type));
        }
        let dimensions = match self.file_path(&content.sha256) {
            Ok(path) => tokio::task::spawn_blocking(move || {
                image::ImageReader::open(path)
                    .ok()?
                    .with_guessed_format()
                    .ok()?
                    .into_dimensions()
                    .ok()
            })
            .await
            .ok()
            .flatten(),
            Err(_) => None,
        };
        if let Some((width, height)) = dimensions {
            fields.insert("og:image:width".into(), json!(width));
            fields.insert("og:image:height".into(), json!(height));
        }
        fields
    }
}

/// At most `limit` bytes of a body: a longer page is cut (its head, where the properties are,
/// is what matters).
async fn read_limited(mut response: reqwest::Response, limit: u64) -> ServiceResult<Vec<u8>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ServiceError::Remote(format!("reading the page: {}", chain(&e))))?
    {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// The page as text, in the charset its `Content-Type` or an early `<meta charset>` names
/// (UTF-8 otherwise, invalid bytes replaced).
pub(crate) fn decode_page(body: &[u8], content_type: &str) -> String {
    let declared = charset_in(content_type).or_else(|| {
        let head = String::from_utf8_lossy(&body[..body.len().min(2048)]).to_ascii_lowercase();
        charset_in(&head)
    });
    let encoding = declared
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    encoding.decode(body).0.into_owned()
}

/// The value after the first `charset=` in `text`.
fn charset_in(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("charset=")? + "charset=".len();
    let value: String = lower[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!value.is_empty()).then_some(value)
}

/// An error with its causes (reqwest's own message hides why a connection failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// `url` if it is an absolute http(s) URL of reasonable length.
fn parse_url(url: &str) -> ServiceResult<reqwest::Url> {
    let invalid = || ServiceError::InvalidParam("url must be an absolute http(s) URL".into());
    if url.len() > MAX_URL_BYTES {
        return Err(invalid());
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid());
    }
    Ok(parsed)
}
