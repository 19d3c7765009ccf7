-- Myelin PostgreSQL schema, version 2: federation. The same tables and columns as the SQLite
-- schema's version 3 (crates/myelin-storage-sqlite/migrations/0003_federation.sql).

-- Events known but outside the timeline (`status`: outlier, rejected or soft_failed). They take
-- no stream position; an event persisted into `events` later leaves this table.
CREATE TABLE event_outliers (
    event_id    TEXT PRIMARY KEY NOT NULL,
    room_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('outlier', 'rejected', 'soft_failed')),
    json        TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);

-- What is still to be sent to each remote server: a PDU (by event ID) or an EDU (its JSON).
CREATE TABLE federation_outbox (
    id          BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id    TEXT,
    edu         TEXT,
    created_ms  BIGINT NOT NULL,
    CHECK ((event_id IS NULL) <> (edu IS NULL))
);
CREATE INDEX federation_outbox_by_destination ON federation_outbox (destination, id);

-- Transactions received from other servers, with the response given, so that a retry is
-- answered the same way instead of being processed again.
CREATE TABLE federation_received_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- The stripped room state that came with an invite to a room this server is not in.
CREATE TABLE remote_invite_state (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    stripped_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
