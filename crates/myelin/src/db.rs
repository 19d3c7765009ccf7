//! `myelin db ...`: apply migrations, show a database's status, and copy a stopped server's
//! database between backends (`myelin::storage::copy`).

use anyhow::bail;
use clap::Subcommand;
use myelin::storage::{self, Backend};
use myelin::Config;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Apply pending schema migrations to the configured database and exit.
    Migrate,
    /// Show the backend, schema version and server name of the configured database (changes
    /// nothing).
    Status,
    /// Copy a stopped server's whole database into an empty one, e.g. from SQLite to PostgreSQL.
    ///
    /// Each side is a PostgreSQL URL (postgres://...) or an SQLite file path. The target is
    /// created and migrated if needed and must hold no data.
    Copy {
        /// The database to read: an SQLite file or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        /// The empty database to fill: an SQLite file or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        to: String,
        /// Rows per batch.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
}

pub async fn run(config: Config, command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Migrate => migrate(&config).await,
        DbCommand::Status => status(&config).await,
        DbCommand::Copy {
            from,
            to,
            batch_size,
        } => {
            let (from, to) = (Backend::from_arg(&from), Backend::from_arg(&to));
            let counts = storage::copy::copy(&from, &to, batch_size.max(1), true).await?;
            for (table, rows) in &counts {
                println!("{table:>24}: {rows} rows, counts match");
            }
            let rows: u64 = counts.iter().map(|(_, n)| n).sum();
            println!(
                "Copied {rows} rows in {} tables from the {} database {} to the {} database {}",
                counts.len(),
                from.name(),
                from.location(),
                to.name(),
                to.location()
            );
            Ok(())
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let backend = Backend::from_config(config)?;
    let before = storage::status(&backend)
        .await
        .ok()
        .map(|s| s.schema_version);
    let store = storage::open_backend(&backend).await?;
    let version = store.meta().schema_version().await?;
    if let Some(stored) = store.meta().server_name().await? {
        if stored != config.server_name {
            bail!(
                "the {} database {} belongs to server {stored:?}, but the configuration says {:?}",
                backend.name(),
                backend.location(),
                config.server_name
            );
        }
    }
    match before {
        Some(before) if before == version => {
            println!(
                "The {} database {} is up to date (schema version {version})",
                backend.name(),
                backend.location()
            )
        }
        Some(before) => println!(
            "Migrated the {} database {} from schema version {before} to {version}",
            backend.name(),
            backend.location()
        ),
        None => println!(
            "Created the {} database {} at schema version {version}",
            backend.name(),
            backend.location()
        ),
    }
    Ok(())
}

async fn status(config: &Config) -> anyhow::Result<()> {
    let backend = Backend::from_config(config)?;
    let status = storage::status(&backend).await?;
    println!("backend:        {}", backend.name());
    println!("database:       {}", backend.location());
    println!(
        "schema version: {} (this build: {}){}",
        status.schema_version,
        status.known_schema_version,
        match status.schema_version.cmp(&status.known_schema_version) {
            std::cmp::Ordering::Less =>
                " - run `myelin db migrate` (or start the server) to upgrade",
            std::cmp::Ordering::Equal => "",
            std::cmp::Ordering::Greater => " - NEWER than this build; upgrade Myelin",
        }
    );
    println!(
        "server name:    {}",
        status
            .server_name
            .as_deref()
            .unwrap_or("(not set yet; set on first start)")
    );
    if let Some(stored) = &status.server_name {
        if *stored != config.server_name {
            bail!(
                "the database belongs to server {stored:?}, but the configuration says {:?}",
                config.server_name
            );
        }
    }
    Ok(())
}
