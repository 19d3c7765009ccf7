//! The media repository (spec: Client-Server API, "Content repository"): uploads at once
//! (`/upload`) or in two steps (`/create`, then `PUT /upload/{server}/{id}`), downloads and
//! thumbnails of this server's media, and of other servers' media, fetched over federation and
//! cached (`remote.rs` fetches, `cached.rs` serves).
//!
//! The bytes go to disk as they arrive (`files.rs`: hashed, synced and renamed into place)
//! before the metadata row commits, so a 200 means the file is durable. A download of a media
//! created but not uploaded yet waits for the upload up to the client's `timeout_ms`. Images get
//! the standard thumbnails right after upload (`thumbnail.rs`), any other size is answered with
//! the nearest standard one, made on demand when missing. Decoding runs on blocking threads, at
//! most [`THUMBNAIL_CONCURRENCY`] at once.
//!
//! Uploads count against a per-user storage quota and rate limit; administrators delete,
//! quarantine (404 everywhere) and expire media from the command line (`ops.rs`).

mod cached;
mod config;
pub(crate) mod files;
pub mod headers;
mod opengraph;
mod ops;
mod preview;
mod remote;
pub mod thumbnail;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use myelin_storage::{MediaContent, MediaRecord, MediaUploadOutcome, ThumbnailRecord};
use ruma::{ServerName, UserId};
use tokio::sync::{Notify, Semaphore};

use crate::accounts::token::random_alnum;
use crate::{Context, RateAction, ServiceError, ServiceResult};

pub use config::MediaConfig;
pub use files::FileWriter;
pub use ops::{MxcRef, Removed};
pub use thumbnail::Method;
use thumbnail::{ThumbnailError, ThumbnailSpec};

/// Thumbnails decoded at once (each may hold an image of up to 32 megapixels in memory).
pub const THUMBNAIL_CONCURRENCY: usize = 2;

/// The longest a download waits for a media to be uploaded, whatever the client asks.
pub const MAX_WAIT_MS: u64 = 60_000;

/// The wait when the client names none (the spec's default).
pub const DEFAULT_WAIT_MS: u64 = 20_000;

/// A file to serve: where it is and how to label it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub path: PathBuf,
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
}

/// What the uploader said about the file.
#[derive(Debug, Clone, Default)]
pub struct UploadInfo {
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// Which API a read comes through: the unauthenticated legacy one serves only media older than
/// `legacy_freeze_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Authenticated,
    Legacy,
    /// Another server, through `/_matrix/federation/v1/media/*`: only this server's media.
    Federation,
}

pub struct Media {
    ctx: Arc<Context>,
    files: files::FileStore,
    /// Woken after each upload of a created media, for downloads waiting for it.
    uploaded: Notify,
    thumbnailing: Arc<Semaphore>,
    /// Fetches of remote media under way, shared by the requests waiting for them.
    inflight: remote::Inflight,
    fetcher: remote::Fetcher,
    previews: preview::Previews,
}

/// Whose thumbnails: a media of this server, or a remote one (origin, media ID).
pub(crate) enum Owner<'a> {
    Local(&'a str),
    Remote(&'a str, &'a str),
}

