//! The repository's throwaway PostgreSQL cluster (`scripts/postgres-start DIR`), for a
//! comparison on PostgreSQL without a server of one's own. A cluster this started is stopped
//! again when the [`Cluster`] is dropped; one already running in `DIR` is reused and left running.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{BenchError, Result};

/// A cluster in a directory.
#[derive(Debug)]
pub struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    /// The admin URL the script printed.
    pub url: String,
    /// Whether we started it (and so stop it).
    started: bool,
}

/// The URL a `postgres-start` run printed: its last non-empty line of standard output.
pub fn printed_url(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .filter(|l| l.starts_with("postgres://") || l.starts_with("postgresql://"))
}

/// The arguments of the start script for `dir`.
pub fn script_args(dir: &Path, durable: bool) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    if durable {
        args.push("--durable".into());
    }
    args.push(dir.as_os_str().to_owned());
    args
}

impl Cluster {
    /// Starts (or reuses) the cluster in `dir` with `script`, with durable settings
    /// (`--durable`: fsync and synchronous_commit on) when `durable` is set.
    pub fn start(script: &Path, dir: &Path, durable: bool) -> Result<Cluster> {
        if !script.is_file() {
            return Err(BenchError::Postgres(format!(
                "{} not found (run from the repository root or pass --postgres-url)",
                script.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let dir = std::path::absolute(dir).map_err(|e| BenchError::io(dir, e))?;
        let running = dir.join("data").join("postmaster.pid").exists();
        let out = Command::new("bash")
            .arg(script)
            .args(script_args(&dir, durable))
            .output()
            .map_err(|e| BenchError::Postgres(format!("cannot run {}: {e}", script.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let url = match printed_url(&stdout) {
            Some(url) if out.status.success() => url.to_owned(),
            _ => {
                return Err(BenchError::Postgres(format!(
                    "{} {} failed ({}): {}",
                    script.display(),
                    dir.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        };
        Ok(Cluster {
            script: script.to_owned(),
            dir,
            url,
            started: !running,
        })
    }

    /// Where it lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops it if we started it.
    pub fn stop(&mut self) {
        if !std::mem::take(&mut self.started) {
            return;
        }
        let status = Command::new("bash")
            .arg(&self.script)
            .arg("--stop")
            .arg(&self.dir)
            .output();
        if !status.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "[myelin-bench] warning: could not stop the PostgreSQL cluster in {}",
                self.dir.display()
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_printed_url() {
        assert_eq!(
            printed_url("note\npostgres://postgres@127.0.0.1:54329/postgres\n\n"),
            Some("postgres://postgres@127.0.0.1:54329/postgres")
        );
        assert_eq!(printed_url("postgres://a/b\nsomething else\n"), None);
        assert_eq!(printed_url(""), None);
    }

    #[test]
    fn durable_unless_asked_for_fast() {
        let dir = Path::new("/tmp/pg");
        assert_eq!(script_args(dir, true), ["--durable", "/tmp/pg"]);
        assert_eq!(script_args(dir, false), ["/tmp/pg"]);
    }
}
