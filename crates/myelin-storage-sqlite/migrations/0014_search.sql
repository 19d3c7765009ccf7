-- Server-side search (`POST /search`): the text of timeline events that have some (a message's
-- body, a room's name or topic; `Pdu::searchable_text`), written with the event (never for a
-- rejected one) and removed when the event is redacted. `doc_id` ties a row to its entry in the
-- FTS5 index, which the triggers keep in step (an external-content table: the text is stored
-- once, here).
CREATE TABLE event_search (
    doc_id     INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    room_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    value      TEXT NOT NULL
) STRICT;
CREATE INDEX event_search_by_room ON event_search (room_id, stream_pos);

CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content = 'event_search', content_rowid = 'doc_id', tokenize = 'porter unicode61'
);
CREATE TRIGGER event_search_indexed AFTER INSERT ON event_search BEGIN
    INSERT INTO event_search_fts (rowid, value) VALUES (new.doc_id, new.value);
END;
CREATE TRIGGER event_search_unindexed AFTER DELETE ON event_search BEGIN
    INSERT INTO event_search_fts (event_search_fts, rowid, value)
    VALUES ('delete', old.doc_id, old.value);
END;

-- The events stored so far, as the server indexes them (redacted ones have lost the text).
INSERT INTO event_search (event_id, room_id, key, stream_pos, sender, value)
SELECT event_id, room_id, key, stream_pos, sender, value FROM (
    SELECT event_id, room_id, stream_pos, sender,
           CASE type WHEN 'm.room.message' THEN 'content.body'
                     WHEN 'm.room.name' THEN 'content.name'
                     ELSE 'content.topic' END AS key,
           CASE type WHEN 'm.room.message' THEN json_extract(json, '$.content.body')
                     WHEN 'm.room.name' THEN json_extract(json, '$.content.name')
                     ELSE json_extract(json, '$.content.topic') END AS value,
           CASE type WHEN 'm.room.message' THEN json_type(json, '$.content.body')
                     WHEN 'm.room.name' THEN json_type(json, '$.content.name')
                     ELSE json_type(json, '$.content.topic') END AS value_type
    FROM events
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
      AND rejected = 0 AND json_valid(json)
)
WHERE value_type = 'text' AND trim(value) <> '';
