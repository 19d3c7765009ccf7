-- Myelin SQLite schema: the chain of each local user's `m.device_list_update` EDUs. `stream_id`
-- is the ID of the user's latest update: the next one names it in `prev_id`, so that a server
-- that missed an update sees the gap, and `/user/devices` answers it as the list's `stream_id`.
CREATE TABLE device_list_streams (
    user_id   TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL
) STRICT;
