-- Myelin SQLite schema, version 6: finding a room's event nearest a time
-- (`/timestamp_to_event`).
CREATE INDEX events_room_time ON events (room_id, origin_server_ts);
