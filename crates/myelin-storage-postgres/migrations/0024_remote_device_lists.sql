-- Myelin PostgreSQL schema (SQLite's 0025): the cache of other servers' users' device lists. A
-- user has a row in `remote_device_lists` only while their list is trusted (fetched whole, then
-- kept current by `m.device_list_update` EDUs); `stream_id` is their server's position of the
-- last update applied, `fetched_pos` our stream position when the whole list was last fetched.
CREATE TABLE remote_device_lists (
    user_id          TEXT PRIMARY KEY,
    stream_id        BIGINT NOT NULL,
    master_key       TEXT,
    self_signing_key TEXT,
    fetched_pos      BIGINT NOT NULL
);

-- The cached devices, with their signed identity keys as the user's server gave them.
CREATE TABLE remote_devices (
    user_id      TEXT NOT NULL REFERENCES remote_device_lists (user_id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    keys_json    TEXT NOT NULL,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Users deactivated with `erase: true`: their events are served redacted to other servers and
-- to users who were not in the room when they were sent.
CREATE TABLE erased_users (
    user_id   TEXT PRIMARY KEY,
    erased_ms BIGINT NOT NULL
);
