-- Myelin SQLite schema, version 27: the unread counters (`unread_counts`) are no longer
-- updated by each event's own transaction. A background fold adds the `push_events` rows after
-- `push_fold.counted_to` to them in batches, one counter update per (room, user, timeline)
-- rather than one per member and message, and moves `counted_to` in the same transaction;
-- reads add the rows not folded yet. Every row written before this version is already counted.
CREATE TABLE push_fold (
    id         INTEGER PRIMARY KEY CHECK (id = 0),
    counted_to INTEGER NOT NULL
) STRICT;
INSERT INTO push_fold (id, counted_to) SELECT 0, pos FROM stream_counter WHERE id = 0;
