//! Starting Synapse from the venv made by `scripts/synapse-venv`: its own generated config,
//! overridden by a second config file (Synapse merges `-c` files by top-level key) that sets
//! the database (SQLite, or PostgreSQL through psycopg2), a loopback listener, open registration without verification, quiet logging and
//! rate limits far above anything the benchmark sends.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{BenchError, Result};

use super::backend::Database;
use super::myelin::PG_POOL_SIZE;
use super::process::{free_port, fresh_dir, spawn, Server};

/// The rate-limit sections of Synapse's config, all set to `HIGH`.
const RATE_LIMITS: &[&str] = &[
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_joins_per_room",
    "rc_3pid_validation",
    "rc_admin_redaction",
    "rc_room_creation",
    "rc_reports",
    "rc_delayed_event_mgmt",
    "rc_key_requests",
    "rc_presence.per_user",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_media_create",
];

/// One rate limit that never triggers.
const HIGH: &str = "{per_second: 1000000, burst_count: 1000000}";

/// A YAML single-quoted string.
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `database` section: SQLite in `dir`, or psycopg2 with the same pool size as Myelin's.
fn database_yaml(dir: &Path, db: Database<'_>) -> String {
    match db {
        Database::Sqlite => format!(
            "database:\n  name: sqlite3\n  args:\n    database: {}\n",
            yaml_string(&dir.join("homeserver.db").display().to_string())
        ),
        Database::Postgres(pg) => {
            let mut out = "database:\n  name: psycopg2\n  args:\n".to_owned();
            for (key, value) in pg.synapse_args() {
                let value = if key == "port" {
                    value
                } else {
                    yaml_string(&value)
                };
                out.push_str(&format!("    {key}: {value}\n"));
            }
            out.push_str(&format!("    cp_min: 5\n    cp_max: {PG_POOL_SIZE}\n"));
            out
        }
    }
}

/// The overriding config file. `ip_range_whitelist` lets the `push` workload's stub push gateway
/// on loopback be reached (Myelin's config allows it through `[egress]`). `msc3575_enabled` (simplified sliding sync, which the
/// `sliding-sync` workload uses) is on by default in Synapse 1.114 and later; it is set anyway
/// so that an older pinned version serves the endpoint too.
pub fn overrides_yaml(dir: &Path, port: u16, db: Database<'_>) -> String {
    let mut out = format!(
        "listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    x_forwarded: false\n    resources:\n      - names: [client]\n        compress: false\n\
{database}\
enable_registration: true\nenable_registration_without_verification: true\n\
bcrypt_rounds: 4\nreport_stats: false\nlog_config: {log}\n\
ip_range_whitelist: ['127.0.0.1']\n\
experimental_features:\n  msc3575_enabled: true\n",
        database = database_yaml(dir, db),
        log = yaml_string(&dir.join("bench.log.config").display().to_string()),
    );
    let mut nested: Vec<(&str, Vec<&str>)> = Vec::new();
    for key in RATE_LIMITS {
        match key.split_once('.') {
            None => out.push_str(&format!("{key}: {HIGH}\n")),
            Some((top, sub)) => match nested.iter_mut().find(|(t, _)| *t == top) {
                Some((_, subs)) => subs.push(sub),
                None => nested.push((top, vec![sub])),
            },
        }
    }
    for (top, subs) in nested {
        out.push_str(&format!("{top}:\n"));
        for sub in subs {
            out.push_str(&format!("  {sub}: {HIGH}\n"));
        }
    }
    out
}

/// A logging config at WARNING level into `homeserver.log` (Myelin runs with `warn` too).
pub fn log_config_yaml(dir: &Path) -> String {
    format!(
        "version: 1\nformatters:\n  plain:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n\
handlers:\n  file:\n    class: logging.FileHandler\n    formatter: plain\n    filename: '{}'\n\
root:\n  level: WARNING\n  handlers: [file]\ndisable_existing_loggers: false\n",
        dir.join("homeserver.log").display()
    )
}

