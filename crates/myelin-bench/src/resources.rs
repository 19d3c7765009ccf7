//! Resource use: the server's RSS and CPU time from `/proc/PID`, sampled on a thread while a
//! run lasts; the loader's own CPU time; the database size on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{BenchError, Result};
use crate::report::Resources;

const MIB: f64 = 1024.0 * 1024.0;

/// `VmRSS` and `VmHWM` from a `/proc/PID/status` text, in KiB.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `utime + stime` in clock ticks from a `/proc/PID/stat` text (the command name may hold
/// spaces and parentheses, so fields are counted after the last `)`).
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name come field 3 (state) onwards; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds used so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_ticks(&text)? as f64 / ticks_per_second())
}

/// CPU seconds (user + system) used so far by this process, all threads.
pub fn own_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so the struct is initialised.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(u.ru_utime) + secs(u.ru_stime))
}

/// The size in bytes of a file or, recursively, a directory. For a file, its SQLite `-wal` and
/// `-shm` companions are added when present.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| BenchError::io(path, e))?;
    if meta.is_file() {
        let mut total = meta.len();
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if let Ok(m) = std::fs::metadata(PathBuf::from(side)) {
                total += m.len();
            }
        }
        return Ok(total);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(|e| BenchError::io(path, e))? {
        let entry = entry.map_err(|e| BenchError::io(path, e))?;
        let p = entry.path();
        let m = std::fs::symlink_metadata(&p).map_err(|e| BenchError::io(&p, e))?;
        total += if m.is_dir() { disk_usage(&p)? } else { m.len() };
    }
    Ok(total)
}

#[derive(Debug, Default, Clone, Copy)]
struct Samples {
    peak_kib: Option<u64>,
    last_kib: Option<u64>,
}

/// Samples a process's memory every 100 ms until [`ProcSampler::finish`].
pub struct ProcSampler {
    pid: u32,
    cpu_start: Option<f64>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Samples>,
}

impl ProcSampler {
    /// Starts sampling `pid`; fails when `/proc/PID/status` cannot be read.
    pub fn start(pid: u32) -> Result<ProcSampler> {
        let status = format!("/proc/{pid}/status");
        std::fs::read_to_string(&status).map_err(|e| BenchError::io(&status, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut s = Samples::default();
            loop {
                if let Ok(text) = std::fs::read_to_string(&status) {
                    let (rss, hwm) = parse_status(&text);
                    s.last_kib = rss.or(s.last_kib);
                    s.peak_kib = [s.peak_kib, rss, hwm].into_iter().flatten().max();
                }
                if flag.load(Ordering::Relaxed) {
                    break s;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Ok(ProcSampler {
            pid,
            cpu_start: cpu_seconds(pid),
            stop,
            thread,
        })
    }

    /// Stops sampling and returns peak and final RSS and the CPU seconds used since `start`.
    pub fn finish(self) -> Resources {
        let cpu_end = cpu_seconds(self.pid);
        self.stop.store(true, Ordering::Relaxed);
        let s = self.thread.join().unwrap_or_default();
        Resources {
            peak_rss_mib: s.peak_kib.map(|k| k as f64 / 1024.0),
            final_rss_mib: s.last_kib.map(|k| k as f64 / 1024.0),
            server_cpu_s: match (self.cpu_start, cpu_end) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            },
            ..Resources::default()
        }
    }
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tmyelin\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t4\n";
        assert_eq!(parse_status(text), (Some(10240), Some(20480)));
        assert_eq!(parse_status("Name: x\n"), (None, None));
    }

    #[test]
    fn parses_stat_with_odd_names() {
        let text =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_stat_ticks(text), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let sampler = ProcSampler::start(std::process::id()).expect("own /proc");
        let r = sampler.finish();
        assert!(r.peak_rss_mib.is_some_and(|v| v > 0.0));
        assert!(r.final_rss_mib.is_some());
        assert!(r.server_cpu_s.is_some());
        assert!(own_cpu_seconds().is_some());
    }

    #[test]
    fn sizes_files_and_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("x.db");
        std::fs::write(&db, [0u8; 100]).expect("write");
        std::fs::write(dir.path().join("x.db-wal"), [0u8; 20]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/y"), [0u8; 5]).expect("write");
        assert_eq!(disk_usage(&db).expect("size"), 120);
        assert_eq!(disk_usage(dir.path()).expect("size"), 125);
        assert!(disk_usage(&dir.path().join("missing")).is_err());
    }
}
