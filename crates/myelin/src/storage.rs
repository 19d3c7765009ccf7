//! Opening the configured storage backend (SQLite or PostgreSQL) as a shared `dyn Storage`, bound
//! to the configured server name, and reading a database's status without migrating it.

pub mod copy;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use myelin_storage::dump::Dump;
use myelin_storage::{DbStatus, MetaStore, Storage};
use myelin_storage_postgres::PgStore;
use myelin_storage_sqlite::SqliteStore;

use crate::Config;

/// Where a database is: what `[database]` (or a `db copy` argument) points at.
#[derive(Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres { url: String, pool_size: usize },
}

impl Backend {
    /// The backend `config` names (reads `database.url_file` if set).
    pub fn from_config(config: &Config) -> anyhow::Result<Backend> {
        if config.database.is_postgres() {
            Ok(Backend::Postgres {
                url: config.database.postgres_url()?,
                pool_size: config.database.pool_size,
            })
        } else {
            Ok(Backend::Sqlite(config.database_path()))
        }
    }

    /// A PostgreSQL URL (`postgres://` or `postgresql://`) or else an SQLite file path.
    pub fn from_arg(arg: &str) -> Backend {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            Backend::Postgres {
                url: arg.to_owned(),
                pool_size: 4,
            }
        } else {
            Backend::Sqlite(PathBuf::from(arg))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// The file, or `host:port/dbname` (never the password), for messages.
    pub fn location(&self) -> String {
        match self {
            Backend::Sqlite(path) => path.display().to_string(),
            Backend::Postgres { url, .. } => match myelin_storage_postgres::parse_url(url) {
                Ok(config) => myelin_storage_postgres::describe_target(&config),
                Err(_) => "(invalid URL)".to_owned(),
            },
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} database {}", self.name(), self.location())
    }
}

/// An open database of either backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    pub fn storage(&self) -> Arc<dyn Storage> {
        match self {
            Store::Sqlite(store) => Arc::new(store.clone()),
            Store::Postgres(store) => Arc::new(store.clone()),
        }
    }

    pub fn meta(&self) -> &(dyn MetaStore + Send + Sync) {
        match self {
            Store::Sqlite(store) => store,
            Store::Postgres(store) => store,
        }
    }

    /// Raw table access, for `myelin db copy`.
    pub fn dump(&self) -> &(dyn Dump + Send + Sync) {
        match self {
            Store::Sqlite(store) => store,
            Store::Postgres(store) => store,
        }
    }
}

/// Opens (creating and migrating it if needed) the database at `backend`. Refuses, with the
/// reason, a database that cannot be reached or has a newer schema than this build.
pub async fn open_backend(backend: &Backend) -> anyhow::Result<Store> {
    match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the database directory {}", parent.display())
                })?;
            }
            let shown = path.display().to_string();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .context("the database open task failed")?
                .with_context(|| format!("cannot open the SQLite database {shown}"))?;
            tracing::info!(path = %shown, "opened the SQLite database");
            Ok(Store::Sqlite(store))
        }
        Backend::Postgres { url, pool_size } => {
            let store = PgStore::open(url, *pool_size).await.with_context(|| {
                format!("cannot open the PostgreSQL database {}", backend.location())
            })?;
            tracing::info!(database = %backend.location(), pool_size, "opened the PostgreSQL database");
            Ok(Store::Postgres(store))
        }
    }
}

/// Opens the database `config` points at and binds it to the configured server name (stored on
/// first start; a database of another server is refused).
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    let backend = Backend::from_config(config)?;
    let store = open_backend(&backend).await?;
    store
        .meta()
        .claim_server_name(&config.server_name)
        .await
        .with_context(|| {
            format!(
                "cannot use the {} database {}",
                backend.name(),
                backend.location()
            )
        })?;
    Ok(store.storage())
}

/// The schema version and server name of the database at `backend`, without migrating it.
pub async fn status(backend: &Backend) -> anyhow::Result<DbStatus> {
    let status = match backend {
        Backend::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || myelin_storage_sqlite::status(&path))
                .await
                .context("the database status task failed")?
        }
        Backend::Postgres { url, .. } => myelin_storage_postgres::status(url).await,
    };
    status.with_context(|| {
        format!(
            "cannot read the {} database {}",
            backend.name(),
            backend.location()
        )
    })
}
