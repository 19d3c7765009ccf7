//! `MediaStore`: media metadata and thumbnails, and the cache of remote media.

use async_trait::async_trait;
use myelin_storage::rows;
use myelin_storage::{
    upload_outcome, MediaContent, MediaRecord, MediaStore, MediaUploadOutcome, RemoteMediaRecord,
    StorageResult, ThumbnailRecord, MEDIA_COLUMNS, REMOTE_MEDIA_COLUMNS, THUMBNAIL_COLUMNS,
};
use ruma::UserId;

use crate::convert::{get, to_i64};
use crate::pool::Conn;
use crate::PgStore;

async fn media_row(conn: &mut Conn, media_id: &str) -> StorageResult<Option<MediaRecord>> {
    conn.query_opt_decode(
        &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = $1"),
        &[&media_id],
        rows::media,
    )
    .await
}

#[async_trait]
impl MediaStore for PgStore {
    async fn insert_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()> {
        let now = to_i64(now_ms, "media created_ms")?;
        let size = to_i64(content.size, "media size")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO media (media_id, uploader, created_ms, content_type, filename,
                                    size, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &media_id,
                    &uploader.as_str(),
                    &now,
                    &content.content_type,
                    &content.filename,
                    &size,
                    &content.sha256,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn create_pending_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        unused_expires_ms: u64,
        max_pending: u64,
    ) -> StorageResult<bool> {
        let now = to_i64(now_ms, "media created_ms")?;
        let expires = to_i64(unused_expires_ms, "media unused_expires_ms")?;
        let max_pending = to_i64(max_pending, "max pending uploads")?;
        let mut conn = self.db.write().await?;
        let result = async {
            let row = conn
                .query_one(
                    "SELECT COUNT(*) FROM media
                     WHERE uploader = $1 AND size IS NULL AND unused_expires_ms > $2",
                    &[&uploader.as_str(), &now],
                )
                .await?;
            let pending: i64 = get(&row, 0)?;
            if pending >= max_pending {
                return Ok(false);
            }
            conn.execute(
                "INSERT INTO media (media_id, uploader, created_ms, unused_expires_ms)
                 VALUES ($1, $2, $3, $4)",
                &[&media_id, &uploader.as_str(), &now, &expires],
            )
            .await?;
            Ok(true)
        }
        .await;
        conn.finish(result).await
    }

    async fn complete_media_upload(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<MediaUploadOutcome> {
        let size = to_i64(content.size, "media size")?;
        let mut conn = self.db.write().await?;
        let result = async {
            // The row is locked, so a concurrent upload of the same ID waits for this one.
            let Some(media) = conn
                .query_opt_decode(
                    &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = $1 FOR UPDATE"),
                    &[&media_id],
                    rows::media,
                )
                .await?
            else {
                return Ok(MediaUploadOutcome::Unknown);
            };
            let outcome = upload_outcome(&media, uploader, now_ms);
            if outcome != MediaUploadOutcome::Stored {
                return Ok(outcome);
            }
            conn.execute(
                "UPDATE media SET content_type = $2, filename = $3, size = $4, sha256 = $5,
                                  unused_expires_ms = NULL
                 WHERE media_id = $1",
                &[
                    &media_id,
                    &content.content_type,
                    &content.filename,
                    &size,
                    &content.sha256,
                ],
            )
            .await?;
            Ok(MediaUploadOutcome::Stored)
        }
        .await;
        conn.finish(result).await
    }

    async fn get_media(&self, media_id: &str) -> StorageResult<Option<MediaRecord>> {
        let mut conn = self.db.read().await?;
        media_row(&mut conn, media_id).await
    }

    async fn put_thumbnail(
        &self,
        media_id: &str,
        thumbnail: &ThumbnailRecord,
    ) -> StorageResult<()> {
        let t = thumbnail;
        let size = to_i64(t.size, "thumbnail size")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO media_thumbnails (media_id, width, height, method, animated,
                                               content_type, size, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (media_id, width, height, method, animated) DO UPDATE
                 SET content_type = excluded.content_type, size = excluded.size,
                     sha256 = excluded.sha256",
                &[
                    &media_id,
                    &i64::from(t.width),
                    &i64::from(t.height),
                    &t.method,
                    &t.animated,
                    &t.content_type,
                    &size,
                    &t.sha256,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn thumbnails(&self, media_id: &str) -> StorageResult<Vec<ThumbnailRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &format!(
                "SELECT {THUMBNAIL_COLUMNS} FROM media_thumbnails WHERE media_id = $1
                 ORDER BY width, height, method, animated"
            ),
            &[&media_id],
            rows::thumbnail,
        )
        .await
    }

    async fn get_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Option<RemoteMediaRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            &format!(
                "SELECT {REMOTE_MEDIA_COLUMNS} FROM remote_media
                 WHERE origin = $1 AND media_id = $2"
            ),
            &[&origin, &media_id],
            rows::remote_media,
        )
        .await
    }

    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()> {
        let now = to_i64(now_ms, "remote media fetched_ms")?;
        let size = to_i64(content.size, "remote media size")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO remote_media (origin, media_id, content_type, filename, size,
                                           sha256, fetched_ms, last_access_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (origin, media_id) DO UPDATE
                 SET content_type = excluded.content_type, filename = excluded.filename,
                     size = excluded.size, sha256 = excluded.sha256,
                     fetched_ms = excluded.fetched_ms, last_access_ms = excluded.last_access_ms",
                &[
                    &origin,
                    &media_id,
                    &content.content_type,
                    &content.filename,
                    &size,
                    &content.sha256,
                    &now,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn touch_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
    ) -> StorageResult<()> {
        let now = to_i64(now_ms, "remote media last_access_ms")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "UPDATE remote_media SET last_access_ms = GREATEST(last_access_ms, $3)
                 WHERE origin = $1 AND media_id = $2",
                &[&origin, &media_id, &now],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn put_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        thumbnail: &ThumbnailRecord,
    ) -> StorageResult<()> {
        let t = thumbnail;
        let size = to_i64(t.size, "thumbnail size")?;
        let mut conn = self.db.write().await?;
        let result = conn
            .execute(
                "INSERT INTO remote_media_thumbnails (origin, media_id, width, height, method,
                                                      animated, content_type, size, sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (origin, media_id, width, height, method, animated) DO UPDATE
                 SET content_type = excluded.content_type, size = excluded.size,
                     sha256 = excluded.sha256",
                &[
                    &origin,
                    &media_id,
                    &i64::from(t.width),
                    &i64::from(t.height),
                    &t.method,
                    &t.animated,
                    &t.content_type,
                    &size,
                    &t.sha256,
                ],
            )
            .await
            .map(drop);
        conn.finish(result).await
    }

    async fn remote_thumbnails(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Vec<ThumbnailRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &format!(
                "SELECT {THUMBNAIL_COLUMNS} FROM remote_media_thumbnails
                 WHERE origin = $1 AND media_id = $2
                 ORDER BY width, height, method, animated"
            ),
            &[&origin, &media_id],
            rows::thumbnail,
        )
        .await
    }

    async fn media_bytes_of_user(&self, uploader: &UserId) -> StorageResult<u64> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_one(
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM media WHERE uploader = $1",
                &[&uploader.as_str()],
            )
            .await?;
        let total: i64 = get(&row, 0)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn media_ids_of_user(&self, uploader: &UserId) -> StorageResult<Vec<String>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            "SELECT media_id FROM media WHERE uploader = $1 ORDER BY media_id",
            &[&uploader.as_str()],
            |row| row.text(0),
        )
        .await
    }

