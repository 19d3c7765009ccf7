-- Myelin SQLite schema, version 5: end-to-end encryption keys, device-list changes and
-- to-device messages. Key material is the JSON clients uploaded, kept as text.

-- A device's identity keys; they go with the device.
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    keys_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;

-- Unclaimed one-time keys; `seq` orders them by upload so the oldest is claimed first.
CREATE TABLE one_time_keys (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    UNIQUE (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX one_time_keys_by_algorithm ON one_time_keys (user_id, device_id, algorithm, seq);

-- One fallback key per device and algorithm, handed out when no one-time key is left.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;

-- Cross-signing keys (`master`, `self_signing`, `user_signing`).
CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, kind)
) STRICT;

-- The device-list change stream: a user's devices or keys changed at a position.
CREATE TABLE device_list_changes (
    stream_pos INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
) STRICT;

-- To-device messages waiting for their device to acknowledge them.
CREATE TABLE to_device_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_pos   INTEGER NOT NULL,
    recipient    TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    sender       TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    content_json TEXT NOT NULL,
    FOREIGN KEY (recipient, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX to_device_by_device ON to_device_messages (recipient, device_id, stream_pos);
