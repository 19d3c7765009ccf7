-- Myelin SQLite schema, version 4: the public room directory.

-- Rooms published in the public room directory (`/publicRooms`).
CREATE TABLE room_directory (
    room_id      TEXT PRIMARY KEY NOT NULL,
    published_ms INTEGER NOT NULL
) STRICT;
