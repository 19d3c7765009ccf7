//! Media operations for administrators (`myelin media ...`): deleting a user's or a room's media,
//! quarantine, and retention of the cache of other servers' media.
//!
//! They work on the database and the media directory only, so the command line runs them while
//! a server serves the same data: a deleted media then answers 404 there. A file is removed once
//! no row names its SHA-256 any more (identical uploads share one file). An upload of the same
//! bytes landing between that check and the removal would lose its file; the window is a few
//! milliseconds, and such an upload answers 500 when served, never wrong bytes.

use std::collections::BTreeSet;

use myelin_core::StreamPos;
use myelin_storage::Direction;
use ruma::{RoomId, UserId};
use serde_json::Value;

use super::Media;
use crate::{ServiceError, ServiceResult};

/// Events of a room read at once when looking for the media they use.
const EVENT_PAGE: usize = 500;

/// Media deleted per transaction.
const DELETE_BATCH: usize = 500;

/// What an operation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Media (local or cached remote) whose rows were deleted.
    pub media: usize,
    /// Files removed from the media directory, and their bytes.
    pub files: usize,
    pub bytes: u64,
}

/// A media named by an `mxc://` URI: its origin and ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MxcRef {
    pub origin: String,
    pub media_id: String,
}

impl MxcRef {
    /// `mxc://origin/media_id`, or `None` for anything else.
    pub fn parse(uri: &str) -> Option<MxcRef> {
        let (origin, media_id) = uri.strip_prefix("mxc://")?.split_once('/')?;
        let valid = !origin.is_empty()
            && !origin.contains(['/', '?', '#'])
            && super::valid_media_id(media_id);
        valid.then(|| MxcRef {
            origin: origin.to_owned(),
            media_id: media_id.to_owned(),
        })
    }
}

impl Media {
    /// Refuses (404, as for a media that does not exist) a quarantined media.
    pub(crate) async fn refuse_quarantined(
        &self,
        origin: &str,
        media_id: &str,
    ) -> ServiceResult<()> {
        if self
            .ctx
            .storage
            .is_media_quarantined(origin, media_id)
            .await?
        {
            return Err(super::not_found());
        }
        Ok(())
    }

    /// Quarantines (or releases) the media of `uri`, of this server or another, stored or not;
    /// whether that changed anything.
    pub async fn set_quarantined(&self, uri: &str, quarantined: bool) -> ServiceResult<bool> {
        let media = MxcRef::parse(uri)
            .ok_or_else(|| ServiceError::InvalidParam(format!("{uri:?} is not an mxc:// URI")))?;
        let at = quarantined.then(|| self.ctx.now_ms());
        Ok(self
            .ctx
            .storage
            .set_media_quarantined(&media.origin, &media.media_id, at)
            .await?)
    }

