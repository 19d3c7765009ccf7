-- Myelin PostgreSQL schema, version 19 (SQLite's version 20): push notifications. One row per
-- event that notifies any local user, listing them with their actions; per-(room, user,
-- timeline) unread counters kept with it; pushers, owned by the device that set them; and each
-- HTTP pusher's queue of notifications not yet accepted by its push gateway.
CREATE TABLE push_events (
    stream_pos BIGINT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    thread_id  TEXT,
    -- {"a": [actions…], "u": [[user, index into a, highlight], …]}
    notified   TEXT NOT NULL
);
-- Recounts after a receipt read one room's rows after a position; `/notifications` reads the
-- user's rooms newest first.
CREATE INDEX push_events_by_room ON push_events (room_id, stream_pos);

-- Unread notifications per user, room and timeline (`main` or a thread root) after the user's
-- read receipts; a row exists only while something is unread.
CREATE TABLE unread_counts (
    room_id       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL,
    notifications BIGINT NOT NULL,
    highlights    BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, thread_id)
);
CREATE INDEX unread_counts_by_user ON unread_counts (user_id);

CREATE TABLE pushers (
    id                  BIGSERIAL PRIMARY KEY,
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
    created_ms          BIGINT NOT NULL,
    UNIQUE (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX pushers_by_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_by_device ON pushers (user_id, device_id);

CREATE TABLE push_queue (
    pusher_id  BIGINT NOT NULL REFERENCES pushers (id) ON DELETE CASCADE,
    stream_pos BIGINT NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    actions    TEXT NOT NULL,
    PRIMARY KEY (pusher_id, stream_pos)
);
CREATE INDEX push_queue_by_pos ON push_queue (stream_pos);
