//! Starting Myelin (`myelin serve`) with a generated configuration on a fresh data directory,
//! on SQLite (a file in that directory) or on a fresh PostgreSQL database.

use std::path::Path;
use std::process::Command;

use crate::error::{BenchError, Result};

use super::backend::Database;
use super::process::{free_port, fresh_dir, spawn, Server};

/// The connections Myelin keeps to PostgreSQL (Synapse's `cp_max` is the same).
pub const PG_POOL_SIZE: usize = 10;

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `[database]` section.
fn database_toml(db: Database<'_>) -> String {
    match db {
        Database::Sqlite => "[database]\nbackend = \"sqlite\"\n".to_owned(),
        Database::Postgres(pg) => format!(
            "[database]\nbackend = \"postgres\"\nurl = {}\npool_size = {PG_POOL_SIZE}\n",
            toml_string(pg.url())
        ),
    }
}

/// The configuration: loopback listener, the database, open registration, generous limits
/// and, when `rate_limits_section` is set, rate limiting off (older builds reject that section).
pub fn config_toml(
    data_dir: &Path,
    port: u16,
    db: Database<'_>,
    rate_limits_section: bool,
) -> String {
    let mut text = format!(
        r#"server_name = "localhost"
listen = "127.0.0.1:{port}"
data_dir = {dir}
log = "warn"

{database}
[registration]
mode = "open"

[limits]
max_request_bytes = 10485760
max_sync_timeout_ms = 60000
"#,
        dir = toml_string(&data_dir.display().to_string()),
        database = database_toml(db),
    );
    if rate_limits_section {
        text.push_str("\n[rate_limits]\nenabled = false\n");
        // The `push` workload's stub push gateway listens on loopback.
        text.push_str("\n[egress]\nallow = [\"127.0.0.1\"]\n");
    }
    text
}

/// Whether a failed start was an older Myelin refusing the `[rate_limits]` section.
pub fn rejected_rate_limits(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains("unknown field `rate_limits`"))
}

/// Starts `binary serve` on a fresh `dir` and `db`.
pub fn start(
    binary: &Path,
    dir: &Path,
    db: Database<'_>,
    rate_limits_section: bool,
) -> Result<Server> {
    if !binary.is_file() {
        return Err(BenchError::Invalid(format!(
            "{} not found; build it with `cargo build --release -p myelin`",
            binary.display()
        )));
    }
    let binary = std::path::absolute(binary).map_err(|e| BenchError::io(binary, e))?;
    let dir = fresh_dir(dir)?;
    let port = free_port()?;
    let config = dir.join("myelin.toml");
    std::fs::write(&config, config_toml(&dir, port, db, rate_limits_section))
        .map_err(|e| BenchError::io(&config, e))?;
    let mut cmd = Command::new(&binary);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(&dir);
    // Only our file configures the server.
    for (key, _) in std::env::vars() {
        if key.starts_with("MYELIN_") {
            cmd.env_remove(key);
        }
    }
    spawn(
        cmd,
        &dir.join("myelin.log"),
        format!("http://127.0.0.1:{port}"),
        matches!(db, Database::Sqlite).then(|| dir.join("myelin.db")),
    )
}

#[cfg(test)]
mod tests {
    use super::super::postgres::PgDatabase;
    use super::*;

    #[test]
    fn config_names_port_and_dir() {
        let t = config_toml(Path::new("/tmp/x"), 4321, Database::Sqlite, true);
        assert!(t.contains("listen = \"127.0.0.1:4321\""));
        assert!(t.contains("data_dir = \"/tmp/x\""));
        assert!(t.contains("backend = \"sqlite\""));
        assert!(t.contains("mode = \"open\""));
        assert!(t.contains("[rate_limits]\nenabled = false"));
        let old = config_toml(Path::new("/tmp/x"), 4321, Database::Sqlite, false);
        assert!(!old.contains("rate_limits"));
    }

    #[test]
    fn postgres_config_names_the_database() {
        let db =
            PgDatabase::for_tests("postgres://postgres@127.0.0.1:5/postgres", "myelin_bench_1");
        let t = config_toml(Path::new("/tmp/x"), 4321, Database::Postgres(&db), true);
        assert!(t.contains(
            "backend = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5/myelin_bench_1\""
        ));
        assert!(t.contains("pool_size = 10"));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