    /// Quarantines every media the room's events name; how many were newly quarantined.
    pub async fn quarantine_room(&self, room_id: &RoomId) -> ServiceResult<usize> {
        let now = self.ctx.now_ms();
        let mut changed = 0;
        for media in self.room_media(room_id).await? {
            let storage = &self.ctx.storage;
            if storage
                .set_media_quarantined(&media.origin, &media.media_id, Some(now))
                .await?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Deletes every media `user_id` uploaded or created, with its thumbnails and files.
    pub async fn delete_user_media(&self, user_id: &UserId) -> ServiceResult<Removed> {
        let ids = self.ctx.storage.media_ids_of_user(user_id).await?;
        self.delete_local(ids).await
    }

    /// Deletes the media of this server that the room's events name (`url`,
    /// `info.thumbnail_url`, `file.url`, ...), with their thumbnails and files.
    pub async fn delete_room_media(&self, room_id: &RoomId) -> ServiceResult<Removed> {
        let ours = self.ctx.config.server_name.as_str();
        let ids = self
            .room_media(room_id)
            .await?
            .into_iter()
            .filter(|media| media.origin == ours)
            .map(|media| media.media_id)
            .collect();
        self.delete_local(ids).await
    }

    /// Removes cached copies of other servers' media, least recently served first: every copy
    /// last served before `older_than_ms` (a timestamp), then more until the cache holds at most
    /// `max_bytes`.
    pub async fn purge_remote(
        &self,
        older_than_ms: Option<u64>,
        max_bytes: Option<u64>,
    ) -> ServiceResult<Removed> {
        let cached = self.ctx.storage.remote_media_by_access().await?;
        let mut total: u64 = cached.iter().map(|m| m.content.size).sum();
        let mut removed = Removed::default();
        for media in cached {
            let stale = older_than_ms.is_some_and(|cutoff| media.last_access_ms < cutoff);
            let over = max_bytes.is_some_and(|max| total > max);
            if !stale && !over {
                break;
            }
            let files = self
                .ctx
                .storage
                .delete_remote_media(&media.origin, &media.media_id)
                .await?;
            total = total.saturating_sub(media.content.size);
            removed.media += 1;
            self.remove_unused_files(files, &mut removed).await?;
        }
        Ok(removed)
    }

    async fn delete_local(&self, ids: Vec<String>) -> ServiceResult<Removed> {
        let mut removed = Removed::default();
        for batch in ids.chunks(DELETE_BATCH) {
            let files = self.ctx.storage.delete_media(batch).await?;
            removed.media += batch.len();
            self.remove_unused_files(files, &mut removed).await?;
        }
        Ok(removed)
    }

    /// Removes the files no row names any more (after the rows naming them were deleted).
    async fn remove_unused_files(
        &self,
        files: Vec<String>,
        removed: &mut Removed,
    ) -> ServiceResult<()> {
        for sha256 in files {
            if self.ctx.storage.sha256_in_use(&sha256).await? {
                continue;
            }
            let size = match self.files.path_of(&sha256) {
                Some(path) => tokio::fs::metadata(path).await.map_or(0, |m| m.len()),
                None => 0,
            };
            if self.files.remove(&sha256).await? {
                removed.files += 1;
                removed.bytes += size;
            }
        }
        Ok(())
    }

    /// Every media the room's events name in their content, as `mxc://` URIs.
    async fn room_media(&self, room_id: &RoomId) -> ServiceResult<BTreeSet<MxcRef>> {
        let mut found = BTreeSet::new();
        let mut from = StreamPos::ZERO;
        loop {
            let events = self
                .ctx
                .storage
                .room_events(room_id, from, None, Direction::Forward, EVENT_PAGE)
                .await?;
            let Some(last) = events.last() else {
                break;
            };
            from = last.stream_pos;
            for event in &events {
                if let Ok(content) = serde_json::from_str::<Value>(event.pdu.content.get()) {
                    media_in_content(&content, &mut found);
                }
            }
            if events.len() < EVENT_PAGE {
                break;
            }
        }
        Ok(found)
    }
}

/// The `mxc://` URIs of an event's content, where clients put them: `url` (images, files,
/// avatars), `info.thumbnail_url`, and `file.url` / `info.thumbnail_file.url` (encrypted
/// attachments), also inside `m.new_content` of an edit.
pub(crate) fn media_in_content(content: &Value, found: &mut BTreeSet<MxcRef>) {
    // Not `avatar_url` of member events: a profile picture is the user's, not the room's.
    let paths: [&[&str]; 4] = [
        &["url"],
        &["info", "thumbnail_url"],
        &["file", "url"],
        &["info", "thumbnail_file", "url"],
    ];
    for root in [Some(content), content.get("m.new_content")]
        .into_iter()
        .flatten()
    {
        for path in paths {
            let value = path.iter().try_fold(root, |v, key| v.get(key));
            if let Some(media) = value.and_then(Value::as_str).and_then(MxcRef::parse) {
                found.insert(media);
            }
        }
    }
}
