//! PostgreSQL backend for the Myelin storage traits: a connection pool sized from the
//! configuration, numbered embedded migrations, and write transactions serialised by a mutex and
//! an advisory lock so that stream positions commit in order.
//!
//! It stores the same tables and columns as the SQLite backend and behaves identically; the
//! shared conformance suite (`myelin_storage::storage_conformance_tests!`) runs against both.

mod account;
mod appservice;
mod backup;
mod convert;
pub mod dump;
mod error;
mod events;
mod external_id;
mod federation;
mod keys;
mod media;
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
#[cfg(feature = "testing")]
pub mod testing;
mod threepid;
mod user_data;

use std::sync::Arc;

use myelin_storage::{DbStatus, StorageResult};

pub use error::PgError;
pub use migrations::SCHEMA_VERSION;
pub use myelin_storage::MAX_DELTA_DEPTH;

/// The pool size used when the configuration gives none.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// A Myelin database in PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    db: Arc<pool::Pool>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname?...`) with at
    /// most `pool_size` connections and applies pending migrations.
    ///
    /// Fails with [`myelin_storage::StorageError::Incompatible`] if the database was written by a
    /// newer schema than this build knows, and with a `Backend` error naming the host (never the
    /// password) if the server cannot be reached.
    pub async fn open(url: &str, pool_size: usize) -> StorageResult<PgStore> {
        Self::open_config(parse_url(url)?, pool_size).await
    }

    /// [`PgStore::open`] with an already parsed configuration.
    pub async fn open_config(
        config: tokio_postgres::Config,
        pool_size: usize,
    ) -> StorageResult<PgStore> {
        let db = Arc::new(pool::Pool::new(config, pool_size)?);
        let mut conn = db.read().await?;
        migrations::migrate(&mut conn).await?;
        drop(conn);
        tracing::debug!(target = %db.target(), pool_size = db.size(), "opened the PostgreSQL database");
        Ok(PgStore { db })
    }

    /// `host:port/dbname` of the database, for messages.
    pub fn target(&self) -> String {
        self.db.target()
    }
}

/// Reads the schema version and server name of the database at `url` without migrating it.
pub async fn status(url: &str) -> StorageResult<DbStatus> {
    let db = Arc::new(pool::Pool::new(parse_url(url)?, 1)?);
    let mut conn = db.read().await?;
    meta::status(&mut conn).await
}

/// Parses a connection URL or `key=value` string; the error never repeats the input.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, PgError> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| PgError::InvalidUrl(convert::describe(&e)))
}

/// `host:port/dbname` of a parsed configuration, for messages (never the password).
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    pool::target(config)
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.db.target())
            .finish_non_exhaustive()
    }
}
