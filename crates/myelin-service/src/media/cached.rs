//! Other servers' media as our users read it: the cached copy when there is one, else one shared
//! fetch from the origin (`remote.rs`), stored in `remote_media` before it is served. Thumbnails
//! of a cached original are made here; without the original the origin is asked for the
//! thumbnail, and if it cannot give one, the original is fetched and thumbnailed here.
//!
//! Only the authenticated client API fetches: the legacy endpoints serve copies fetched before
//! `media.legacy_freeze_ms`, and other servers never get a copy of a third server's media.

use myelin_storage::{MediaContent, ThumbnailRecord};
use ruma::{OwnedServerName, ServerName};

use super::remote::FetchError;
use super::thumbnail::ThumbnailSpec;
use super::{not_found, valid_media_id, Access, Media, Owner};
use crate::ServiceResult;

/// A cached copy's last access is written at most this often.
const TOUCH_INTERVAL_MS: u64 = 60 * 60 * 1000;

impl Media {
    /// The cached copy of a remote media, fetched now if needed.
    pub(super) async fn remote_content(
        &self,
        origin: &str,
        media_id: &str,
        access: Access,
    ) -> ServiceResult<MediaContent> {
        let origin = self.remote_origin(origin, media_id)?;
        let now = self.ctx.now_ms();
        if let Some(cached) = self
            .ctx
            .storage
            .get_remote_media(origin.as_str(), media_id)
            .await?
        {
            let frozen = cached.fetched_ms >= self.config().legacy_freeze_ms;
            if access == Access::Legacy && frozen {
                return Err(not_found());
            }
            if now.saturating_sub(cached.last_access_ms) >= TOUCH_INTERVAL_MS {
                self.ctx
                    .storage
                    .touch_remote_media(origin.as_str(), media_id, now)
                    .await?;
            }
            return Ok(cached.content);
        }
        if access != Access::Authenticated {
            return Err(not_found());
        }
        Ok(self.fetch_original(&origin, media_id).await?)
    }

    /// A thumbnail of a remote media: stored, made from the cached original, or the origin's.
    pub(super) async fn remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        (spec, animated): (ThumbnailSpec, bool),
        access: Access,
    ) -> ServiceResult<ThumbnailRecord> {
        let origin = self.remote_origin(origin, media_id)?;
        if access != Access::Authenticated {
            // The legacy API sees only copies fetched before the freeze, thumbnails included.
            self.remote_content(origin.as_str(), media_id, access)
                .await?;
        }
        if animated && access == Access::Authenticated {
            // Made here from the original: the origin's thumbnail endpoint may give a static one.
            let original = self
                .remote_content(origin.as_str(), media_id, access)
                .await?;
            let owner = Owner::Remote(origin.as_str(), media_id);
            if let Some(record) = self.animated_thumbnail(&owner, &original, spec).await? {
                return Ok(record);
            }
        }
        let stored = self
            .ctx
            .storage
            .remote_thumbnails(origin.as_str(), media_id)
            .await?;
        if let Some(found) = stored.into_iter().find(|t| matches_spec(t, spec)) {
            return Ok(found);
        }
        if access != Access::Authenticated {
            return Err(not_found());
        }
        let owner = Owner::Remote(origin.as_str(), media_id);
        let cached = self
            .ctx
            .storage
            .get_remote_media(origin.as_str(), media_id)
            .await?;
        if let Some(cached) = cached {
            return self.make_thumbnail(&owner, &cached.content, spec).await;
        }
        match self.fetch_thumbnail(&origin, media_id, spec).await {
            Ok(record) => Ok(record),
            Err(FetchError::NotFound) => Err(not_found()),
            Err(e) => {
                tracing::debug!(%origin, media_id, error = ?e, "no remote thumbnail; making one");
                let original = self.fetch_original(&origin, media_id).await?;
                self.make_thumbnail(&owner, &original, spec).await
            }
        }
    }

    /// The origin of a remote media ID we may fetch: a valid server name, not blocked, with
    /// federation on.
    fn remote_origin(&self, origin: &str, media_id: &str) -> ServiceResult<OwnedServerName> {
        let origin = <&ServerName>::try_from(origin).map_err(|_| not_found())?;
        if !valid_media_id(media_id)
            || !self.ctx.federation.config.enabled
            || self.ctx.is_blocked_server(origin.as_str())
        {
            return Err(not_found());
        }
        Ok(origin.to_owned())
    }

    /// The original, fetched once for every request waiting for it, and stored.
    async fn fetch_original(
        &self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<MediaContent, FetchError> {
        let fetcher = self.fetcher.clone();
        let (owned_origin, owned_id) = (origin.to_owned(), media_id.to_owned());
        let key = (origin.to_owned(), media_id.to_owned(), None);
        self.inflight
            .run(key, async move {
                let content = fetcher.download(&owned_origin, &owned_id).await?;
                let now = fetcher.ctx.now_ms();
                fetcher
                    .ctx
                    .storage
                    .put_remote_media(owned_origin.as_str(), &owned_id, now, &content)
                    .await
                    .map_err(|e| FetchError::Internal(e.to_string()))?;
                Ok(content)
            })
            .await
    }

    /// The origin's thumbnail of one standard size, fetched once for every waiter, and stored.
    async fn fetch_thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        spec: ThumbnailSpec,
    ) -> Result<ThumbnailRecord, FetchError> {
        let fetcher = self.fetcher.clone();
        let (owned_origin, owned_id) = (origin.to_owned(), media_id.to_owned());
        let key = (origin.to_owned(), media_id.to_owned(), Some(spec));
        let content = self
            .inflight
            .run(key, async move {
                let content = fetcher.thumbnail(&owned_origin, &owned_id, spec).await?;
                let record = thumbnail_record(spec, &content);
                fetcher
                    .ctx
                    .storage
                    .put_remote_thumbnail(owned_origin.as_str(), &owned_id, &record)
                    .await
                    .map_err(|e| FetchError::Internal(e.to_string()))?;
                Ok(content)
            })
            .await?;
        Ok(thumbnail_record(spec, &content))
    }
}

/// Whether a stored thumbnail is the static one of this size and method.
pub(super) fn matches_spec(t: &ThumbnailRecord, spec: ThumbnailSpec) -> bool {
    t.width == spec.width
        && t.height == spec.height
        && t.method == spec.method.as_str()
        && !t.animated
}

fn thumbnail_record(spec: ThumbnailSpec, content: &MediaContent) -> ThumbnailRecord {
    ThumbnailRecord {
        width: spec.width,
        height: spec.height,
        method: spec.method.as_str().to_owned(),
        animated: false,
        content_type: content
            .content_type
            .clone()
            .unwrap_or_else(|| "image/png".to_owned()),
        size: content.size,
        sha256: content.sha256.clone(),
    }
}
