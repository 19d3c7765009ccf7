//! Connections: the single writer thread (group commit: concurrent writes share one `BEGIN
//! IMMEDIATE` transaction, each in its own savepoint; stream position allocation) and the reader
//! threads, each owning one read connection. Reads never run on tokio's blocking pool, so work
//! that fills that pool (DNS lookups, password hashing) cannot delay them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use myelin_core::StreamPos;
use myelin_storage::{StorageError, StorageResult};
use rusqlite::{config::DbConfig, Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::convert::Db as _;
use crate::member_numbers::MemberNumberCache;
use crate::migrations;

/// Reader threads, each with its own connection (and so the most reads run at once).
const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Db {
    path: PathBuf,
    /// Jobs for the writer thread, which owns the only write connection.
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Jobs for the reader threads, which take them in turn from one queue.
    reads: Mutex<Option<mpsc::Sender<ReadJob>>>,
    reader_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The last committed stream position; only the writer thread changes it, after a commit.
    pos: Arc<AtomicI64>,
    /// The writer's member numbers, which it drops when a write fails.
    pub(crate) member_numbers: Arc<MemberNumberCache>,
}

/// Hands out the stream position of the running write transaction (at most one per write).
#[derive(Debug, Clone, Copy)]
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
        let (reads, read_queue) = mpsc::channel::<ReadJob>();
        let read_queue = Arc::new(Mutex::new(read_queue));
        let reader_threads = readers
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let queue = read_queue.clone();
                std::thread::Builder::new()
                    .name(format!("myelin-sqlite-reader-{i}"))
                    .spawn(move || reader_loop(conn, &queue))
                    .map_err(|e| {
                        StorageError::Backend(format!("cannot start a reader thread: {e}"))
                    })
            })
            .collect::<StorageResult<Vec<_>>>()?;
        let pos = Arc::new(AtomicI64::new(pos));
        let (jobs, queue) = mpsc::channel();
        let thread_pos = pos.clone();
        let member_numbers = Arc::new(MemberNumberCache::default());
        let thread_numbers = member_numbers.clone();
        let writer_thread = std::thread::Builder::new()
            .name("myelin-sqlite-writer".into())
            .spawn(move || group_commit_loop(writer, &queue, &thread_pos, &thread_numbers))
            .map_err(|e| StorageError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Db {
            path: path.to_owned(),
            writer: Mutex::new(Some(jobs)),
            writer_thread: Mutex::new(Some(writer_thread)),
            reads: Mutex::new(Some(reads)),
            reader_threads: Mutex::new(reader_threads),
            pos,
            member_numbers,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The last committed stream position.
    pub(crate) fn stream_pos(&self) -> StreamPos {
        StreamPos(self.pos.load(Ordering::Acquire))
    }

    /// Runs `f` as one atomic write and answers once it is committed (durable).
    ///
    /// Concurrent writes are group-committed: the writer thread runs every queued write in one
    /// `BEGIN IMMEDIATE` transaction, each inside its own savepoint (a failing write rolls back
    /// alone), then commits once, so one fsync covers the whole group.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut Positions) -> StorageResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            f: Some(f),
            result: None,
            reply,
        });
        {
            let writer = self
                .writer
                .lock()
                .map_err(|_| StorageError::Backend("writer queue poisoned".into()))?;
            let jobs = writer
                .as_ref()
                .ok_or_else(|| StorageError::Backend("the database is closed".into()))?;
            jobs.send(job)
                .map_err(|_| StorageError::Backend("the writer thread stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| StorageError::Backend("the writer thread stopped".into()))?
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a reader thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StorageResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &mut Connection| {
            let out = (|| {
                let tx = conn.transaction().db()?;
                let out = f(&tx)?;
                tx.finish().db()?;
                Ok(out)
            })();
            // The caller may have gone away (request cancelled).
            let _ = reply.send(out);
        });
        {
            let reads = self
                .reads
                .lock()
                .map_err(|_| StorageError::Backend("reader queue poisoned".into()))?;
            let jobs = reads
                .as_ref()
                .ok_or_else(|| StorageError::Backend("the database is closed".into()))?;
            jobs.send(job)
                .map_err(|_| StorageError::Backend("the reader threads stopped".into()))?;
        }
        answer
            .await
            .map_err(|_| StorageError::Backend("a read failed without an answer".into()))?
    }
}

/// A read for a reader thread: runs on that thread's connection and answers its caller.
type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// A reader thread: takes the next read from the shared queue until the queue closes. A read
/// that panics is answered with an error (its reply is dropped) and the thread goes on, its
/// transaction rolled back by the unwinding.
fn reader_loop(mut conn: Connection, queue: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a database read panicked");
        }
    }
}

