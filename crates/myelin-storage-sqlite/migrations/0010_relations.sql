-- Myelin SQLite schema: event relationships (`m.relates_to`, spec: Client-Server API "Forming
-- relationships between events"). One row per timeline event that declares a relation with an
-- `event_id` and a `rel_type`, written with the event (never for a rejected one) and removed when
-- the event is redacted; `stream_pos` is the relating event's own position.
CREATE TABLE event_relations (
    event_id   TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL,
    parent_id  TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender     TEXT NOT NULL,
    stream_pos INTEGER NOT NULL
) STRICT;
-- `/relations` and the bundled aggregations: a parent's children in stream order.
CREATE INDEX event_relations_by_parent ON event_relations (parent_id, stream_pos);
-- `/threads`: a room's thread replies grouped by root.
CREATE INDEX event_relations_by_room ON event_relations (room_id, rel_type, parent_id, stream_pos);

-- The relations of the events stored so far, parsed as `Pdu::relation` does: a string
-- `event_id` that looks like an event ID (the server also checks its grammar) and a string
-- `rel_type` of at most 255 bytes. Redacted events have lost their `m.relates_to` already.
INSERT INTO event_relations (event_id, room_id, parent_id, rel_type, event_type, sender, stream_pos)
SELECT event_id, room_id, parent_id, rel_type, type, sender, stream_pos
FROM (
    SELECT event_id, room_id, type, sender, stream_pos,
           json_extract(json, '$.content."m.relates_to".event_id') AS parent_id,
           json_extract(json, '$.content."m.relates_to".rel_type') AS rel_type,
           json_type(json, '$.content."m.relates_to".event_id') AS parent_type,
           json_type(json, '$.content."m.relates_to".rel_type') AS rel_type_type
    FROM events
    WHERE rejected = 0
)
WHERE parent_type = 'text' AND rel_type_type = 'text'
  AND substr(parent_id, 1, 1) = '$' AND length(CAST(parent_id AS BLOB)) BETWEEN 2 AND 255
  AND length(CAST(rel_type AS BLOB)) <= 255;
