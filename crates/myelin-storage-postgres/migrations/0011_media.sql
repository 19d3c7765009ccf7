-- Myelin PostgreSQL schema, version 11 (SQLite's version 12): the media repository's metadata.
-- The bytes are files named by `sha256` under the media directory. `size` and `sha256` stay NULL
-- for a media ID created (`POST /create`) and not uploaded yet, which expires unused at
-- `unused_expires_ms`.
CREATE TABLE media (
    media_id          TEXT PRIMARY KEY,
    uploader          TEXT NOT NULL,
    created_ms        BIGINT NOT NULL,
    unused_expires_ms BIGINT,
    content_type      TEXT,
    filename          TEXT,
    size              BIGINT,
    sha256            TEXT
);

-- Counting a user's pending uploads.
CREATE INDEX media_pending_by_uploader ON media (uploader) WHERE size IS NULL;

CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    method       TEXT NOT NULL,
    animated     BOOLEAN NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);
