//! `MetaStore`: the schema version and the server name the database belongs to, and reading
//! both from a file without migrating it.

use std::path::Path;

use async_trait::async_trait;
use myelin_storage::{server_name_mismatch, DbStatus, MetaStore, StorageError, StorageResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::convert::Db;
use crate::{migrations, SqliteStore};

#[async_trait]
impl MetaStore for SqliteStore {
    async fn claim_server_name(&self, server_name: &str) -> StorageResult<()> {
        let wanted = server_name.to_owned();
        self.db
            .write(move |tx, _| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('server_name', ?1) ON CONFLICT (key) DO NOTHING",
                    [&wanted],
                )
                .db()?;
                let stored: String = tx
                    .query_row("SELECT value FROM meta WHERE key = 'server_name'", [], |row| row.get(0))
                    .db()?;
                if stored != wanted {
                    return Err(server_name_mismatch(&stored, &wanted));
                }
                Ok(())
            })
            .await
    }

    async fn server_name(&self) -> StorageResult<Option<String>> {
        self.db.read(stored_server_name).await
    }

    async fn schema_version(&self) -> StorageResult<i64> {
        self.db.read(migrations::current_version).await
    }
}

fn stored_server_name(conn: &Connection) -> StorageResult<Option<String>> {
    if !table_exists(conn, "meta")? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'server_name'",
        [],
        |row| row.get(0),
    )
    .optional()
    .db()
}

fn table_exists(conn: &Connection, name: &str) -> StorageResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )
    .db()
}

/// Reads the schema version and server name of the database file at `path`, read-only and
/// without migrating it. A missing file is an error (nothing is created).
pub fn status(path: &Path) -> StorageResult<DbStatus> {
    if !path.is_file() {
        return Err(StorageError::Backend(format!(
            "no database file at {}",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()?;
    let schema_version = if table_exists(&conn, "schema_version")? {
        migrations::current_version(&conn)?
    } else {
        0
    };
    Ok(DbStatus {
        schema_version,
        known_schema_version: migrations::SCHEMA_VERSION,
        server_name: stored_server_name(&conn)?,
    })
}
