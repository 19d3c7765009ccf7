//! `MediaStore`: media metadata and thumbnails, and the cache of remote media.

use async_trait::async_trait;
use myelin_storage::rows;
use myelin_storage::{
    upload_outcome, MediaContent, MediaRecord, MediaStore, MediaUploadOutcome, RemoteMediaRecord,
    StorageResult, ThumbnailRecord, MEDIA_COLUMNS, REMOTE_MEDIA_COLUMNS, THUMBNAIL_COLUMNS,
};
use ruma::UserId;
use rusqlite::{params, Connection};

use crate::convert::{query_all, query_first, to_i64, Db};
use crate::SqliteStore;

fn media_row(conn: &Connection, media_id: &str) -> StorageResult<Option<MediaRecord>> {
    query_first(
        conn,
        &format!("SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = ?1"),
        params![media_id],
        rows::media,
    )
}

#[async_trait]
impl MediaStore for SqliteStore {
    async fn insert_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()> {
        let (media_id, uploader, content) =
            (media_id.to_owned(), uploader.to_owned(), content.clone());
        let now = to_i64(now_ms, "media created_ms")?;
        let size = to_i64(content.size, "media size")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO media (media_id, uploader, created_ms, content_type, filename,
                                        size, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .db()?
                .execute(params![
                    media_id,
                    uploader.as_str(),
                    now,
                    content.content_type,
                    content.filename,
                    size,
                    content.sha256
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn create_pending_media(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        unused_expires_ms: u64,
        max_pending: u64,
    ) -> StorageResult<bool> {
        let (media_id, uploader) = (media_id.to_owned(), uploader.to_owned());
        let now = to_i64(now_ms, "media created_ms")?;
        let expires = to_i64(unused_expires_ms, "media unused_expires_ms")?;
        let max_pending = to_i64(max_pending, "max pending uploads")?;
        self.db
            .write(move |tx, _| {
                let pending: i64 = tx
                    .prepare_cached(
                        "SELECT COUNT(*) FROM media
                         WHERE uploader = ?1 AND size IS NULL AND unused_expires_ms > ?2",
                    )
                    .db()?
                    .query_row(params![uploader.as_str(), now], |row| row.get(0))
                    .db()?;
                if pending >= max_pending {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO media (media_id, uploader, created_ms, unused_expires_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .db()?
                .execute(params![media_id, uploader.as_str(), now, expires])
                .db()?;
                Ok(true)
            })
            .await
    }

    async fn complete_media_upload(
        &self,
        media_id: &str,
        uploader: &UserId,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<MediaUploadOutcome> {
        let (media_id, uploader, content) =
            (media_id.to_owned(), uploader.to_owned(), content.clone());
        let size = to_i64(content.size, "media size")?;
        self.db
            .write(move |tx, _| {
                let Some(media) = media_row(tx, &media_id)? else {
                    return Ok(MediaUploadOutcome::Unknown);
                };
                let outcome = upload_outcome(&media, &uploader, now_ms);
                if outcome != MediaUploadOutcome::Stored {
                    return Ok(outcome);
                }
                tx.prepare_cached(
                    "UPDATE media SET content_type = ?2, filename = ?3, size = ?4, sha256 = ?5,
                                      unused_expires_ms = NULL
                     WHERE media_id = ?1",
                )
                .db()?
                .execute(params![
                    media_id,
                    content.content_type,
                    content.filename,
                    size,
                    content.sha256,
                ])
                .db()?;
                Ok(MediaUploadOutcome::Stored)
            })
            .await
    }

    async fn get_media(&self, media_id: &str) -> StorageResult<Option<MediaRecord>> {
        let media_id = media_id.to_owned();
        self.db.read(move |conn| media_row(conn, &media_id)).await
    }

    async fn put_thumbnail(
        &self,
        media_id: &str,
        thumbnail: &ThumbnailRecord,
    ) -> StorageResult<()> {
        let (media_id, t) = (media_id.to_owned(), thumbnail.clone());
        let size = to_i64(t.size, "thumbnail size")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO media_thumbnails (media_id, width, height, method, animated,
                                                   content_type, size, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (media_id, width, height, method, animated) DO UPDATE
                     SET content_type = excluded.content_type, size = excluded.size,
                         sha256 = excluded.sha256",
                )
                .db()?
                .execute(params![
                    media_id,
                    t.width,
                    t.height,
                    t.method,
                    t.animated,
                    t.content_type,
                    size,
                    t.sha256
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn thumbnails(&self, media_id: &str) -> StorageResult<Vec<ThumbnailRecord>> {
        let media_id = media_id.to_owned();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &format!(
                        "SELECT {THUMBNAIL_COLUMNS} FROM media_thumbnails WHERE media_id = ?1
                         ORDER BY width, height, method, animated"
                    ),
                    params![media_id],
                    rows::thumbnail,
                )
            })
            .await
    }

    async fn get_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Option<RemoteMediaRecord>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    &format!(
                        "SELECT {REMOTE_MEDIA_COLUMNS} FROM remote_media
                         WHERE origin = ?1 AND media_id = ?2"
                    ),
                    params![origin, media_id],
                    rows::remote_media,
                )
            })
            .await
    }

    async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
        content: &MediaContent,
    ) -> StorageResult<()> {
        let (origin, media_id, content) = (origin.to_owned(), media_id.to_owned(), content.clone());
        let now = to_i64(now_ms, "remote media fetched_ms")?;
        let size = to_i64(content.size, "remote media size")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO remote_media (origin, media_id, content_type, filename, size,
                                               sha256, fetched_ms, last_access_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                     ON CONFLICT (origin, media_id) DO UPDATE
                     SET content_type = excluded.content_type, filename = excluded.filename,
                         size = excluded.size, sha256 = excluded.sha256,
                         fetched_ms = excluded.fetched_ms, last_access_ms = excluded.last_access_ms",
                )
                .db()?
                .execute(params![
                    origin,
                    media_id,
                    content.content_type,
                    content.filename,
                    size,
                    content.sha256,
                    now
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn touch_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        now_ms: u64,
    ) -> StorageResult<()> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        let now = to_i64(now_ms, "remote media last_access_ms")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE remote_media SET last_access_ms = MAX(last_access_ms, ?3)
                     WHERE origin = ?1 AND media_id = ?2",
                )
                .db()?
                .execute(params![origin, media_id, now])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn put_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        thumbnail: &ThumbnailRecord,
    ) -> StorageResult<()> {
        let (origin, media_id, t) = (origin.to_owned(), media_id.to_owned(), thumbnail.clone());
        let size = to_i64(t.size, "thumbnail size")?;
        self.db
            .write(move |tx, _| {
                tx.prepare_cached(
                    "INSERT INTO remote_media_thumbnails (origin, media_id, width, height, method,
                                                          animated, content_type, size, sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (origin, media_id, width, height, method, animated) DO UPDATE
                     SET content_type = excluded.content_type, size = excluded.size,
                         sha256 = excluded.sha256",
                )
                .db()?
                .execute(params![
                    origin,
                    media_id,
                    t.width,
                    t.height,
                    t.method,
                    t.animated,
                    t.content_type,
                    size,
                    t.sha256
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn remote_thumbnails(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Vec<ThumbnailRecord>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &format!(
                        "SELECT {THUMBNAIL_COLUMNS} FROM remote_media_thumbnails
                         WHERE origin = ?1 AND media_id = ?2
                         ORDER BY width, height, method, animated"
                    ),
                    params![origin, media_id],
                    rows::thumbnail,
                )
            })
            .await
    }

    async fn media_bytes_of_user(&self, uploader: &UserId) -> StorageResult<u64> {
        let uploader = uploader.to_owned();
        self.db
            .read(move |conn| {
                let total: i64 = conn
                    .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM media WHERE uploader = ?1")
                    .db()?
                    .query_row(params![uploader.as_str()], |row| row.get(0))
                    .db()?;
                Ok(u64::try_from(total).unwrap_or(0))
            })
            .await
    }

    async fn media_ids_of_user(&self, uploader: &UserId) -> StorageResult<Vec<String>> {
        let uploader = uploader.to_owned();
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    "SELECT media_id FROM media WHERE uploader = ?1 ORDER BY media_id",
                    params![uploader.as_str()],
                    |row| row.text(0),
                )
            })
            .await
    }

    async fn delete_media(&self, media_ids: &[String]) -> StorageResult<Vec<String>> {
        let media_ids = media_ids.to_vec();
        self.db
            .write(move |tx, _| {
                let mut files = Vec::new();
                for media_id in &media_ids {
                    files.extend(query_all(
                        tx,
                        "SELECT sha256 FROM media WHERE media_id = ?1 AND sha256 IS NOT NULL
                         UNION SELECT sha256 FROM media_thumbnails WHERE media_id = ?1",
                        params![media_id],
                        |row| row.text(0),
                    )?);
                    tx.prepare_cached("DELETE FROM media_thumbnails WHERE media_id = ?1")
                        .db()?
                        .execute(params![media_id])
                        .db()?;
                    tx.prepare_cached("DELETE FROM media WHERE media_id = ?1")
                        .db()?
                        .execute(params![media_id])
                        .db()?;
                }
                files.sort();
                files.dedup();
                Ok(files)
            })
            .await
    }

    async fn delete_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> StorageResult<Vec<String>> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.db
            .write(move |tx, _| {
                let files = query_all(
                    tx,
                    "SELECT sha256 FROM remote_media WHERE origin = ?1 AND media_id = ?2
                     UNION SELECT sha256 FROM remote_media_thumbnails
                     WHERE origin = ?1 AND media_id = ?2",
                    params![origin, media_id],
                    |row| row.text(0),
                )?;
                for table in ["remote_media_thumbnails", "remote_media"] {
                    tx.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE origin = ?1 AND media_id = ?2"
                    ))
                    .db()?
                    .execute(params![origin, media_id])
                    .db()?;
                }
                Ok(files)
            })
            .await
    }

    async fn remote_media_by_access(&self) -> StorageResult<Vec<RemoteMediaRecord>> {
        self.db
            .read(move |conn| {
                query_all(
                    conn,
                    &format!(
                        "SELECT {REMOTE_MEDIA_COLUMNS} FROM remote_media
                         ORDER BY last_access_ms, origin, media_id"
                    ),
                    [],
                    rows::remote_media,
                )
            })
            .await
    }

    async fn sha256_in_use(&self, sha256: &str) -> StorageResult<bool> {
        let sha256 = sha256.to_owned();
        self.db
            .read(move |conn| {
                let used = query_first(
                    conn,
                    "SELECT 1 WHERE EXISTS (SELECT 1 FROM media WHERE sha256 = ?1)
                        OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = ?1)
                        OR EXISTS (SELECT 1 FROM remote_media WHERE sha256 = ?1)
                        OR EXISTS (SELECT 1 FROM remote_media_thumbnails WHERE sha256 = ?1)",
                    params![sha256],
                    |_| Ok(()),
                )?;
                Ok(used.is_some())
            })
            .await
    }

    async fn set_media_quarantined(
        &self,
        origin: &str,
        media_id: &str,
        at_ms: Option<u64>,
    ) -> StorageResult<bool> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        let at = at_ms
            .map(|at| to_i64(at, "media quarantined_ms"))
            .transpose()?;
        self.db
            .write(move |tx, _| {
                let changed = match at {
                    Some(at) => tx
                        .prepare_cached(
                            "INSERT INTO media_quarantine (origin, media_id, quarantined_ms)
                             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                        )
                        .db()?
                        .execute(params![origin, media_id, at])
                        .db()?,
                    None => tx
                        .prepare_cached(
                            "DELETE FROM media_quarantine WHERE origin = ?1 AND media_id = ?2",
                        )
                        .db()?
                        .execute(params![origin, media_id])
                        .db()?,
                };
                Ok(changed > 0)
            })
            .await
    }

    async fn is_media_quarantined(&self, origin: &str, media_id: &str) -> StorageResult<bool> {
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        self.db
            .read(move |conn| {
                let found = query_first(
                    conn,
                    "SELECT 1 FROM media_quarantine WHERE origin = ?1 AND media_id = ?2",
                    params![origin, media_id],
                    |_| Ok(()),
                )?;
                Ok(found.is_some())
            })
            .await
    }
}
