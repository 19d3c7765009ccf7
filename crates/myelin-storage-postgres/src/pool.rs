//! Connections: a pool of client connections (with a prepared-statement cache each), and write
//! transactions serialised so that commit order equals stream-position order.
//!
//! A write holds the process-wide writer mutex (so waiting writers do not hold connections) and,
//! inside its transaction, the advisory lock [`WRITE_LOCK`] (so writers in other processes, e.g.
//! `myelin user create` next to a running server, queue as well). That mirrors SQLite's single
//! `BEGIN IMMEDIATE` writer: one write transaction at a time, so a committed stream position `N`
//! implies every position below `N` is committed too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myelin_storage::rows::Row as DecodeRow;
use myelin_storage::{StorageError, StorageResult};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};

use crate::convert::{describe, Db, PgRow};
use crate::error::PgError;

/// The advisory lock every write transaction holds (`"myelinwr"` in ASCII).
pub(crate) const WRITE_LOCK: i64 = 0x6d79_656c_696e_7772;

/// Used when the URL sets no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    writer: Arc<tokio::sync::Mutex<()>>,
    size: usize,
}

/// One connection and the statements prepared on it.
struct Client {
    inner: tokio_postgres::Client,
    statements: HashMap<String, Statement>,
}

/// A connection taken from the pool; it goes back when dropped, unless it broke or was dropped
/// inside an unfinished transaction (then it is closed, which rolls the transaction back).
pub(crate) struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    in_tx: bool,
    _permit: OwnedSemaphorePermit,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl Pool {
    pub(crate) fn new(mut config: tokio_postgres::Config, size: usize) -> Result<Pool, PgError> {
        if size == 0 {
            return Err(PgError::EmptyPool);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("myelin");
        }
        Ok(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            size,
        })
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Where the pool connects, without credentials, for messages.
    pub(crate) fn target(&self) -> String {
        target(&self.config)
    }

    /// A connection for reading (autocommit: every statement sees the latest commits).
    pub(crate) async fn read(self: &Arc<Self>) -> StorageResult<Conn> {
        self.get(None).await
    }

    /// A connection inside a read-only transaction that sees one snapshot, for reads of several
    /// statements that must agree (counters and the position they reach). End it with
    /// [`Conn::finish`].
    pub(crate) async fn read_snapshot(self: &Arc<Self>) -> StorageResult<Conn> {
        let mut conn = self.get(None).await?;
        conn.in_tx = true;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        Ok(conn)
    }

    /// A connection inside a write transaction that holds the write lock. End it with
    /// [`Conn::finish`].
    pub(crate) async fn write(self: &Arc<Self>) -> StorageResult<Conn> {
        let guard = self.writer.clone().lock_owned().await;
        let mut conn = self.get(Some(guard)).await?;
        conn.begin().await?;
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .await?;
        Ok(conn)
    }

    async fn get(self: &Arc<Self>, writer: Option<OwnedMutexGuard<()>>) -> StorageResult<Conn> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Backend("connection pool closed".into()))?;
        let pooled = loop {
            let next = self
                .idle
                .lock()
                .map_err(|_| StorageError::Backend("connection pool poisoned".into()))?
                .pop();
            match next {
                Some(client) if client.inner.is_closed() => continue,
                other => break other,
            }
        };
        let client = match pooled {
            Some(client) => client,
            None => self.connect().await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            in_tx: false,
            _permit: permit,
            _writer: writer,
        })
    }

    async fn connect(&self) -> Result<Client, PgError> {
        let (inner, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| PgError::Connect {
                    target: self.target(),
                    reason: describe(&e),
                })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "PostgreSQL connection closed with an error");
            }
        });
        Ok(Client {
            inner,
            statements: HashMap::new(),
        })
    }
}

impl Conn {
    fn client(&mut self) -> StorageResult<&mut Client> {
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Backend("connection already released".into()))
    }

    async fn statement(&mut self, sql: &str) -> StorageResult<Statement> {
        let client = self.client()?;
        if let Some(statement) = client.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.inner.prepare(sql).await.db()?;
        client.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The parameter types of a statement (prepared and cached).
    pub(crate) async fn param_types(
        &mut self,
        sql: &str,
    ) -> StorageResult<Vec<tokio_postgres::types::Type>> {
        Ok(self.statement(sql).await?.params().to_vec())
    }

    pub(crate) async fn query(&mut self, sql: &str, params: Params<'_>) -> StorageResult<Vec<Row>> {
        let statement = self.statement(sql).await?;
        self.client()?.inner.query(&statement, params).await.db()
    }

    pub(crate) async fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> StorageResult<Option<Row>> {
        let statement = self.statement(sql).await?;
        self.client()?
            .inner
            .query_opt(&statement, params)
            .await
            .db()
    }

    pub(crate) async fn query_one(&mut self, sql: &str, params: Params<'_>) -> StorageResult<Row> {
        let statement = self.statement(sql).await?;
        self.client()?
            .inner
            .query_one(&statement, params)
            .await
            .db()
    }

    /// Runs a query and decodes every row with `decode`, in the query's order.
    pub(crate) async fn query_decode<T>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        decode: impl Fn(&dyn DecodeRow) -> StorageResult<T>,
    ) -> StorageResult<Vec<T>> {
        let rows = self.query(sql, params).await?;
        rows.iter().map(|row| decode(&PgRow(row))).collect()
    }

    /// Runs a query that returns at most one row and decodes it with `decode`.
    pub(crate) async fn query_opt_decode<T>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        decode: impl FnOnce(&dyn DecodeRow) -> StorageResult<T>,
    ) -> StorageResult<Option<T>> {
        let row = self.query_opt(sql, params).await?;
        row.map(|row| decode(&PgRow(&row))).transpose()
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &str, params: Params<'_>) -> StorageResult<u64> {
        let statement = self.statement(sql).await?;
        self.client()?.inner.execute(&statement, params).await.db()
    }

    /// Runs SQL without parameters (possibly several statements), unprepared.
    pub(crate) async fn batch(&mut self, sql: &str) -> StorageResult<()> {
        self.client()?.inner.batch_execute(sql).await.db()
    }

    pub(crate) async fn begin(&mut self) -> StorageResult<()> {
        self.in_tx = true;
        self.batch("BEGIN").await
    }

    /// Records that the transaction begun with [`Conn::begin`] ended (committed or rolled back
    /// by hand).
    pub(crate) fn mark_idle(&mut self) {
        self.in_tx = false;
    }

    /// Commits the transaction if `result` is `Ok`, rolls it back otherwise; returns `result`
    /// (or the commit's error).
    pub(crate) async fn finish<T>(mut self, result: StorageResult<T>) -> StorageResult<T> {
        match result {
            Ok(value) => {
                self.batch("COMMIT").await?;
                self.in_tx = false;
                Ok(value)
            }
            Err(err) => {
                if self.batch("ROLLBACK").await.is_ok() {
                    self.in_tx = false;
                }
                Err(err)
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if self.in_tx || client.inner.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock() {
            idle.push(client);
        }
    }
}

/// `host:port/dbname` of a configuration, for messages (never the password).
pub(crate) fn target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = if ports.is_empty() {
        "5432".to_owned()
    } else {
        ports.join(",")
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}
