-- Myelin SQLite schema, version 9: server-side key backups. `auth_data` and `session_data` are
-- the opaque JSON clients gave. Versions are numbered per user and never reused: a deleted
-- version stays, marked, without its keys.
CREATE TABLE key_backup_versions (
    user_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
) STRICT;

-- One key per session of a room in a version: the best one uploaded (see the storage trait).
CREATE TABLE key_backup_keys (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions (user_id, version)
        ON DELETE CASCADE
) STRICT;