    async fn delete_media(&self, media_ids: &[String]) -> StorageResult<Vec<String>> {
        let mut conn = self.db.write().await?;
        let result = async {
            let mut files: Vec<String> = conn
                .query_decode(
                    "SELECT sha256 FROM media WHERE media_id = ANY($1) AND sha256 IS NOT NULL
                     UNION SELECT sha256 FROM media_thumbnails WHERE media_id = ANY($1)",
                    &[&media_ids],
                    |row| row.text(0),
                )
                .await?;
            conn.execute(
                "DELETE FROM media_thumbnails WHERE media_id = ANY($1)",
                &[&media_ids],
            )
            .await?;
            conn.execute("DELETE FROM media WHERE media_id = ANY($1)", &[&media_ids])
                .await?;
            files.sort();
            files.dedup();
            Ok(files)
        }
        .await;
        conn.finish(result).await
    }

    async fn delete_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Vec<String>> {
        let mut conn = self.db.write().await?;
        let result = async {
            let files = conn
                .query_decode(
                    "SELECT sha256 FROM remote_media WHERE origin = $1 AND media_id = $2
                     UNION SELECT sha256 FROM remote_media_thumbnails
                     WHERE origin = $1 AND media_id = $2",
                    &[&origin, &media_id],
                    |row| row.text(0),
                )
                .await?;
            for table in ["remote_media_thumbnails", "remote_media"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE origin = $1 AND media_id = $2"),
                    &[&origin, &media_id],
                )
                .await?;
            }
            Ok(files)
        }
        .await;
        conn.finish(result).await
    }

    async fn remote_media_by_access(&self) -> StorageResult<Vec<RemoteMediaRecord>> {
        let mut conn = self.db.read().await?;
        conn.query_decode(
            &format!(
                "SELECT {REMOTE_MEDIA_COLUMNS} FROM remote_media
                 ORDER BY last_access_ms, origin, media_id"
            ),
            &[],
            rows::remote_media,
        )
        .await
    }

    async fn sha256_in_use(&self, sha256: &str) -> StorageResult<bool> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1)
                     OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)
                     OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = $1)
                     OR EXISTS (SELECT 1 FROM remote_media_thumbnails WHERE sha256 = $1)",
                &[&sha256],
            )
            .await?;
        get(&row, 0)
    }

    async fn set_media_quarantined(
        &self,
        origin: &str,
        media_id: &str,
        at_ms: Option<u64>,
    ) -> StorageResult<bool> {
        let at = at_ms
            .map(|at| to_i64(at, "media quarantined_ms"))
            .transpose()?;
        let mut conn = self.db.write().await?;
        let result = match at {
            Some(at) => {
                conn.execute(
                    "INSERT INTO media_quarantine (origin, media_id, quarantined_ms)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&origin, &media_id, &at],
                )
                .await
            }
            None => {
                conn.execute(
                    "DELETE FROM media_quarantine WHERE origin = $1 AND media_id = $2",
                    &[&origin, &media_id],
                )
                .await
            }
        }
        .map(|changed| changed > 0);
        conn.finish(result).await
    }

    async fn is_media_quarantined(&self, origin: &str, media_id: &str) -> StorageResult<bool> {
        let mut conn = self.db.read().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM media_quarantine WHERE origin = $1 AND media_id = $2",
                &[&origin, &media_id],
            )
            .await?;
        Ok(row.is_some())
    }
}
