//! `ExternalIdStore`: SSO identities mapped to accounts.

use async_trait::async_trait;
use myelin_storage::rows::Row;
use myelin_storage::{ExternalIdStore, NewUser, NewUserWithExternalId, StorageResult};
use ruma::OwnedUserId;
use rusqlite::params;

use crate::convert::{parse_id, query_first, to_i64, Db};
use crate::SqliteStore;

#[async_trait]
impl ExternalIdStore for SqliteStore {
    async fn user_for_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<Option<OwnedUserId>> {
        let (provider, external) = (auth_provider.to_owned(), external_id.to_owned());
        self.db
            .read(move |conn| {
                query_first(
                    conn,
                    "SELECT user_id FROM user_external_ids
                     WHERE auth_provider = ?1 AND external_id = ?2",
                    params![provider, external],
                    |row: &dyn Row| parse_id(row.text(0)?, "external ID user"),
                )
            })
            .await
    }

    async fn create_user_with_external_id(
        &self,
        user: NewUser,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<NewUserWithExternalId> {
        let created = to_i64(user.created_ms, "created_ms")?;
        let (provider, external) = (auth_provider.to_owned(), external_id.to_owned());
        self.db
            .write(move |tx, _| {
                let user_id = user.user_id.as_str();
                if !crate::account::insert_user(tx, &user)? {
                    return Ok(NewUserWithExternalId::UserInUse);
                }
                let mapped = tx
                    .prepare_cached(
                        "INSERT INTO user_external_ids (auth_provider, external_id, user_id, added_ms)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (auth_provider, external_id) DO NOTHING",
                    )
                    .db()?
                    .execute(params![provider, external, user_id, created])
                    .db()?;
                if mapped == 0 {
                    // Another login mapped the identity first: the account goes with it, in
                    // this transaction, so it never existed.
                    tx.execute("DELETE FROM users WHERE user_id = ?1", [user_id])
                        .db()?;
                    return Ok(NewUserWithExternalId::ExternalIdInUse);
                }
                Ok(NewUserWithExternalId::Created)
            })
            .await
    }
}
