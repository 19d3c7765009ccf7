//! Runs a list of workloads against one server while watching its resources, producing a
//! [`RunReport`].

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::error::Result;
use crate::report::RunReport;
use crate::resources::{disk_usage, mib, own_cpu_seconds, ProcSampler};
use crate::setup::Ctx;
use crate::workloads::{run_named, AllParams};

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// A label for the report, e.g. `myelin`.
    pub label: &'a str,
    pub url: &'a str,
    /// The server's PID, to sample its RSS and CPU time.
    pub pid: Option<u32>,
    /// The database file or directory, measured at the end.
    pub db_path: Option<&'a Path>,
    pub setup_concurrency: usize,
}

/// Runs `workloads` (names from [`crate::workloads::ALL`]) in order. A workload that fails in
/// its set-up aborts the run; errors during measurement are counted in its report.
/// `progress` is told each workload's name before it starts.
pub async fn run(
    target: &Target<'_>,
    workloads: &[String],
    params: &AllParams,
    progress: &dyn Fn(&str),
) -> Result<RunReport> {
    let client = Client::new(target.url)?;
    let ctx = Ctx::new(client, target.setup_concurrency);
    let sampler = target.pid.map(ProcSampler::start).transpose()?;
    let loader_start = own_cpu_seconds();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut reports = Vec::new();
    for name in workloads {
        progress(name);
        reports.push(run_named(&ctx, name, params).await?);
    }
    let mut resources = sampler.map(ProcSampler::finish).unwrap_or_default();
    resources.loader_cpu_s = match (loader_start, own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    if let Some(db) = target.db_path {
        resources.db_size_mib = Some(mib(disk_usage(db)?));
    }
    Ok(RunReport {
        server: target.label.to_owned(),
        url: target.url.to_owned(),
        bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        workloads: reports,
        resources,
    })
}
