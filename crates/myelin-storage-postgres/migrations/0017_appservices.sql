-- Myelin PostgreSQL schema: application-service transactions. One row per appservice: the
-- stream position it has been sent everything up to, the next txnId, and the transaction stored
-- before it is sent (re-sent as it is, under the same txnId, until accepted).
CREATE TABLE appservice_txns (
    appservice_id  TEXT PRIMARY KEY NOT NULL,
    delivered_pos  BIGINT NOT NULL,
    next_txn_id    BIGINT NOT NULL,
    pending_txn_id BIGINT,
    pending_up_to  BIGINT,
    pending_body   TEXT
);
