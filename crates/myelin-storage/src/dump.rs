//! Raw table access for `myelin db copy`: both backends store the same tables with the same
//! columns, so a copy reads rows from one and writes them to the other, table by table.

use async_trait::async_trait;

use crate::StorageResult;

/// One stored value. Both schemas use only integers (flags are 0/1), text and NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpValue {
    Null,
    Int(i64),
    Text(String),
}

/// A table of the schema: its name, its columns in copy order, and its primary key (the order
/// rows are read in).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub key: &'static [&'static str],
}

/// The counter table: present with one row in every migrated database, replaced by a copy.
pub const STREAM_COUNTER: &str = "stream_counter";

/// Tables that hold exactly one row in every migrated database (a position, all zero in a new
/// one): a copy replaces that row rather than adding one.
pub const SINGLE_ROW_TABLES: &[&str] = &[STREAM_COUNTER, "push_fold"];

/// Whether `table` is one of [`SINGLE_ROW_TABLES`].
pub fn is_single_row(table: &Table) -> bool {
    SINGLE_ROW_TABLES.contains(&table.name)
}

/// Every table of the current schema (`schema_version` excepted), parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: STREAM_COUNTER,
        columns: &["id", "pos"],
        key: &["id"],
    },
    Table {
        name: "meta",
        columns: &["key", "value"],
        key: &["key"],
    },
    Table {
        name: "users",
        columns: &[
            "user_id",
            "password_hash",
            "is_admin",
            "deactivated",
            "created_ms",
            "displayname",
            "avatar_url",
            "is_guest",
            "locked",
            "suspended",
        ],
        key: &["user_id"],
    },
    Table {
        name: "profile_fields",
        columns: &["user_id", "field", "value"],
        key: &["user_id", "field"],
    },
    Table {
        name: "user_threepids",
        columns: &["medium", "address", "user_id", "validated_ms", "added_ms"],
        key: &["medium", "address"],
    },
    Table {
        name: "user_threepid_id_servers",
        columns: &["user_id", "medium", "address", "id_server"],
        key: &["user_id", "medium", "address", "id_server"],
    },
    Table {
        name: "user_external_ids",
        columns: &["auth_provider", "external_id", "user_id", "added_ms"],
        key: &["auth_provider", "external_id"],
    },
    Table {
        name: "threepid_sessions",
        columns: &[
            "sid",
            "client_secret",
            "medium",
            "address",
            "token_hash",
            "send_attempt",
            "created_ms",
            "expires_ms",
            "validated_ms",
        ],
        key: &["sid"],
    },
    Table {
        name: "devices",
        columns: &[
            "user_id",
            "device_id",
            "display_name",
            "last_seen_ms",
            "last_seen_ip",
            "created_ms",
        ],
        key: &["user_id", "device_id"],
    },
    Table {
        name: "access_tokens",
        columns: &[
            "token_hash",
            "refresh_token_hash",
            "user_id",
            "device_id",
            "expires_at_ms",
            "created_ms",
        ],
        key: &["token_hash"],
    },
    Table {
        name: "rooms",
        columns: &[
            "room_id",
            "version",
            "creator",
            "created_ms",
            "current_snapshot",
        ],
        key: &["room_id"],
    },
    Table {
        name: "state_snapshots",
        columns: &["snapshot_id", "room_id", "base_id", "depth"],
        key: &["snapshot_id"],
    },
    Table {
        name: "state_snapshot_entries",
        columns: &["snapshot_id", "type", "state_key", "event_id"],
        key: &["snapshot_id", "type", "state_key"],
    },
    Table {
        name: "events",
        columns: &[
            "event_id",
            "room_id",
            "stream_pos",
            "depth",
            "type",
            "state_key",
            "sender",
            "origin_server_ts",
            "json",
            "rejected",
            "state_snapshot",
            "txn_device",
            "txn_id",
            "redacted_by",
        ],
        key: &["stream_pos"],
    },
    Table {
        name: "event_search",
        columns: &[
            "event_id",
            "room_id",
            "key",
            "stream_pos",
            "sender",
            "value",
        ],
        key: &["event_id"],
    },
    Table {
        name: "event_relations",
        columns: &[
            "event_id",
            "room_id",
            "parent_id",
            "rel_type",
            "event_type",
            "sender",
            "stream_pos",
        ],
        key: &["event_id"],
    },
    Table {
        name: "event_txns",
        columns: &["user_id", "device_id", "txn_id", "event_id"],
        key: &["user_id", "device_id", "txn_id"],
    },
    Table {
        name: "current_state",
        columns: &["room_id", "type", "state_key", "event_id"],
        key: &["room_id", "type", "state_key"],
    },
    Table {
        name: "forward_extremities",
        columns: &["room_id", "event_id"],
        key: &["room_id", "event_id"],
    },
    Table {
        name: "room_memberships",
        columns: &[
            "room_id",
            "user_id",
            "membership",
            "event_id",
            "stream_pos",
            "forgotten",
            "joined_pos",
        ],
        key: &["room_id", "user_id"],
    },
    Table {
        name: "room_aliases",
        columns: &["alias", "room_id", "creator"],
        key: &["alias"],
    },
    Table {
        name: "account_data",
        columns: &["user_id", "room_id", "type", "content", "stream_pos"],
        key: &["user_id", "room_id", "type"],
    },
    Table {
        name: "receipts",
        columns: &[
            "room_id",
            "receipt_type",
            "user_id",
            "thread_id",
            "event_id",
            "ts",
            "stream_pos",
        ],
        key: &["room_id", "receipt_type", "user_id", "thread_id"],
    },
    Table {
        name: "presence",
        columns: &[
            "user_id",
            "state",
            "status_msg",
            "last_active_ms",
            "stream_pos",
        ],
        key: &["user_id"],
    },
    Table {
        name: "filters",
        columns: &["user_id", "filter_id", "filter"],
        key: &["user_id", "filter_id"],
    },
    Table {
        name: "event_outliers",
        columns: &["event_id", "room_id", "status", "json", "received_ms"],
        key: &["event_id"],
    },
    Table {
        name: "federation_outbox",
        columns: &["id", "destination", "event_id", "edu", "created_ms"],
        key: &["id"],
    },
    Table {
        name: "federation_received_txns",
        columns: &["origin", "txn_id", "response", "received_ms"],
        key: &["origin", "txn_id"],
    },
    Table {
        name: "remote_invite_state",
        columns: &["room_id", "user_id", "stripped_state"],
        key: &["room_id", "user_id"],
    },
    Table {
        name: "device_keys",
        columns: &["user_id", "device_id", "keys_json"],
        key: &["user_id", "device_id"],
    },
    Table {
        name: "one_time_keys",
        columns: &[
            "seq",
            "user_id",
            "device_id",
            "algorithm",
            "key_id",
            "key_json",
        ],
        key: &["seq"],
    },
    Table {
        name: "fallback_keys",
        columns: &[
            "user_id",
            "device_id",
            "algorithm",
            "key_id",
            "key_json",
            "used",
        ],
        key: &["user_id", "device_id", "algorithm"],
    },
    Table {
        name: "cross_signing_keys",
        columns: &["user_id", "kind", "key_json"],
        key: &["user_id", "kind"],
    },
    Table {
        name: "erased_users",
        columns: &["user_id", "erased_ms"],
        key: &["user_id"],
    },
    Table {
        name: "remote_device_lists",
        columns: &[
            "user_id",
            "stream_id",
            "master_key",
            "self_signing_key",
            "fetched_pos",
        ],
        key: &["user_id"],
    },
    Table {
        name: "remote_devices",
        columns: &["user_id", "device_id", "keys_json", "display_name"],
        key: &["user_id", "device_id"],
    },
    Table {
        name: "device_list_streams",
        columns: &["user_id", "stream_id"],
        key: &["user_id"],
    },
    Table {
        name: "device_list_changes",
        columns: &["stream_pos", "user_id"],
        key: &["stream_pos", "user_id"],
    },
    Table {
        name: "to_device_messages",
        columns: &[
            "seq",
            "stream_pos",
            "recipient",
            "device_id",
            "sender",
            "event_type",
            "content_json",
        ],
        key: &["seq"],
    },
    Table {
        name: "to_device_txns",
        columns: &["user_id", "device_id", "event_type", "txn_id"],
        key: &["user_id", "device_id", "event_type", "txn_id"],
    },
    Table {
        name: "room_directory",
        columns: &["room_id", "published_ms"],
        key: &["room_id"],
    },
    Table {
        name: "reports",
        columns: &[
            "id",
            "reporter",
            "room_id",
            "event_id",
            "target_user",
            "reason",
            "score",
            "created_ms",
        ],
        key: &["id"],
    },
    Table {
        name: "key_backup_versions",
        columns: &[
            "user_id",
            "version",
            "algorithm",
            "auth_data",
            "etag",
            "deleted",
        ],
        key: &["user_id", "version"],
    },
    Table {
        name: "key_backup_keys",
        columns: &[
            "user_id",
            "version",
            "room_id",
            "session_id",
            "first_message_index",
            "forwarded_count",
            "is_verified",
            "session_data",
        ],
        key: &["user_id", "version", "room_id", "session_id"],
    },
    Table {
        name: "media",
        columns: &[
            "media_id",
            "uploader",
            "created_ms",
            "unused_expires_ms",
            "content_type",
            "filename",
            "size",
            "sha256",
        ],
        key: &["media_id"],
    },
    Table {
        name: "media_thumbnails",
        columns: &[
            "media_id",
            "width",
            "height",
            "method",
            "animated",
            "content_type",
            "size",
            "sha256",
        ],
        key: &["media_id", "width", "height", "method", "animated"],
    },
    Table {
        name: "appservice_txns",
        columns: &[
            "appservice_id",
            "delivered_pos",
            "next_txn_id",
            "pending_txn_id",
            "pending_up_to",
            "pending_body",
        ],
        key: &["appservice_id"],
    },
    Table {
        name: "remote_media",
        columns: &[
            "origin",
            "media_id",
            "content_type",
            "filename",
            "size",
            "sha256",
            "fetched_ms",
            "last_access_ms",
        ],
        key: &["origin", "media_id"],
    },
    Table {
        name: "remote_media_thumbnails",
        columns: &[
            "origin",
            "media_id",
            "width",
            "height",
            "method",
            "animated",
            "content_type",
            "size",
            "sha256",
        ],
        key: &[
            "origin", "media_id", "width", "height", "method", "animated",
        ],
    },
    Table {
        name: "push_events",
        columns: &["stream_pos", "thread_id", "notified"],
        key: &["stream_pos"],
    },
    Table {
        name: "push_members",
        columns: &["room_id", "user_id", "member_no"],
        key: &["room_id", "user_id"],
    },
    Table {
        name: "push_fold",
        columns: &["id", "counted_to"],
        key: &["id"],
    },
    Table {
        name: "unread_counts",
        columns: &[
            "room_id",
            "user_id",
            "thread_id",
            "notifications",
            "highlights",
        ],
        key: &["room_id", "user_id", "thread_id"],
    },
    Table {
        name: "pushers",
        columns: &[
            "id",
            "user_id",
            "device_id",
            "kind",
            "app_id",
            "pushkey",
            "app_display_name",
            "device_display_name",
            "profile_tag",
            "lang",
            "data",
            "created_ms",
        ],
        key: &["id"],
    },
    Table {
        name: "push_queue",
        columns: &["pusher_id", "stream_pos", "room_id", "event_id", "actions"],
        key: &["pusher_id", "stream_pos"],
    },
    Table {
        name: "media_quarantine",
        columns: &["origin", "media_id", "quarantined_ms"],
        key: &["origin", "media_id"],
    },
    Table {
        name: "appservice_room_directory",
        columns: &["appservice_id", "network_id", "room_id", "published_ms"],
        key: &["appservice_id", "network_id", "room_id"],
    },
];

