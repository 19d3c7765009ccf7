-- SSO identities (OpenID Connect): the account a provider's subject logs in as. The provider is
-- its configured `idp_id`; renaming it leaves its users' mappings behind, as in Synapse.
-- (SQLite's 0028.)
CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    added_ms      BIGINT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_by_user ON user_external_ids (user_id);
