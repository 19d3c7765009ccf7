//! The PostgreSQL server a comparison runs on: one fresh database per server run (created with
//! the encoding and collation Synapse insists on, for both servers alike), measured at the end
//! and dropped afterwards. Databases left behind by a run that died are dropped at the next start.

use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{BenchError, Result};

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server names whose run databases are `<server>_bench_<pid>`.
const SERVERS: [&str; 2] = ["myelin", "synapse"];

/// A one-line description of a driver error: the server's message when it sent one.
pub fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

fn pg_error(what: &str, err: &tokio_postgres::Error) -> BenchError {
    BenchError::Postgres(format!("{what}: {}", describe(err)))
}

/// `url` with its database name replaced by `name` (URL or `key=value` form).
pub fn with_database(url: &str, name: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return format!("{url} dbname={name}");
    };
    let rest_start = scheme_end + 3;
    let query_start = url[rest_start..]
        .find('?')
        .map_or(url.len(), |i| rest_start + i);
    let path_start = url[rest_start..query_start]
        .find('/')
        .map_or(query_start, |i| rest_start + i);
    format!("{}/{name}{}", &url[..path_start], &url[query_start..])
}

/// The database of one server run: `<server>_bench_<pid>`.
pub fn run_database_name(server: &str, pid: u32) -> String {
    format!("{server}_bench_{pid}")
}

/// Whether `name` is a run database whose benchmark process is gone (`alive` says whether a
/// PID is running).
pub fn is_stale(name: &str, alive: impl Fn(u32) -> bool) -> bool {
    SERVERS.iter().any(|server| {
        name.strip_prefix(server)
            .and_then(|rest| rest.strip_prefix("_bench_"))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !alive(pid))
    })
}

/// Whether `fsync` and `synchronous_commit` (as `SHOW` prints them) make a commit durable:
/// fsync on and synchronous_commit anything but off (`local`, `remote_write` and `remote_apply`
/// are at least as durable locally as `on`).
pub fn durable_settings(fsync: &str, synchronous_commit: &str) -> bool {
    fsync == "on" && synchronous_commit != "off"
}

/// A PostgreSQL server on which databases may be created, named by an admin URL.
#[derive(Clone)]
pub struct PgAdmin {
    url: String,
    config: Config,
}

impl std::fmt::Debug for PgAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgAdmin")
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

impl PgAdmin {
    /// Parses `url`; does not connect.
    pub fn new(url: &str) -> Result<PgAdmin> {
        let mut config: Config = url
            .parse()
            .map_err(|e| pg_error("invalid PostgreSQL URL", &e))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(PgAdmin {
            url: url.to_owned(),
            config,
        })
    }

