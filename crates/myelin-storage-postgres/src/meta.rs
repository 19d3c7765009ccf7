//! `MetaStore`: the schema version and the server name the database belongs to.

use async_trait::async_trait;
use myelin_storage::{server_name_mismatch, DbStatus, MetaStore, StorageResult};

use crate::convert::get;
use crate::pool::Conn;
use crate::{migrations, PgStore};

#[async_trait]
impl MetaStore for PgStore {
    async fn claim_server_name(&self, server_name: &str) -> StorageResult<()> {
        let mut conn = self.db.write().await?;
        let result = async {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('server_name', $1) ON CONFLICT (key) DO NOTHING",
                &[&server_name],
            )
            .await?;
            let row = conn
                .query_one("SELECT value FROM meta WHERE key = 'server_name'", &[])
                .await?;
            let stored: String = get(&row, 0)?;
            if stored != server_name {
                return Err(server_name_mismatch(&stored, server_name));
            }
            Ok(())
        }
        .await;
        conn.finish(result).await
    }

    async fn server_name(&self) -> StorageResult<Option<String>> {
        let mut conn = self.db.read().await?;
        stored_server_name(&mut conn).await
    }

    async fn schema_version(&self) -> StorageResult<i64> {
        let mut conn = self.db.read().await?;
        migrations::current_version(&mut conn).await
    }
}

async fn stored_server_name(conn: &mut Conn) -> StorageResult<Option<String>> {
    let exists = conn
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .await?;
    if !get::<bool>(&exists, 0)? {
        return Ok(None);
    }
    let row = conn
        .query_opt("SELECT value FROM meta WHERE key = 'server_name'", &[])
        .await?;
    row.map(|row| get(&row, 0)).transpose()
}

pub(crate) async fn status(conn: &mut Conn) -> StorageResult<DbStatus> {
    Ok(DbStatus {
        schema_version: migrations::current_version(conn).await?,
        known_schema_version: migrations::SCHEMA_VERSION,
        server_name: stored_server_name(conn).await?,
    })
}
