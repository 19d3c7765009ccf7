//! The PostgreSQL backend processes serving one run's database (those `pg_stat_activity` lists
//! for it), sampled every 500 ms while the run lasts: the peak of their summed proportional set
//! size (Pss, so that shared buffers are not counted once per process) and the CPU seconds they
//! used. The cluster's shared processes (postmaster, checkpointer, writers) are not counted.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{BenchError, Result};
use crate::resources::cpu_seconds;

use super::postgres::{describe, PgDatabase};

const INTERVAL: Duration = Duration::from_millis(500);

/// `Pss` in KiB from a `/proc/PID/smaps_rollup` text.
pub fn parse_pss_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn pss_kib(pid: u32) -> Option<u64> {
    parse_pss_kib(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// What the sampler saw.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PgUse {
    /// The largest summed Pss of one sample, MiB.
    pub peak_pss_mib: Option<f64>,
    /// CPU seconds of the backends during the run.
    pub cpu_s: Option<f64>,
}

/// CPU accounting per backend: the CPU seconds a backend had when first seen (0 for one that
/// appeared during the run) and when last seen.
#[derive(Debug, Default)]
pub struct CpuLedger {
    seen: HashMap<u32, (f64, f64)>,
}

impl CpuLedger {
    /// Records `pid` at `cpu` seconds; `from_start` is whether it existed at the first sample.
    pub fn record(&mut self, pid: u32, cpu: f64, from_start: bool) {
        let base = if from_start { cpu } else { 0.0 };
        self.seen.entry(pid).or_insert((base, cpu)).1 = cpu;
    }

    /// The CPU seconds used by all backends seen.
    pub fn total(&self) -> f64 {
        self.seen.values().map(|(a, b)| (b - a).max(0.0)).sum()
    }
}

/// A running sampler; [`PgSampler::finish`] stops it.
pub struct PgSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<PgUse>,
}

impl PgSampler {
    /// Starts sampling the backends of `db`.
    pub async fn start(db: &PgDatabase) -> Result<PgSampler> {
        let client = db.admin().connect(None).await?;
        let name = db.name().to_owned();
        let list = move |client: tokio_postgres::Client| {
            let name = name.clone();
            async move {
                let rows = client
                    .query(
                        "SELECT pid FROM pg_stat_activity WHERE datname = $1::text",
                        &[&name],
                    )
                    .await;
                let pids: Vec<u32> = rows
                    .map_err(|e| BenchError::Postgres(describe(&e)))?
                    .iter()
                    .filter_map(|r| u32::try_from(r.get::<_, i32>(0)).ok())
                    .collect();
                Ok::<_, BenchError>((client, pids))
            }
        };
        // The first listing must work; later failures end the sampling quietly.
        let (mut client, first) = list(client).await?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ledger = CpuLedger::default();
            let mut peak: Option<u64> = None;
            let mut pids = first;
            let mut from_start = true;
            let mut last = false;
            loop {
                let mut sum = None;
                for &pid in &pids {
                    if let Some(kib) = pss_kib(pid) {
                        sum = Some(sum.unwrap_or(0) + kib);
                    }
                    if let Some(cpu) = cpu_seconds(pid) {
                        ledger.record(pid, cpu, from_start);
                    }
                }
                peak = peak.max(sum);
                from_start = false;
                if last {
                    break;
                }
                // When told to stop, one last sample, so that short runs count too.
                tokio::select! {
                    _ = &mut stopped => last = true,
                    _ = tokio::time::sleep(INTERVAL) => {}
                }
                match list(client).await {
                    Ok((c, p)) => (client, pids) = (c, p),
                    Err(_) => break,
                }
            }
            PgUse {
                peak_pss_mib: peak.map(|k| k as f64 / 1024.0),
                cpu_s: Some(ledger.total()),
            }
        });
        Ok(PgSampler { stop, task })
    }

    /// Stops sampling and returns what it saw.
    pub async fn finish(self) -> PgUse {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pss() {
        let text =
            "00400000-7ffd [rollup]\nRss:     20480 kB\nPss:      1234 kB\nPss_Anon: 10 kB\n";
        assert_eq!(parse_pss_kib(text), Some(1234));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
    }

    #[test]
    fn cpu_counts_from_first_sight_or_birth() {
        let mut l = CpuLedger::default();
        l.record(1, 10.0, true);
        l.record(1, 12.5, false);
        l.record(2, 0.5, false);
        l.record(2, 1.5, false);
        assert!((l.total() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn own_pss_is_readable() {
        // Sanity check of the /proc path on Linux.
        if let Some(kib) = pss_kib(std::process::id()) {
            assert!(kib > 0);
        }
    }
}
