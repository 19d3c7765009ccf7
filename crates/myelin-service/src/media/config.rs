//! The `[media]` section of the configuration.

use std::path::PathBuf;

/// The `[media]` section: where files live and what uploads may cost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The directory of the media files; `<data_dir>/media` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The largest upload accepted, in bytes (reported by `/media/config`).
    pub max_upload_bytes: u64,
    /// The most bytes a user's uploads may take in total; unlimited when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_user: Option<u64>,
    /// The largest media of another server fetched and cached for our users, in bytes.
    pub max_remote_bytes: u64,
    /// The most media IDs a user may have created (`/create`) and not uploaded yet.
    pub max_pending_uploads_per_user: u64,
    /// How long a created media ID may wait for its upload, in milliseconds.
    pub unused_expires_after_ms: u64,
    /// Whether `/preview_url` fetches pages for our users (every fetch passes `[egress]`).
    pub url_previews: bool,
    /// The largest page (or image) a URL preview reads, in bytes.
    pub url_preview_max_bytes: u64,
    /// The unauthenticated `/_matrix/media/v3/download` and `/thumbnail` serve only media
    /// created before this time (milliseconds since the epoch); 0 serves none through them.
    pub legacy_freeze_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            path: None,
            max_upload_bytes: 50 * 1024 * 1024,
            max_bytes_per_user: None,
            max_remote_bytes: 50 * 1024 * 1024,
            max_pending_uploads_per_user: 20,
            unused_expires_after_ms: 24 * 60 * 60 * 1000,
            legacy_freeze_ms: 0,
            url_previews: false,
            url_preview_max_bytes: 10 * 1024 * 1024,
        }
    }
}

impl MediaConfig {
    /// The configuration problems of the section.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            problems.push("media.path must not be empty (remove it to use the default)".into());
        }
        if self.max_upload_bytes == 0 || i64::try_from(self.max_upload_bytes).is_err() {
            problems.push("media.max_upload_bytes must be between 1 and 2^63 - 1".into());
        }
        if self
            .max_bytes_per_user
            .is_some_and(|quota| i64::try_from(quota).is_err())
        {
            problems.push("media.max_bytes_per_user must be at most 2^63 - 1".into());
        }
        if self.max_remote_bytes == 0 || i64::try_from(self.max_remote_bytes).is_err() {
            problems.push("media.max_remote_bytes must be between 1 and 2^63 - 1".into());
        }
        if self.max_pending_uploads_per_user == 0 {
            problems.push("media.max_pending_uploads_per_user must be at least 1".into());
        }
        if self.unused_expires_after_ms == 0 || i64::try_from(self.unused_expires_after_ms).is_err()
        {
            problems.push("media.unused_expires_after_ms must be between 1 and 2^63 - 1".into());
        }
        if self.url_preview_max_bytes == 0 || i64::try_from(self.url_preview_max_bytes).is_err() {
            problems.push("media.url_preview_max_bytes must be between 1 and 2^63 - 1".into());
        }
        if i64::try_from(self.legacy_freeze_ms).is_err() {
            problems.push("media.legacy_freeze_ms must be at most 2^63 - 1".into());
        }
        problems
    }
}
