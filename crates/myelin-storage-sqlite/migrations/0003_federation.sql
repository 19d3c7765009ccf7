-- Myelin SQLite schema, version 3: federation.

-- Events known but outside the timeline (`status`: outlier, rejected or soft_failed). They take
-- no stream position; an event persisted into `events` later leaves this table.
CREATE TABLE event_outliers (
    event_id    TEXT PRIMARY KEY NOT NULL,
    room_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('outlier', 'rejected', 'soft_failed')),
    json        TEXT NOT NULL,
    received_ms INTEGER NOT NULL
) STRICT;

-- What is still to be sent to each remote server: a PDU (by event ID) or an EDU (its JSON).
-- AUTOINCREMENT: IDs never go back, even after the newest rows were removed.
CREATE TABLE federation_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_id    TEXT,
    edu         TEXT,
    created_ms  INTEGER NOT NULL,
    CHECK ((event_id IS NULL) <> (edu IS NULL))
) STRICT;
CREATE INDEX federation_outbox_by_destination ON federation_outbox (destination, id);

-- Transactions received from other servers, with the response given, so that a retry is
-- answered the same way instead of being processed again.
CREATE TABLE federation_received_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) STRICT;

-- The stripped room state that came with an invite to a room this server is not in.
CREATE TABLE remote_invite_state (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    stripped_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT;
