//! Numbered schema migrations, embedded from `migrations/*.sql` and tracked in `schema_version`.

use myelin_storage::{newer_schema, StorageResult};

use crate::convert::{get, now_ms};
use crate::pool::Conn;

/// Migrations in order; migration `i` (0-based) brings the schema to version `i + 1`.
/// (Version 1 already holds SQLite's versions 1 and 2, so the numbers differ by one from there.)
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_federation.sql"),
    include_str!("../migrations/0003_room_directory.sql"),
    include_str!("../migrations/0004_e2ee_keys.sql"),
    include_str!("../migrations/0005_event_timestamps.sql"),
    include_str!("../migrations/0006_membership_joined_pos.sql"),
    include_str!("../migrations/0007_to_device_txns.sql"),
    include_str!("../migrations/0008_key_backup.sql"),
    include_str!("../migrations/0009_relations.sql"),
    include_str!("../migrations/0010_reports.sql"),
    include_str!("../migrations/0011_media.sql"),
    include_str!("../migrations/0012_guests.sql"),
    include_str!("../migrations/0013_search.sql"),
    include_str!("../migrations/0014_account_moderation.sql"),
    include_str!("../migrations/0015_profile_fields.sql"),
    include_str!("../migrations/0016_threepids.sql"),
    include_str!("../migrations/0017_appservices.sql"),
    include_str!("../migrations/0018_remote_media.sql"),
    include_str!("../migrations/0019_push.sql"),
    include_str!("../migrations/0020_media_operations.sql"),
    include_str!("../migrations/0021_push_member_numbers.sql"),
    include_str!("../migrations/0022_appservice_room_directory.sql"),
    include_str!("../migrations/0023_threepid_id_servers.sql"),
    include_str!("../migrations/0024_remote_device_lists.sql"),
    include_str!("../migrations/0025_device_list_streams.sql"),
    include_str!("../migrations/0026_push_counts_folded.sql"),
    include_str!("../migrations/0027_user_external_ids.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock held while migrating (`"myelinmg"` in ASCII), so that two processes starting
/// at once do not both migrate.
const MIGRATION_LOCK: i64 = 0x6d79_656c_696e_6d67;

/// Brings the database to [`SCHEMA_VERSION`] in one transaction; refuses a database whose schema
/// is newer than this build.
pub(crate) async fn migrate(conn: &mut Conn) -> StorageResult<()> {
    conn.begin().await?;
    let result = apply_pending(conn).await;
    let ended = conn
        .batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    if ended.is_ok() {
        conn.mark_idle();
    }
    result.and(ended)
}

async fn apply_pending(conn: &mut Conn) -> StorageResult<()> {
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // No "already exists, skipping" notices in the log.
    conn.batch("SET LOCAL client_min_messages = warning")
        .await?;
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT PRIMARY KEY,
             applied_ms BIGINT NOT NULL
         )",
    )
    .await?;
    let current = current_version(conn).await?;
    if current > SCHEMA_VERSION {
        return Err(newer_schema(current, SCHEMA_VERSION));
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = index as i64 + 1;
        conn.batch(sql).await?;
        conn.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

/// The schema version of the database; 0 if it has never been migrated.
pub(crate) async fn current_version(conn: &mut Conn) -> StorageResult<i64> {
    let exists = conn
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?;
    if !get::<bool>(&exists, 0)? {
        return Ok(0);
    }
    let row = conn
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
            &[],
        )
        .await?;
    get(&row, 0)
}