    /// `host:port`, for messages.
    pub fn target(&self) -> String {
        let host = self.host().unwrap_or_else(|| "localhost".to_owned());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// The first host: a name or address, or a Unix socket directory.
    fn host(&self) -> Option<String> {
        self.config.get_hosts().first().map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
    }

    /// A connection to `database` (the admin database when `None`), driven on a task.
    pub async fn connect(&self, database: Option<&str>) -> Result<Client> {
        let mut config = self.config.clone();
        if let Some(name) = database {
            config.dbname(name);
        }
        let connecting = config.connect(NoTls);
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting)
            .await
            .map_err(|_| BenchError::Postgres(format!("no answer from {} in time", self.target())))?
            .map_err(|e| pg_error(&format!("connecting to {}", self.target()), &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs one statement on the admin database.
    async fn execute(&self, sql: &str) -> Result<()> {
        let client = self.connect(None).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|e| pg_error(sql, &e))
    }

    /// Checks that the server answers and lets us create databases.
    pub async fn check(&self) -> Result<()> {
        let client = self.connect(None).await?;
        let row = client
            .query_one(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| pg_error("reading our role", &e))?;
        if row.get::<_, bool>(0) {
            Ok(())
        } else {
            Err(BenchError::Postgres(format!(
                "the user of the URL may not create databases on {}",
                self.target()
            )))
        }
    }

    /// The server's version and durability settings, for the record, e.g.
    /// `PostgreSQL 15.14 at 127.0.0.1:54329 (fsync off, synchronous_commit off)`.
    pub async fn describe_server(&self) -> Result<String> {
        let client = self.connect(None).await?;
        let mut values = Vec::new();
        for setting in ["server_version", "fsync", "synchronous_commit"] {
            let row = client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .map_err(|e| pg_error(setting, &e))?;
            values.push(row.get::<_, String>(0));
        }
        let version = values[0].split_whitespace().next().unwrap_or("?");
        Ok(format!(
            "PostgreSQL {version} at {} (fsync {}, synchronous_commit {})",
            self.target(),
            values[1],
            values[2]
        ))
    }

    /// Whether the server commits durably: `fsync` and `synchronous_commit` both on.
    pub async fn is_durable(&self) -> Result<bool> {
        let client = self.connect(None).await?;
        let mut settings = Vec::new();
        for setting in ["fsync", "synchronous_commit"] {
            let row = client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .map_err(|e| pg_error(setting, &e))?;
            settings.push(row.get::<_, String>(0));
        }
        Ok(durable_settings(&settings[0], &settings[1]))
    }

    /// Drops the run databases of benchmark processes that are gone; returns their names.
    pub async fn drop_stale(&self) -> Result<Vec<String>> {
        let client = self.connect(None).await?;
        let rows = client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE '%\\_bench\\_%'",
                &[],
            )
            .await
            .map_err(|e| pg_error("listing databases", &e))?;
        let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            if is_stale(&name, alive) {
                self.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Creates the fresh database of `server`'s run (dropping a leftover of the same name):
    /// UTF-8, `C` collation and ctype, from `template0`, as Synapse requires.
    pub async fn create_run_database(&self, server: &str) -> Result<PgDatabase> {
        let name = run_database_name(server, std::process::id());
        self.execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        self.execute(&format!(
            "CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ))
        .await?;
        Ok(PgDatabase {
            admin: self.clone(),
            url: with_database(&self.url, &name),
            name,
        })
    }
}

/// A database created for one server run.
#[derive(Debug)]
pub struct PgDatabase {
    admin: PgAdmin,
    name: String,
    url: String,
}

impl PgDatabase {
    /// A database on the server of `admin_url` that was never created, for tests of the
    /// configurations that name one.
    pub fn for_tests(admin_url: &str, name: &str) -> PgDatabase {
        PgDatabase {
            admin: PgAdmin::new(admin_url).expect("a valid test URL"),
            name: name.to_owned(),
            url: with_database(admin_url, name),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server it lives on.
    pub fn admin(&self) -> &PgAdmin {
        &self.admin
    }

    /// Its size on disk in bytes (`pg_database_size`).
    pub async fn size(&self) -> Result<u64> {
        let client = self.admin.connect(None).await?;
        let row = client
            .query_one("SELECT pg_database_size($1::text)", &[&self.name])
            .await
            .map_err(|e| pg_error("pg_database_size", &e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// Drops it, closing any connection still open to it.
    pub async fn drop_database(self) -> Result<()> {
        self.admin
            .execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
    }

    /// Synapse's `psycopg2` connection arguments, `(key, value)`; `port` is a number, the rest
    /// strings.
    pub fn synapse_args(&self) -> Vec<(&'static str, String)> {
        let config = &self.admin.config;
        let mut args = Vec::new();
        if let Some(user) = config.get_user() {
            args.push(("user", user.to_owned()));
        }
        if let Some(password) = config.get_password() {
            args.push(("password", String::from_utf8_lossy(password).into_owned()));
        }
        args.push(("database", self.name.clone()));
        if let Some(host) = self.admin.host() {
            args.push(("host", host));
        }
        if let Some(port) = config.get_ports().first() {
            args.push(("port", port.to_string()));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_only_with_fsync_and_synchronous_commit() {
        assert!(durable_settings("on", "on"));
        assert!(durable_settings("on", "local"));
        assert!(!durable_settings("off", "on"));
        assert!(!durable_settings("on", "off"));
        assert!(!durable_settings("off", "off"));
    }

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "x"),
            "postgresql://h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("host=h user=u", "x"),
            "host=h user=u dbname=x"
        );
    }

    #[test]
    fn run_names_and_staleness() {
        assert_eq!(run_database_name("synapse", 42), "synapse_bench_42");
        let alive = |pid: u32| pid == 7;
        assert!(is_stale("myelin_bench_8", alive));
        assert!(!is_stale("myelin_bench_7", alive));
        assert!(!is_stale("myelin_test_8", alive));
        assert!(!is_stale("other_bench_8", alive));
        assert!(!is_stale("synapse_bench_x", alive));
    }

    #[test]
    fn synapse_args_from_the_url() {
        let db = PgDatabase::for_tests(
            "postgres://bench:pw@127.0.0.1:54329/postgres",
            "synapse_bench_1",
        );
        let args = db.synapse_args();
        let get = |k: &str| {
            args.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("user"), Some("bench"));
        assert_eq!(get("password"), Some("pw"));
        assert_eq!(get("database"), Some("synapse_bench_1"));
        assert_eq!(get("host"), Some("127.0.0.1"));
        assert_eq!(get("port"), Some("54329"));
        assert!(!format!("{:?}", db.admin()).contains("pw"));
    }
}
