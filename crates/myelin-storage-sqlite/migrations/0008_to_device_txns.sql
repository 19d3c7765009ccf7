-- Myelin SQLite schema, version 8: `PUT /sendToDevice/{eventType}/{txnId}` is idempotent per
-- device; a retried request finds its transaction here and queues nothing again.
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, event_type, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
