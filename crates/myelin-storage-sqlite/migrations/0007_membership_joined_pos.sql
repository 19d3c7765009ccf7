-- Myelin SQLite schema, version 7: the stream position of each user's latest join to a room, kept
-- when they leave, so that history visibility can tell whether they joined after an event
-- (`shared`: "the user joined the room at any point after the event was sent").
ALTER TABLE room_memberships ADD COLUMN joined_pos INTEGER;
UPDATE room_memberships SET joined_pos = (
    SELECT max(e.stream_pos) FROM events e
    WHERE e.room_id = room_memberships.room_id AND e.type = 'm.room.member'
      AND e.state_key = room_memberships.user_id AND e.rejected = 0
      AND json_extract(e.json, '$.content.membership') = 'join'
);
