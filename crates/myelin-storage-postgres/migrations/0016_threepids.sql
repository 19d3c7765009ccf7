-- Third-party identifiers (e-mail addresses): validation sessions (durable, so a link mailed
-- before a restart still works after) and the addresses bound to accounts. (SQLite's 0017.)
CREATE TABLE threepid_sessions (
    sid           TEXT PRIMARY KEY NOT NULL,
    client_secret TEXT NOT NULL,
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    send_attempt  BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    validated_ms  BIGINT
);
CREATE INDEX threepid_sessions_by_secret ON threepid_sessions (client_secret, medium, address);

CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_ms BIGINT NOT NULL,
    added_ms     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_by_user ON user_threepids (user_id);