/// Row-level access to every table, for copying a whole database. Only for a stopped server:
/// these bypass the storage traits' invariants.
#[async_trait]
pub trait Dump {
    async fn count_rows(&self, table: &Table) -> StorageResult<u64>;
    /// Up to `limit` rows after the first `offset`, ordered by the table's key, with the
    /// table's columns in order.
    async fn read_rows(
        &self,
        table: &Table,
        offset: u64,
        limit: usize,
    ) -> StorageResult<Vec<Vec<DumpValue>>>;
    /// Inserts rows (one transaction per call). Rows of the [`SINGLE_ROW_TABLES`] replace the existing one.
    async fn write_rows(&self, table: &Table, rows: Vec<Vec<DumpValue>>) -> StorageResult<()>;
    /// Called once after every table is written (e.g. to move ID sequences past the copied IDs).
    async fn finish_restore(&self) -> StorageResult<()>;
}

/// `SELECT <columns> FROM <table> ORDER BY <key>` (table and column names are constants).
pub fn select_sql(table: &Table) -> String {
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        table.columns.join(", "),
        table.name,
        table.key.join(", ")
    )
}

/// `INSERT INTO <table> (<columns>) VALUES (<placeholders>)`, `placeholder(i)` naming the
/// dialect's parameter `i` (from 1).
pub fn insert_sql(table: &Table, placeholder: impl Fn(usize) -> String) -> String {
    let placeholders: Vec<String> = (1..=table.columns.len()).map(placeholder).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        table.columns.join(", "),
        placeholders.join(", ")
    )
}

/// `SELECT COUNT(*) FROM <table>`.
pub fn count_sql(table: &Table) -> String {
    format!("SELECT COUNT(*) FROM {}", table.name)
}
