-- Myelin SQLite schema, version 2: per-database facts. `server_name` is written on the first
-- start and checked on every later one.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
