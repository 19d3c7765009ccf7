//! Starting a server process, waiting until it answers, and stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{BenchError, Result};

/// A server we started; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The SQLite database file (none on PostgreSQL).
    pub db_path: Option<PathBuf>,
    pub log: PathBuf,
}

impl Server {
    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/_matrix/client/versions` until it answers, the process exits, or `limit` passes.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let client = Client::new(&self.url)?;
        let deadline = Instant::now() + limit;
        loop {
            if client.versions(Duration::from_secs(2)).await.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Server(format!(
                    "exited with {status} before answering; see {}",
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Server(format!(
                    "no answer within {limit:?}; see {}",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and waits up to 20 s, then kills.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; the PID is our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd` with its output going to `log`.
pub fn spawn(
    mut cmd: Command,
    log: &Path,
    url: String,
    db_path: Option<PathBuf>,
) -> Result<Server> {
    let out = std::fs::File::create(log).map_err(|e| BenchError::io(log, e))?;
    let err = out.try_clone().map_err(|e| BenchError::io(log, e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let child = cmd
        .spawn()
        .map_err(|e| BenchError::Server(format!("cannot start {cmd:?}: {e}")))?;
    Ok(Server {
        child,
        url,
        db_path,
        log: log.to_owned(),
    })
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("127.0.0.1:0", e))?;
    Ok(l.local_addr()
        .map_err(|e| BenchError::io("127.0.0.1:0", e))?
        .port())
}

/// Removes and recreates `dir`.
pub fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    std::path::absolute(dir).map_err(|e| BenchError::io(dir, e))
}
