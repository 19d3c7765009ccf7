-- Myelin PostgreSQL schema (SQLite's 0014): server-side search (`POST /search`). The text of
-- timeline events that have some (a message's body, a room's name or topic;
-- `Pdu::searchable_text`), written with the event (never for a rejected one) and removed when
-- the event is redacted, searched through a GIN index over its English text vector.
CREATE TABLE event_search (
    event_id   TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    value      TEXT NOT NULL
);
CREATE INDEX event_search_by_room ON event_search (room_id, stream_pos);
CREATE INDEX event_search_text ON event_search USING GIN (to_tsvector('english', value));

-- The events stored so far, as the server indexes them (redacted ones have lost the text).
-- `json` (not `jsonb`, which refuses `\u0000`), and values with a NUL escape are skipped before
-- they are decoded: a hostile event cannot fail the migration.
INSERT INTO event_search (event_id, room_id, key, stream_pos, sender, value)
SELECT event_id, room_id, key, stream_pos, sender, raw ->> 0
FROM (
    SELECT event_id, room_id, stream_pos, sender,
           CASE type WHEN 'm.room.message' THEN 'content.body'
                     WHEN 'm.room.name' THEN 'content.name'
                     ELSE 'content.topic' END AS key,
           json_build_array(CASE WHEN json_typeof(json::json -> 'content') = 'object' THEN
               CASE type WHEN 'm.room.message' THEN json::json -> 'content' -> 'body'
                         WHEN 'm.room.name' THEN json::json -> 'content' -> 'name'
                         ELSE json::json -> 'content' -> 'topic' END END) AS raw
    FROM events
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND NOT rejected
) candidates
WHERE json_typeof(raw -> 0) = 'string'
  AND strpos((raw -> 0)::TEXT, '\u0000') = 0
  AND trim(raw ->> 0) <> '';
