-- Myelin PostgreSQL schema (SQLite's 0010): event relationships (`m.relates_to`, spec:
-- Client-Server API "Forming relationships between events"). One row per timeline event that
-- declares a relation with an `event_id` and a `rel_type`, written with the event (never for a
-- rejected one) and removed when the event is redacted; `stream_pos` is the relating event's own
-- position.
CREATE TABLE event_relations (
    event_id   TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL,
    parent_id  TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender     TEXT NOT NULL,
    stream_pos BIGINT NOT NULL
);
-- `/relations` and the bundled aggregations: a parent's children in stream order.
CREATE INDEX event_relations_by_parent ON event_relations (parent_id, stream_pos);
-- `/threads`: a room's thread replies grouped by root.
CREATE INDEX event_relations_by_room ON event_relations (room_id, rel_type, parent_id, stream_pos);

-- The relations of the events stored so far, parsed as `Pdu::relation` does: a string
-- `event_id` that looks like an event ID (the server also checks its grammar) and a string
-- `rel_type` of at most 255 bytes. Redacted events have lost their `m.relates_to` already.
-- `json` (not `jsonb`, which refuses `\u0000`), and strings with escapes are skipped before they
-- are decoded (no event ID or relationship type has one): a hostile event cannot fail the
-- migration.
INSERT INTO event_relations (event_id, room_id, parent_id, rel_type, event_type, sender, stream_pos)
SELECT event_id, room_id, parent_id, rel_type, type, sender, stream_pos
FROM (
    SELECT event_id, room_id, type, sender, stream_pos,
           CASE WHEN json_typeof(rel -> 'event_id') = 'string'
                 AND strpos((rel -> 'event_id')::TEXT, '\') = 0
                THEN rel ->> 'event_id' END AS parent_id,
           CASE WHEN json_typeof(rel -> 'rel_type') = 'string'
                 AND strpos((rel -> 'rel_type')::TEXT, '\') = 0
                THEN rel ->> 'rel_type' END AS rel_type
    FROM (
        SELECT event_id, room_id, type, sender, stream_pos,
               CASE WHEN json_typeof(json::json -> 'content') = 'object'
                    THEN json::json -> 'content' -> 'm.relates_to' END AS rel
        FROM events
        WHERE NOT rejected
    ) AS parsed
    WHERE json_typeof(rel) = 'object'
) AS relations
WHERE parent_id LIKE '$%' AND octet_length(parent_id) BETWEEN 2 AND 255
  AND octet_length(rel_type) <= 255;
