-- Myelin SQLite schema, version 12: the media repository's metadata. The bytes are files named
-- by `sha256` under the media directory. `size` and `sha256` stay NULL for a media ID created
-- (`POST /create`) and not uploaded yet, which expires unused at `unused_expires_ms`.
CREATE TABLE media (
    media_id          TEXT PRIMARY KEY,
    uploader          TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    unused_expires_ms INTEGER,
    content_type      TEXT,
    filename          TEXT,
    size              INTEGER,
    sha256            TEXT
) STRICT;

-- Counting a user's pending uploads.
CREATE INDEX media_pending_by_uploader ON media (uploader) WHERE size IS NULL;

CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    animated     INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
) STRICT;
