//! The media repository's metadata (spec: Client-Server API, "Content repository"): one row per
//! media ID of this server, and the thumbnails made of it. The bytes themselves live in files
//! named by their SHA-256 (the service's `media/files.rs`), written and synced before the row
//! that names them commits, so a row never points at a file that is not there.
//!
//! A media ID is either uploaded at once (`POST /upload`) or created first (`POST /create`) and
//! uploaded later (`PUT /upload/{server}/{id}`); until then its `size` and `sha256` are unset and
//! it expires, unused, at `unused_expires_ms`.
//!
//! Other servers' media fetched for our users is cached in `remote_media` (one row per origin
//! and media ID, with when it was fetched and last served) and `remote_media_thumbnails`.

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};

use crate::StorageResult;

/// The file of an uploaded media or thumbnail: what it holds and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaContent {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    /// The lowercase hex SHA-256 of the bytes, which names their file.
    pub sha256: String,
}

/// One media ID of this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    pub media_id: String,
    pub uploader: OwnedUserId,
    pub created_ms: u64,
    /// For a created media not uploaded yet: when the ID stops being usable.
    pub unused_expires_ms: Option<u64>,
    /// `None` until the content is uploaded.
    pub content: Option<MediaContent>,
}

/// A stored thumbnail of a media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRecord {
    pub width: u32,
    pub height: u32,
    /// `crop` or `scale`.
    pub method: String,
    pub animated: bool,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// A copy of another server's media, cached here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMediaRecord {
    pub origin: String,
    pub media_id: String,
    pub content: MediaContent,
    pub fetched_ms: u64,
    /// When it was last served (updated coarsely), for least-recently-used retention.
    pub last_access_ms: u64,
}

/// The outcome of uploading the content of a created media ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaUploadOutcome {
    Stored,
    /// No such media ID, or it expired unused.
    Unknown,
    /// Another user created it.
    NotCreator,
    /// Its content was uploaded already.
    AlreadyUploaded,
}

#[async_trait]
pub trait MediaStore {
    /// Stores a media uploaded at once.
    async fn insert_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()>;
    /// Creates a media ID to be uploaded later, unless the user already has `max_pending`
    /// created media neither uploaded nor expired at `now_ms` (then `false`). One transaction.
    async fn create_pending_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        unused_expires_ms: u64,
        max_pending: u64,
    ) -> StorageResult<bool>;
    /// Sets the content of a created media ID, if `uploader` created it, it has none yet and it
    /// has not expired at `now_ms`. One transaction.
    async fn complete_media_upload(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<MediaUploadOutcome>;
    async fn get_media(&self, media_id: &str) -> StorageResult<Option<MediaRecord>>;
    /// Stores a thumbnail of a media, replacing one of the same size, method and animation.
    async fn put_thumbnail(&self, media_id: &str, thumbnail: &ThumbnailRecord)
        -> StorageResult<()>;
    /// Every thumbnail of a media.
    async fn thumbnails(&self, media_id: &str) -> StorageResult<Vec<ThumbnailRecord>>;

    /// The cached copy of another server's media.
    async fn get_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Option<RemoteMediaRecord>>;
    /// Stores (or replaces) the cached copy of another server's media, fetched at `now_ms`.
    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()>;
    /// Records that a cached remote media was served at `now_ms`.
    async fn touch_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
    ) -> StorageResult<()>;
    /// Stores a thumbnail of another server's media (fetched from it or made here), replacing
    /// one of the same size, method and animation.
    async fn put_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        thumbnail: &ThumbnailRecord,
    ) -> StorageResult<()>;
    /// Every thumbnail stored of another server's media.
    async fn remote_thumbnails(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Vec<ThumbnailRecord>>;

    /// The bytes of every uploaded media of `uploader` (the storage quota counts them).
    async fn media_bytes_of_user(&self, uploader: &UserId) -> StorageResult<u64>;
    /// The IDs of every media `uploader` created, uploaded or not.
    async fn media_ids_of_user(&self, uploader: &UserId) -> StorageResult<Vec<String>>;
    /// Deletes media of this server and their thumbnails, one transaction; the SHA-256s of the
    /// files the deleted rows named (the caller removes those no other row names).
    async fn delete_media(&self, media_ids: &[String]) -> StorageResult<Vec<String>>;
    /// Deletes the cached copy of another server's media and its thumbnails, one transaction;
    /// the SHA-256s of the files they named.
    async fn delete_remote_media(&self, origin: &str, media_id: &str)
        -> StorageResult<Vec<String>>;
    /// Every cached remote media, least recently served first.
    async fn remote_media_by_access(&self) -> StorageResult<Vec<RemoteMediaRecord>>;
    /// Whether any media, thumbnail or cached copy still names the file of this SHA-256.
    async fn sha256_in_use(&self, sha256: &str) -> StorageResult<bool>;
    /// Quarantines (`at_ms` set) or releases (`None`) a media of any origin, stored or not;
    /// whether anything changed.
    async fn set_media_quarantined(
        &self,
        origin: &str,
        media_id: &str,
        at_ms: Option<u64>,
    ) -> StorageResult<bool>;
    /// Whether a media is quarantined.
    async fn is_media_quarantined(&self, origin: &str, media_id: &str) -> StorageResult<bool>;
}

/// Whether `uploader` may set the content of the created media `media` at `now_ms`: the
/// decision both backends make inside the upload's transaction.
pub fn upload_outcome(media: &MediaRecord, uploader: &UserId, now_ms: u64) -> MediaUploadOutcome {
    if media.uploader != uploader {
        MediaUploadOutcome::NotCreator
    } else if media.content.is_some() {
        MediaUploadOutcome::AlreadyUploaded
    } else if media.unused_expires_ms.is_none_or(|at| at <= now_ms) {
        MediaUploadOutcome::Unknown
    } else {
        MediaUploadOutcome::Stored
    }
}

/// The `media` columns [`crate::rows::media`] reads, in order.
pub const MEDIA_COLUMNS: &str =
    "media_id, uploader, created_ms, unused_expires_ms, content_type, filename, size, sha256";

/// The `remote_media` columns [`crate::rows::remote_media`] reads, in order.
pub const REMOTE_MEDIA_COLUMNS: &str =
    "origin, media_id, content_type, filename, size, sha256, fetched_ms, last_access_ms";

/// The `media_thumbnails` columns [`crate::rows::thumbnail`] reads, in order.
pub const THUMBNAIL_COLUMNS: &str = "width, height, method, animated, content_type, size, sha256";
