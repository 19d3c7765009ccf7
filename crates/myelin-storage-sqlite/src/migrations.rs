//! Numbered schema migrations, embedded from `migrations/*.sql` and tracked in `schema_version`.

use rusqlite::{Connection, TransactionBehavior};

use myelin_storage::{newer_schema, StorageResult};

use crate::convert::{now_ms, Db};

/// Migrations in order; migration `i` (0-based) brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_meta.sql"),
    include_str!("../migrations/0003_federation.sql"),
    include_str!("../migrations/0004_room_directory.sql"),
    include_str!("../migrations/0005_e2ee_keys.sql"),
    include_str!("../migrations/0006_event_timestamps.sql"),
    include_str!("../migrations/0007_membership_joined_pos.sql"),
    include_str!("../migrations/0008_to_device_txns.sql"),
    include_str!("../migrations/0009_key_backup.sql"),
    include_str!("../migrations/0010_relations.sql"),
    include_str!("../migrations/0011_reports.sql"),
    include_str!("../migrations/0012_media.sql"),
    include_str!("../migrations/0013_guests.sql"),
    include_str!("../migrations/0014_search.sql"),
    include_str!("../migrations/0015_account_moderation.sql"),
    include_str!("../migrations/0016_profile_fields.sql"),
    include_str!("../migrations/0017_threepids.sql"),
    include_str!("../migrations/0018_appservices.sql"),
    include_str!("../migrations/0019_remote_media.sql"),
    include_str!("../migrations/0020_push.sql"),
    include_str!("../migrations/0021_media_operations.sql"),
    include_str!("../migrations/0022_push_member_numbers.sql"),
    include_str!("../migrations/0023_appservice_room_directory.sql"),
    include_str!("../migrations/0024_threepid_id_servers.sql"),
    include_str!("../migrations/0025_remote_device_lists.sql"),
    include_str!("../migrations/0026_device_list_streams.sql"),
    include_str!("../migrations/0027_push_counts_folded.sql"),
    include_str!("../migrations/0028_user_external_ids.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], one transaction per migration; refuses a database
/// whose schema is newer than this build.
pub(crate) fn migrate(conn: &mut Connection) -> StorageResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_ms INTEGER NOT NULL
         ) STRICT;",
    )
    .db()?;
    let current = current_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(newer_schema(current, SCHEMA_VERSION));
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        // Re-check under the write lock: another process may have migrated meanwhile.
        if current_version(&tx)? >= version {
            continue;
        }
        tx.execute_batch(sql).db()?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            rusqlite::params![version, now_ms()],
        )
        .db()?;
        tx.commit().db()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

pub(crate) fn current_version(conn: &Connection) -> StorageResult<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |row| row.get(0),
    )
    .db()
}
