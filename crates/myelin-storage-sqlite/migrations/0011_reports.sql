-- Myelin SQLite schema, version 11: content reports (events, rooms, users) kept for the server's
-- administrators. Exactly one of the targets is set per row: an event (with its room), a room,
-- or a user.
CREATE TABLE reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter    TEXT NOT NULL,
    room_id     TEXT,
    event_id    TEXT,
    target_user TEXT,
    reason      TEXT,
    score       INTEGER,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX reports_by_time ON reports (created_ms);
