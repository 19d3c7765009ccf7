//! Opening the configured storage backend as a shared `dyn Storage`.
//!
//! Only SQLite exists for now; [`crate::Config::validate`] refuses any other backend before we
//! get here.

use std::sync::Arc;

use anyhow::{bail, Context};
use myelin_storage::Storage;
use myelin_storage_sqlite::SqliteStore;

use crate::Config;

/// Opens (creating and migrating it if needed) the database `config` points at.
///
/// Opening runs migrations and may block, so it happens on the blocking thread pool.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    match config.database.backend.as_str() {
        "sqlite" => {
            let path = config.database_path();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create the database directory {}", parent.display()))?;
            }
            let shown = path.display().to_string();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .context("the database open task failed")?
                .with_context(|| format!("cannot open the SQLite database {shown}"))?;
            tracing::info!(path = %shown, "opened the SQLite database");
            Ok(Arc::new(store))
        }
        other => bail!("database backend {other:?} is not supported; use \"sqlite\""),
    }
}
