-- Third-party identifiers (e-mail addresses): validation sessions (durable, so a link mailed
-- before a restart still works after) and the addresses bound to accounts.
CREATE TABLE threepid_sessions (
    sid           TEXT PRIMARY KEY NOT NULL,
    client_secret TEXT NOT NULL,
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    send_attempt  INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    validated_ms  INTEGER
) STRICT;
CREATE INDEX threepid_sessions_by_secret ON threepid_sessions (client_secret, medium, address);

CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_ms INTEGER NOT NULL,
    added_ms     INTEGER NOT NULL,
    PRIMARY KEY (medium, address)
) STRICT, WITHOUT ROWID;
CREATE INDEX user_threepids_by_user ON user_threepids (user_id);
