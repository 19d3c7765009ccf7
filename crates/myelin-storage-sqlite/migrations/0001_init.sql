-- Myelin SQLite schema, version 1.
-- Timestamps are milliseconds since the Unix epoch. Stream positions come from the single
-- global counter in `stream_counter`; every write that takes a position also updates it.

CREATE TABLE stream_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    pos INTEGER NOT NULL
) STRICT;
INSERT INTO stream_counter (id, pos) VALUES (0, 0);

-- Accounts ------------------------------------------------------------------------------------

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    displayname   TEXT,
    avatar_url    TEXT
) STRICT;

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ms INTEGER,
    last_seen_ip TEXT,
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT;

-- Only hashes of tokens are stored.
CREATE TABLE access_tokens (
    token_hash         TEXT PRIMARY KEY NOT NULL,
    refresh_token_hash TEXT UNIQUE,
    user_id            TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    expires_at_ms      INTEGER,
    created_ms         INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

-- Rooms and events ----------------------------------------------------------------------------

-- `current_snapshot` is the state snapshot that `current_state` equals (NULL if unknown), so
-- that moving the current state along a delta only writes the delta.
CREATE TABLE rooms (
    room_id          TEXT PRIMARY KEY NOT NULL,
    version          TEXT NOT NULL,
    creator          TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    current_snapshot INTEGER
) STRICT;

-- Delta-compressed state: a snapshot is its base (if any) with its entries replaced.
CREATE TABLE state_snapshots (
    snapshot_id INTEGER PRIMARY KEY,
    room_id     TEXT NOT NULL,
    base_id     INTEGER REFERENCES state_snapshots (snapshot_id),
    depth       INTEGER NOT NULL
) STRICT;

CREATE TABLE state_snapshot_entries (
    snapshot_id INTEGER NOT NULL REFERENCES state_snapshots (snapshot_id),
    type        TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, type, state_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE events (
    event_id         TEXT PRIMARY KEY NOT NULL,
    room_id          TEXT NOT NULL,
    stream_pos       INTEGER NOT NULL UNIQUE,
    depth            INTEGER NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    json             TEXT NOT NULL,
    rejected         INTEGER NOT NULL DEFAULT 0,
    state_snapshot   INTEGER NOT NULL REFERENCES state_snapshots (snapshot_id),
    txn_device       TEXT,
    txn_id           TEXT,
    redacted_by      TEXT
) STRICT;
CREATE INDEX events_room_timeline ON events (room_id, stream_pos);

CREATE TABLE event_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE current_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE room_memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    forgotten  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX room_memberships_by_user ON room_memberships (user_id);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
) STRICT;
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);

-- Per-user data -------------------------------------------------------------------------------

-- `room_id` is '' for global account data.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
) STRICT;
CREATE INDEX account_data_by_pos ON account_data (user_id, stream_pos);

-- `thread_id` is '' for unthreaded receipts.
CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    stream_pos   INTEGER NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
) STRICT;
CREATE INDEX receipts_by_pos ON receipts (room_id, stream_pos);

CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY NOT NULL,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    last_active_ms INTEGER NOT NULL,
    stream_pos     INTEGER NOT NULL
) STRICT;

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    filter    TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
) STRICT;
