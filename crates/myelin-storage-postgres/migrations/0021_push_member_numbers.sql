-- Myelin PostgreSQL schema, version 21 (SQLite's version 22): a `push_events` row names the
-- users it notifies by their member number in the room rather than by user ID, and no longer
-- repeats the event's room and ID (the event row has them): the row written per message shrinks
-- from hundreds of bytes to a few dozen, and its room index goes (recounts and `/notifications`
-- find a room's rows through the events' own room index). Rows written before keep their user
-- IDs and are still read.
CREATE TABLE push_members (
    room_id   TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    -- Assigned the first time an event notifies the user in the room; never reused.
    member_no BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE UNIQUE INDEX push_members_by_number ON push_members (room_id, member_no);

DROP INDEX push_events_by_room;
ALTER TABLE push_events DROP COLUMN room_id, DROP COLUMN event_id;
