//! `ExternalIdStore`: SSO identities mapped to accounts.

use async_trait::async_trait;
use myelin_storage::{ExternalIdStore, NewUser, NewUserWithExternalId, StorageResult};
use ruma::OwnedUserId;

use crate::convert::{parse_id, to_i64};
use crate::PgStore;

#[async_trait]
impl ExternalIdStore for PgStore {
    async fn user_for_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<Option<OwnedUserId>> {
        let mut conn = self.db.read().await?;
        conn.query_opt_decode(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2",
            &[&auth_provider, &external_id],
            |row| parse_id(row.text(0)?, "external ID user"),
        )
        .await
    }

    async fn create_user_with_external_id(
        &self,
        user: NewUser,
        auth_provider: &str,
        external_id: &str,
    ) -> StorageResult<NewUserWithExternalId> {
        let created = to_i64(user.created_ms, "created_ms")?;
        let user_id = user.user_id.as_str();
        let mut conn = self.db.write().await?;
        let result = async {
            if !crate::account::insert_user(&mut conn, &user).await? {
                return Ok(NewUserWithExternalId::UserInUse);
            }
            let mapped = conn
                .execute(
                    "INSERT INTO user_external_ids (auth_provider, external_id, user_id, added_ms)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (auth_provider, external_id) DO NOTHING",
                    &[&auth_provider, &external_id, &user_id, &created],
                )
                .await?;
            if mapped == 0 {
                // Another login mapped the identity first: the account goes with it, in this
                // transaction, so it never existed.
                conn.execute("DELETE FROM users WHERE user_id = $1", &[&user_id])
                    .await?;
                return Ok(NewUserWithExternalId::ExternalIdInUse);
            }
            Ok(NewUserWithExternalId::Created)
        }
        .await;
        conn.finish(result).await
    }
}