impl Media {
    pub fn new(ctx: Arc<Context>) -> Media {
        let root = ctx
            .config
            .media
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("myelin-data/media"));
        let files = files::FileStore::new(root);
        let fetcher = remote::Fetcher {
            ctx: ctx.clone(),
            files: files.clone(),
            http: Arc::default(),
        };
        Media {
            ctx,
            files,
            uploaded: Notify::new(),
            thumbnailing: Arc::new(Semaphore::new(THUMBNAIL_CONCURRENCY)),
            inflight: remote::Inflight::default(),
            fetcher,
            previews: preview::Previews::default(),
        }
    }

    fn config(&self) -> &MediaConfig {
        &self.ctx.config.media
    }

    /// The largest upload accepted (`m.upload.size`).
    pub fn max_upload_bytes(&self) -> u64 {
        self.config().max_upload_bytes
    }

    /// A file to stream `user_id`'s upload into, after the upload rate limit (429
    /// `M_LIMIT_EXCEEDED`); refused at once if the declared length is over the size limit (413
    /// `M_TOO_LARGE`) or over what is left of the user's storage quota (403 `M_FORBIDDEN`), and
    /// as soon as the bytes pass either otherwise.
    ///
    /// The quota is checked against the uploads stored when this starts: uploads running at the
    /// same time may together pass it by at most one upload each.
    pub async fn begin_upload(
        &self,
        user_id: &UserId,
        declared_length: Option<u64>,
    ) -> ServiceResult<FileWriter> {
        self.ctx
            .check_rate(RateAction::MediaUpload, user_id.as_str())?;
        let limit = self.max_upload_bytes();
        if declared_length.is_some_and(|len| len > limit) {
            return Err(too_large(limit));
        }
        let left = match self.config().max_bytes_per_user {
            Some(quota) => {
                let used = self.ctx.storage.media_bytes_of_user(user_id).await?;
                let left = quota.saturating_sub(used);
                if declared_length.is_some_and(|len| len > left) {
                    return Err(files::quota_exceeded(quota));
                }
                Some((left, quota))
            }
            None => None,
        };
        let mut file = self.files.begin(limit).await?;
        if let Some((left, quota)) = left {
            file.limit_to_quota(left, quota);
        }
        Ok(file)
    }

    /// Removes the temporary files of uploads a crash cut short; the serving process calls it
    /// once at start.
    pub fn clear_unfinished_uploads(&self) {
        self.files.clear_unfinished();
    }

    /// `POST /upload`: stores the file under a new media ID; its `mxc://` URI.
    pub async fn upload(
        self: &Arc<Self>,
        user_id: &UserId,
        file: FileWriter,
        info: UploadInfo,
    ) -> ServiceResult<String> {
        let content = self.finish(file, info).await?;
        let media_id = random_alnum(24);
        let now = self.ctx.now_ms();
        self.ctx
            .storage
            .insert_media(&media_id, user_id, now, &content)
            .await?;
        self.pregenerate_thumbnails(&media_id, &content);
        Ok(self.mxc(&media_id))
    }

    /// `POST /create`: a media ID to upload later; its URI and when it expires unused.
    pub async fn create(&self, user_id: &UserId) -> ServiceResult<(String, u64)> {
        let media_id = random_alnum(24);
        let now = self.ctx.now_ms();
        let expires = now.saturating_add(self.config().unused_expires_after_ms);
        let created = self
            .ctx
            .storage
            .create_pending_media(
                &media_id,
                user_id,
                now,
                expires,
                self.config().max_pending_uploads_per_user,
            )
            .await?;
        if !created {
            return Err(ServiceError::TooManyPendingUploads(
                "Too many media created and not uploaded yet".into(),
            ));
        }
        Ok((self.mxc(&media_id), expires))
    }

    /// Refuses an upload to a created media ID before its bytes are read: the same checks as
    /// [`Media::upload_to`] makes in its transaction.
    pub async fn check_upload_to(
        &self,
        user_id: &UserId,
        server_name: &str,
        media_id: &str,
    ) -> ServiceResult<()> {
        let media = self.local_media(server_name, media_id).await?;
        let outcome = myelin_storage::upload_outcome(&media, user_id, self.ctx.now_ms());
        upload_result(outcome)
    }

    /// `PUT /upload/{serverName}/{mediaId}`: the content of a created media ID.
    pub async fn upload_to(
        self: &Arc<Self>,
        user_id: &UserId,
        server_name: &str,
        media_id: &str,
        file: FileWriter,
        info: UploadInfo,
    ) -> ServiceResult<()> {
        self.check_upload_to(user_id, server_name, media_id).await?;
        let content = self.finish(file, info).await?;
        let outcome = self
            .ctx
            .storage
            .complete_media_upload(media_id, user_id, self.ctx.now_ms(), &content)
            .await?;
        upload_result(outcome)?;
        self.uploaded.notify_waiters();
        self.pregenerate_thumbnails(media_id, &content);
        Ok(())
    }

    /// The file of a media, waiting up to `timeout_ms` for a created one to be uploaded.
    pub async fn download(
        &self,
        server_name: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> ServiceResult<MediaFile> {
        self.refuse_quarantined(server_name, media_id).await?;
        let content = if self.is_remote(server_name, access) {
            self.remote_content(server_name, media_id, access).await?
        } else {
            self.uploaded_media(server_name, media_id, timeout_ms, access)
                .await?
                .1
        };
        Ok(MediaFile {
            path: self.file_path(&content.sha256)?,
            content_type: content
                .content_type
                .unwrap_or_else(|| headers::OCTET_STREAM.to_owned()),
            filename: content.filename,
            size: content.size,
        })
    }

    /// A thumbnail of a media: the stored standard size nearest the request, made now if
    /// missing.
    pub async fn thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        (width, height, method, animated): (u32, u32, Method, bool),
        timeout_ms: Option<u64>,
        access: Access,
    ) -> ServiceResult<MediaFile> {
        self.refuse_quarantined(server_name, media_id).await?;
        let spec = thumbnail::choose(width, height, method);
        let record = if self.is_remote(server_name, access) {
            self.remote_thumbnail(server_name, media_id, (spec, animated), access)
                .await?
        } else {
            let request = (spec, animated);
            self.local_thumbnail(server_name, media_id, request, timeout_ms, access)
                .await?
        };
        Ok(MediaFile {
            path: self.file_path(&record.sha256)?,
            content_type: record.content_type,
            filename: None,
            size: record.size,
        })
    }

    /// `GET /_matrix/federation/v1/media/download/{mediaId}`: a media of this server for
    /// another one (never a copy of a third server's media).
    pub async fn federation_download(
        &self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> ServiceResult<MediaFile> {
        self.ctx.refuse_blocked(origin)?;
        let ours = self.ctx.config.server_name.clone();
        self.download(ours.as_str(), media_id, timeout_ms, Access::Federation)
            .await
    }

    /// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`.
    pub async fn federation_thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        request: (u32, u32, Method, bool),
        timeout_ms: Option<u64>,
    ) -> ServiceResult<MediaFile> {
        self.ctx.refuse_blocked(origin)?;
        let ours = self.ctx.config.server_name.clone();
        self.thumbnail(
            ours.as_str(),
            media_id,
            request,
            timeout_ms,
            Access::Federation,
        )
        .await
    }

    async fn local_thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        (spec, animated): (ThumbnailSpec, bool),
        timeout_ms: Option<u64>,
        access: Access,
    ) -> ServiceResult<ThumbnailRecord> {
        let (_, content) = self
            .uploaded_media(server_name, media_id, timeout_ms, access)
            .await?;
        if animated {
            let owner = Owner::Local(media_id);
            if let Some(record) = self.animated_thumbnail(&owner, &content, spec).await? {
                return Ok(record);
            }
        }
        let stored = self.ctx.storage.thumbnails(media_id).await?;
        match stored.into_iter().find(|t| cached::matches_spec(t, spec)) {
            Some(record) => Ok(record),
            None => {
                self.make_thumbnail(&Owner::Local(media_id), &content, spec)
                    .await
            }
        }
    }

    /// The animated thumbnail of an animated GIF or WebP (stored, or made now), or `None` when
    /// the media is not animated or cannot be, so the static thumbnail answers (as the spec
    /// asks for `animated=true` on media that cannot be animated).
    pub(crate) async fn animated_thumbnail(
        &self,
        owner: &Owner<'_>,
        content: &MediaContent,
        spec: ThumbnailSpec,
    ) -> ServiceResult<Option<ThumbnailRecord>> {
        if !thumbnail::is_animatable(content.content_type.as_deref()) {
            return Ok(None);
        }
        let stored = match owner {
            Owner::Local(media_id) => self.ctx.storage.thumbnails(media_id).await?,
            Owner::Remote(origin, media_id) => {
                self.ctx.storage.remote_thumbnails(origin, media_id).await?
            }
        };
        let found = stored.into_iter().find(|t| {
            t.animated
                && t.width == spec.width
                && t.height == spec.height
                && t.method == spec.method.as_str()
        });
        if found.is_some() {
            return Ok(found);
        }
        let bytes = {
            let _permit = self.thumbnail_permit().await?;
            let bytes = tokio::fs::read(self.file_path(&content.sha256)?)
                .await
                .map_err(|e| ServiceError::Internal(format!("read media file: {e}")))?;
            tokio::task::spawn_blocking(move || thumbnail::make_animated(&bytes, spec))
                .await
                .map_err(|e| ServiceError::Internal(format!("thumbnail task: {e}")))?
        };
        let thumb = match bytes {
            Ok(Some(thumb)) => thumb,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "no animated thumbnail; a static one answers");
                return Ok(None);
            }
        };
        let (sha256, size) = self.files.write_all(&thumb.bytes).await?;
        let record = ThumbnailRecord {
            width: spec.width,
            height: spec.height,
            method: spec.method.as_str().to_owned(),
            animated: true,
            content_type: thumb.content_type.to_owned(),
            size,
            sha256,
        };
        self.put_thumbnail_of(owner, &record).await?;
        Ok(Some(record))
    }

    async fn thumbnail_permit(&self) -> ServiceResult<tokio::sync::OwnedSemaphorePermit> {
        self.thumbnailing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Internal("thumbnailing closed".into()))
    }

    async fn put_thumbnail_of(
        &self,
        owner: &Owner<'_>,
        record: &ThumbnailRecord,
    ) -> ServiceResult<()> {
        match owner {
            Owner::Local(media_id) => self.ctx.storage.put_thumbnail(media_id, record).await?,
            Owner::Remote(origin, media_id) => {
                self.ctx
                    .storage
                    .put_remote_thumbnail(origin, media_id, record)
                    .await?
            }
        }
        Ok(())
    }

    /// Whether a read is of another server's media (never for another server's request).
    fn is_remote(&self, server_name: &str, access: Access) -> bool {
        server_name != self.ctx.config.server_name.as_str() && access != Access::Federation
    }

    fn mxc(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.ctx.config.server_name)
    }

    fn file_path(&self, sha256: &str) -> ServiceResult<PathBuf> {
        self.files
            .path_of(sha256)
            .ok_or_else(|| ServiceError::Internal(format!("bad media digest {sha256:?}")))
    }

    async fn finish(&self, file: FileWriter, info: UploadInfo) -> ServiceResult<MediaContent> {
        let (sha256, size) = file.finish().await?;
        Ok(MediaContent {
            content_type: headers::sanitize_content_type(info.content_type.as_deref()),
            filename: info.filename.filter(|name| !name.is_empty()),
            size,
            sha256,
        })
    }

    /// A media of this server, known and not expired unused.
    async fn local_media(&self, server_name: &str, media_id: &str) -> ServiceResult<MediaRecord> {
        if server_name != self.ctx.config.server_name.as_str() || !valid_media_id(media_id) {
            return Err(not_found());
        }
        self.ctx
            .storage
            .get_media(media_id)
            .await?
            .ok_or_else(not_found)
    }

    /// The media and its content, waiting for the upload of a created one.
    async fn uploaded_media(
        &self,
        server_name: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> ServiceResult<(MediaRecord, MediaContent)> {
        let wait = timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            // Registered before the read, so an upload between the read and the wait wakes it.
            let notified = self.uploaded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let media = self.local_media(server_name, media_id).await?;
            if access == Access::Legacy && media.created_ms >= self.config().legacy_freeze_ms {
                return Err(not_found());
            }
            if let Some(content) = media.content.clone() {
                return Ok((media, content));
            }
            if media
                .unused_expires_ms
                .is_none_or(|at| at <= self.ctx.now_ms())
            {
                return Err(not_found());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ServiceError::NotYetUploaded(
                    "The media has not been uploaded yet".into(),
                ));
            }
        }
    }

    /// Makes the standard thumbnails of a new image in the background.
    fn pregenerate_thumbnails(self: &Arc<Self>, media_id: &str, content: &MediaContent) {
        if !thumbnail::is_thumbnailable(content.content_type.as_deref()) {
            return;
        }
        let (media, media_id, content) = (self.clone(), media_id.to_owned(), content.clone());
        tokio::spawn(async move {
            let specs = thumbnail::STANDARD_SIZES;
            let owner = Owner::Local(&media_id);
            if let Err(e) = media.store_thumbnails(&owner, &content, &specs).await {
                tracing::debug!(%media_id, error = %e, "no thumbnails for an upload");
            }
        });
    }

    async fn make_thumbnail(
        &self,
        owner: &Owner<'_>,
        content: &MediaContent,
        spec: ThumbnailSpec,
    ) -> ServiceResult<ThumbnailRecord> {
        if !thumbnail::is_thumbnailable(content.content_type.as_deref()) {
            return Err(ServiceError::CannotThumbnail(
                ThumbnailError::Unsupported.to_string(),
            ));
        }
        self.store_thumbnails(owner, content, &[spec])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::CannotThumbnail("No thumbnail could be made".into()))
    }

    /// Decodes the media once (under the concurrency bound, on a blocking thread), makes each
    /// thumbnail, writes its file and stores its row.
    async fn store_thumbnails(
        &self,
        owner: &Owner<'_>,
        content: &MediaContent,
        specs: &[ThumbnailSpec],
    ) -> ServiceResult<Vec<ThumbnailRecord>> {
        let _permit = self.thumbnail_permit().await?;
        let bytes = tokio::fs::read(self.file_path(&content.sha256)?)
            .await
            .map_err(|e| ServiceError::Internal(format!("read media file: {e}")))?;
        let specs = specs.to_vec();
        let made = tokio::task::spawn_blocking(move || thumbnail::make(&bytes, &specs))
            .await
            .map_err(|e| ServiceError::Internal(format!("thumbnail task: {e}")))?
            .map_err(|e| ServiceError::CannotThumbnail(e.to_string()))?;
        let mut records = Vec::with_capacity(made.len());
        for thumb in made {
            let (sha256, size) = self.files.write_all(&thumb.bytes).await?;
            let record = ThumbnailRecord {
                width: thumb.spec.width,
                height: thumb.spec.height,
                method: thumb.spec.method.as_str().to_owned(),
                animated: false,
                content_type: thumb.content_type.to_owned(),
                size,
                sha256,
            };
            self.put_thumbnail_of(owner, &record).await?;
            records.push(record);
        }
        Ok(records)
    }
}

/// A media ID as we make them, or as the spec allows them (`[A-Za-z0-9_-]+`).
fn valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn upload_result(outcome: MediaUploadOutcome) -> ServiceResult<()> {
    match outcome {
        MediaUploadOutcome::Stored => Ok(()),
        MediaUploadOutcome::Unknown => Err(not_found()),
        MediaUploadOutcome::NotCreator => Err(ServiceError::Forbidden(
            "Only the creator of a media ID may upload its content".into(),
        )),
        MediaUploadOutcome::AlreadyUploaded => Err(ServiceError::CannotOverwriteMedia(
            "The content of this media ID was already uploaded".into(),
        )),
    }
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("Media not found".into())
}

fn too_large(limit: u64) -> ServiceError {
    ServiceError::TooLarge(format!(
        "The upload is larger than the limit of {limit} bytes"
    ))
}
