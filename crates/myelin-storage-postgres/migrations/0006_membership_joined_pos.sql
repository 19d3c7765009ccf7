-- Myelin PostgreSQL schema, version 6 (SQLite's version 7): the stream position of each user's
-- latest join to a room, kept when they leave, so that history visibility can tell whether they
-- joined after an event (`shared`).
ALTER TABLE room_memberships ADD COLUMN joined_pos BIGINT;
UPDATE room_memberships SET joined_pos = (
    SELECT max(e.stream_pos) FROM events e
    WHERE e.room_id = room_memberships.room_id AND e.type = 'm.room.member'
      AND e.state_key = room_memberships.user_id AND NOT e.rejected
      AND (e.json::jsonb -> 'content' ->> 'membership') = 'join'
);
