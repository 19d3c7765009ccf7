-- Myelin SQLite schema, version 18: the cache of other servers' media fetched for our users.
-- The bytes are files named by `sha256` under the media directory, shared with local media of the
-- same bytes. `last_access_ms` is when the copy was last served (updated coarsely), for
-- least-recently-used retention.
CREATE TABLE remote_media (
    origin         TEXT NOT NULL,
    media_id       TEXT NOT NULL,
    content_type   TEXT,
    filename       TEXT,
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    fetched_ms     INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, media_id)
) STRICT;

CREATE INDEX remote_media_by_access ON remote_media (last_access_ms);

-- Thumbnails of remote media, fetched from their server or made here from the cached copy; a
-- thumbnail may be cached without the original.
CREATE TABLE remote_media_thumbnails (
    origin       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    animated     INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method, animated)
) STRICT;