impl Drop for Db {
    /// Lets the writer finish its queue, commit and close its connection.
    fn drop(&mut self) {
        if let Ok(mut reads) = self.reads.lock() {
            reads.take();
        }
        if let Ok(mut threads) = self.reader_threads.lock() {
            for thread in threads.drain(..) {
                let _ = thread.join();
            }
        }
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        if let Some(thread) = self.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

/// The most writes committed together.
const MAX_GROUP: usize = 64;

/// One queued write, type-erased so that writes of any result type share the queue.
trait WriteJob: Send {
    /// Runs the write in `tx`; false if it failed (the caller rolls back its savepoint).
    fn run(&mut self, tx: &Transaction<'_>, positions: &mut Positions) -> bool;
    /// Answers the caller: the write's result if the group committed, else the commit error.
    fn finish(self: Box<Self>, commit: Result<(), &StorageError>);
}

struct Job<T, F> {
    f: Option<F>,
    result: Option<StorageResult<T>>,
    reply: oneshot::Sender<StorageResult<T>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>, &mut Positions) -> StorageResult<T> + Send + 'static,
{
    fn run(&mut self, tx: &Transaction<'_>, positions: &mut Positions) -> bool {
        let Some(f) = self.f.take() else { return false };
        // A panic in one write must not take the writer (and every other write) down with it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx, positions)))
            .unwrap_or_else(|_| Err(StorageError::Backend("a write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StorageError>) {
        let result = match (commit, self.result) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(ok)) => ok,
            (Err(e), Some(Ok(_))) => Err(StorageError::Backend(format!("commit failed: {e}"))),
            (_, None) => Err(StorageError::Backend("the write never ran".into())),
        };
        // The caller may have gone away (request cancelled); the write stands either way.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: takes every queued write (up to [`MAX_GROUP`]), runs them in one
/// transaction and commits once. Ends when the queue's last sender is dropped.
fn group_commit_loop(
    mut conn: Connection,
    queue: &mpsc::Receiver<Box<dyn WriteJob>>,
    pos: &AtomicI64,
    member_numbers: &MemberNumberCache,
) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut positions = Positions {
            last_committed: pos.load(Ordering::Acquire),
            taken: None,
        };
        let commit = run_group(&mut conn, &mut group, &mut positions, member_numbers);
        if commit.is_err() {
            member_numbers.clear();
        }
        if commit.is_ok() {
            positions.next_write();
            pos.store(positions.last_committed, Ordering::Release);
        }
        for job in group {
            job.finish(commit.as_ref().map(|_| ()));
        }
    }
}

fn run_group(
    conn: &mut Connection,
    group: &mut [Box<dyn WriteJob>],
    positions: &mut Positions,
    member_numbers: &MemberNumberCache,
) -> StorageResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    for job in group.iter_mut() {
        positions.next_write();
        let before = *positions;
        tx.execute_batch("SAVEPOINT job").db()?;
        if job.run(&tx, positions) {
            tx.execute_batch("RELEASE job").db()?;
        } else {
            // Undo this write only; its stream positions go to the next one.
            tx.execute_batch("ROLLBACK TO job; RELEASE job").db()?;
            *positions = before;
            member_numbers.clear();
        }
    }
    tx.commit().db()
}

fn configure(conn: &Connection) -> StorageResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    conn.pragma_update(None, "foreign_keys", "ON").db()?;
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    // One plan per statement, whatever the values bound: otherwise SQLite re-prepares a cached
    // statement with a bound `LIMIT ?` (every timeline read) on each run, parsing and planning
    // it again.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .db()?;
    Ok(())
}

fn open_reader(path: &Path) -> StorageResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .db()?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", "ON").db()?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read needs no thread of tokio's blocking pool: with that pool's only thread taken by
    /// a task that waits for the read, the read still completes.
    #[test]
    fn reads_do_not_wait_for_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(&dir.path().join("test.db")).expect("open"));
        runtime.block_on(async {
            let (release, wait) = mpsc::channel::<()>();
            let blocker = tokio::task::spawn_blocking(move || {
                let _ = wait.recv();
            });
            let read = db.read(|conn| {
                conn.query_row("SELECT 41 + 1", [], |row| row.get::<_, i64>(0))
                    .db()
            });
            // A guard against hanging, not a timing assertion.
            let answer = tokio::time::timeout(Duration::from_secs(30), read)
                .await
                .expect("the read did not queue behind the blocking pool")
                .expect("read");
            assert_eq!(answer, 42);
            release.send(()).expect("release the blocker");
            blocker.await.expect("blocker");
        });
    }
}
