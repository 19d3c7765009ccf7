-- Myelin SQLite schema: media operations. Quarantined media (of this server or another, by
-- origin) answers 404 everywhere; a row here quarantines it whether or not it is stored yet.
CREATE TABLE media_quarantine (
    origin         TEXT NOT NULL,
    media_id       TEXT NOT NULL,
    quarantined_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, media_id)
) STRICT;

-- The storage quota sums a user's uploads at each upload.
CREATE INDEX media_by_uploader ON media (uploader, size);

-- Deleting media removes a file only when no row names its SHA-256 any more.
CREATE INDEX media_by_sha256 ON media (sha256);
CREATE INDEX media_thumbnails_by_sha256 ON media_thumbnails (sha256);
CREATE INDEX remote_media_by_sha256 ON remote_media (sha256);
CREATE INDEX remote_media_thumbnails_by_sha256 ON remote_media_thumbnails (sha256);