/// The venv's Python.
fn python(venv: &Path) -> PathBuf {
    let python = venv.join("bin").join("python");
    std::path::absolute(&python).unwrap_or(python)
}

/// The installed Synapse version (e.g. `1.163.2`).
pub fn version(venv: &Path) -> Result<String> {
    let out = Command::new(python(venv))
        .args(["-c", "import synapse; print(synapse.__version__)"])
        .output()
        .map_err(|e| {
            BenchError::Server(format!(
                "cannot run {}: {e}; run `bash scripts/synapse-venv`",
                python(venv).display()
            ))
        })?;
    if !out.status.success() {
        return Err(BenchError::Server(format!(
            "synapse is not installed in {}; run `bash scripts/synapse-venv`",
            venv.display()
        )));
    }
    // The version may carry a git suffix (`1.163.2 (b=main,abc)`); keep the number.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_owned())
}

/// Generates a config on a fresh `dir` and starts Synapse on `db`.
pub fn start(venv: &Path, dir: &Path, db: Database<'_>) -> Result<Server> {
    let dir = fresh_dir(dir)?;
    let port = free_port()?;
    let config = dir.join("homeserver.yaml");
    let status = Command::new(python(venv))
        .args([
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            "localhost",
            "--report-stats=no",
            "--generate-config",
        ])
        .arg("--config-path")
        .arg(&config)
        .arg("--data-directory")
        .arg(&dir)
        .current_dir(&dir)
        .output()
        .map_err(|e| BenchError::Server(format!("cannot run synapse --generate-config: {e}")))?;
    if !status.status.success() {
        return Err(BenchError::Server(format!(
            "synapse --generate-config failed: {}",
            String::from_utf8_lossy(&status.stderr)
        )));
    }
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| BenchError::io(&path, e))
    };
    write("bench.yaml", overrides_yaml(&dir, port, db))?;
    write("bench.log.config", log_config_yaml(&dir))?;
    let mut cmd = Command::new(python(venv));
    cmd.args(["-m", "synapse.app.homeserver", "--config-path"])
        .arg(&config)
        .arg("--config-path")
        .arg(dir.join("bench.yaml"))
        .current_dir(&dir);
    spawn(
        cmd,
        &dir.join("stdout.log"),
        format!("http://127.0.0.1:{port}"),
        matches!(db, Database::Sqlite).then(|| dir.join("homeserver.db")),
    )
}

#[cfg(test)]
mod tests {
    use super::super::postgres::PgDatabase;
    use super::*;

    #[test]
    fn overrides_cover_limits_and_registration() {
        let y = overrides_yaml(Path::new("/d"), 9999, Database::Sqlite);
        assert!(y.contains("port: 9999"));
        assert!(y.contains("database: '/d/homeserver.db'"));
        assert!(y.contains("enable_registration_without_verification: true"));
        assert!(y.contains("rc_message: {per_second"));
        assert!(y.contains("rc_login:\n  address: {per_second"));
        assert_eq!(y.matches("rc_joins:\n").count(), 1);
        assert!(y.contains("  remote: {per_second"));
        assert!(y.contains("experimental_features:\n  msc3575_enabled: true\n"));
    }

    #[test]
    fn postgres_database_section() {
        let db = PgDatabase::for_tests(
            "postgres://postgres@127.0.0.1:54329/postgres",
            "synapse_bench_3",
        );
        let y = overrides_yaml(Path::new("/d"), 9999, Database::Postgres(&db));
        assert!(y.contains(
            "database:\n  name: psycopg2\n  args:\n    user: 'postgres'\n    database: 'synapse_bench_3'\n    host: '127.0.0.1'\n    port: 54329\n    cp_min: 5\n    cp_max: 10\n"
        ));
        assert!(!y.contains("sqlite3"));
        assert_eq!(yaml_string("it's"), "'it''s'");
    }
}
