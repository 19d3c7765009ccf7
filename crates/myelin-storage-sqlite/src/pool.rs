//! Connections: the single writer (one `BEGIN IMMEDIATE` transaction per write, stream position
//! allocation) and the pool of reader connections, all used from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use myelin_core::StreamPos;
use myelin_storage::{StorageError, StorageResult};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::convert::Db as _;
use crate::migrations;

/// Reader connections kept open (and the most used at once).
const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Db {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<Semaphore>,
    /// The last committed stream position; only changed while holding `writer`.
    pos: AtomicI64,
}

/// Hands out the stream position of the running write transaction (at most one per write).
pub(crate) struct Positions {
    last_committed: i64,
    taken: Option<i64>,
}

impl Positions {
    /// The position of this write: the next one after the last committed write. Calling it again
    /// returns the same position.
    pub(crate) fn take(&mut self, tx: &Transaction<'_>) -> StorageResult<StreamPos> {
        if let Some(pos) = self.taken {
            return Ok(StreamPos(pos));
        }
        let pos = self.last_committed + 1;
        tx.prepare_cached("UPDATE stream_counter SET pos = ?1 WHERE id = 0")
            .db()?
            .execute([pos])
            .db()?;
        self.taken = Some(pos);
        Ok(StreamPos(pos))
    }

    /// Starts the next logical write of a batch in the same transaction: its `take` returns a
    /// fresh position after the ones already taken.
    pub(crate) fn next_write(&mut self) {
        if let Some(pos) = self.taken.take() {
            self.last_committed = pos;
        }
    }
}

impl Db {
    pub(crate) fn open(path: &Path) -> StorageResult<Db> {
        let mut writer = Connection::open(path).db()?;
        configure(&writer)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Backend(format!(
                "could not enable WAL (journal_mode is {mode})"
            )));
        }
        migrations::migrate(&mut writer)?;
        let pos: i64 = writer
            .query_row(
                "SELECT MAX((SELECT pos FROM stream_counter WHERE id = 0),
                            COALESCE((SELECT MAX(stream_pos) FROM events), 0))",
                [],
                |row| row.get(0),
            )
            .db()?;
        let readers = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<StorageResult<Vec<_>>>()?;
        Ok(Db {
            path: path.to_owned(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(readers),
            read_permits: Arc::new(Semaphore::new(READERS)),
            pos: AtomicI64::new(pos),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The last committed stream position.
    pub(crate) fn stream_pos(&self) -> StreamPos {
        StreamPos(self.pos.load(Ordering::Acquire))
    }

    /// Runs `f` in one immediate write transaction on the writer connection and commits it.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        let mut conn = self.writer.clone().lock_owned().await;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
            let mut positions = Positions {
                last_committed: db.pos.load(Ordering::Acquire),
                taken: None,
            };
            let out = f(&tx, &mut positions)?;
            tx.commit().db()?;
            if let Some(pos) = positions.taken {
                db.pos.store(pos, Ordering::Release);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StorageError::Backend(format!("write task failed: {e}")))?
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a reader connection.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Backend("reader pool closed".into()))?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = db.take_reader()?;
            let out = (|| {
                let tx = conn.transaction().db()?;
                let out = f(&tx)?;
                tx.finish().db()?;
                Ok(out)
            })();
            db.put_reader(conn);
            out
        })
        .await
        .map_err(|e| StorageError::Backend(format!("read task failed: {e}")))?
    }

    fn take_reader(&self) -> StorageResult<Connection> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StorageError::Backend("reader pool poisoned".into()))?
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            // Only after a reader was lost to a panic: replace it.
            None => open_reader(&self.path),
        }
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(conn);
        }
    }
}

fn configure(conn: &Connection) -> StorageResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    conn.pragma_update(None, "foreign_keys", "ON").db()?;
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    Ok(())
}

fn open_reader(path: &Path) -> StorageResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .db()?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", "ON").db()?;
    Ok(conn)
}
