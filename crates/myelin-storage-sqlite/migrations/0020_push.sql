-- Myelin SQLite schema, version 20: push notifications. One row per (user, event) the user's
-- push rules made notify, written with the event; pushers, owned by the device that set them;
-- and each HTTP pusher's queue of notifications not yet accepted by its push gateway.
CREATE TABLE event_push_actions (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    thread_id  TEXT,
    actions    TEXT NOT NULL,
    highlight  INTEGER NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
) STRICT, WITHOUT ROWID;

-- Keyed by stream position first, so that a commit appends to one page instead of one per
-- user and room (a redaction removes its target's rows through the key); counts per room after
-- a receipt, and `/notifications` per user newest first.
CREATE INDEX event_push_actions_by_room ON event_push_actions (room_id, stream_pos);
CREATE INDEX event_push_actions_by_user ON event_push_actions (user_id, stream_pos);

CREATE TABLE pushers (
    id                  INTEGER PRIMARY KEY,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    UNIQUE (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX pushers_by_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_by_device ON pushers (user_id, device_id);

CREATE TABLE push_queue (
    pusher_id  INTEGER NOT NULL REFERENCES pushers (id) ON DELETE CASCADE,
    stream_pos INTEGER NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    actions    TEXT NOT NULL,
    PRIMARY KEY (pusher_id, stream_pos)
) STRICT;
CREATE INDEX push_queue_by_pos ON push_queue (stream_pos);
