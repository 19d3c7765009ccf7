//! Throwaway databases for tests: one uniquely named database per test on the server named by
//! `MYELIN_TEST_POSTGRES_URL`, dropped again when the guard goes away.
//!
//! Without that variable the PostgreSQL tests are skipped, loudly; with
//! `MYELIN_REQUIRE_POSTGRES=1` a missing URL fails the test instead (CI sets it).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::convert::describe;

/// The variable naming the PostgreSQL server tests may create databases on.
pub const URL_VAR: &str = "MYELIN_TEST_POSTGRES_URL";
/// Set to `1` to fail, rather than skip, when [`URL_VAR`] is unset.
pub const REQUIRE_VAR: &str = "MYELIN_REQUIRE_POSTGRES";

/// A database created for one test; dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    keep: bool,
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` (after saying so on standard error) when
    /// [`URL_VAR`] is unset.
    ///
    /// # Panics
    /// When [`URL_VAR`] is unset and [`REQUIRE_VAR`] is `1`, or the server refuses.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                    panic!("{REQUIRE_VAR}=1 but {URL_VAR} is unset: PostgreSQL tests must not be skipped");
                }
                // Straight to stderr, past the test harness's output capture, once per binary.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "\n*** SKIPPING PostgreSQL tests: {URL_VAR} unset (run scripts/postgres-start) ***\n"
                    );
                });
                return None;
            }
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "myelin_test_{}_{}_{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        run_admin(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
            keep: false,
        })
    }

    /// The connection URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Keeps the database (it is not dropped) and returns its URL; for servers that outlive one
    /// guard, such as test servers restarted on the same data.
    pub fn keep(mut self) -> String {
        self.keep = true;
        std::mem::take(&mut self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (admin_url, sql) = (
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Drop may run inside a runtime; use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(run_admin(&admin_url, &sql)).ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Runs one statement on the admin database.
async fn run_admin(url: &str, sql: &str) -> Result<(), String> {
    let config = crate::parse_url(url).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| describe(&e))?;
    let task = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| describe(&e));
    drop(client);
    let _ = task.await;
    result
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
        .map(|i| rest_start + i);
    match path_start {
        Some(start) => format!("{}/{name}{}", &url[..start], &url[query_start..]),
        None => format!("{}/{name}{}", &url[..query_start], &url[query_start..]),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h?a=b", "x"), "postgres://h/x?a=b");
        assert_eq!(
            with_database("host=h user=u", "x"),
            "host=h user=u dbname=x"
        );
    }
}
