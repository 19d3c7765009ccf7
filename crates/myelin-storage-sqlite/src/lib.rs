//! SQLite backend for the Myelin storage traits: one writer thread with the only write
//! connection, reader threads with a read connection each, numbered embedded migrations and an
//! in-memory copy of the stream counter.
//!
//! Every trait write runs on the writer thread inside a `BEGIN IMMEDIATE` transaction, in a
//! savepoint of its own (concurrent writes share the transaction and its one commit: group
//! commit). Stream positions are assigned inside it while the writer is held, so commit order
//! equals position order and [`myelin_storage::RoomStore::current_stream_pos`] only ever reports
//! committed work.

mod account;
mod appservice;
mod backup;
mod convert;
mod dump;
mod events;
mod external_id;
mod federation;
mod keys;
mod media;
mod member_numbers;
mod meta;
mod migrations;
mod persist;
mod pool;
mod push;
mod push_counts;
mod push_fold;
mod relations;
mod remote_devices;
mod room;
mod search;
mod state;
mod threepid;
mod user_data;

use std::path::Path;
use std::sync::Arc;

use myelin_storage::StorageResult;

pub use meta::status;
pub use migrations::SCHEMA_VERSION;
pub use myelin_storage::MAX_DELTA_DEPTH;

/// A Myelin database in one SQLite file. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<pool::Db>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path`, configures the connections (WAL,
    /// `synchronous=FULL`, foreign keys, busy timeout) and applies pending migrations.
    ///
    /// Fails with [`myelin_storage::StorageError::Incompatible`] if the file was written by a
    /// newer schema than this build knows.
    pub fn open(path: &Path) -> StorageResult<SqliteStore> {
        Ok(SqliteStore {
            db: Arc::new(pool::Db::open(path)?),
        })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}
