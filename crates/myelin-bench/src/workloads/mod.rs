//! The workloads. Each one registers its own users, builds its rooms (not measured), then
//! measures one thing and returns a [`WorkloadReport`]. Every loop is bounded by a count and
//! every wait by a timeout, so a workload always ends.

pub mod deliver;
pub mod incremental_sync;
pub mod initial_sync;
pub mod join;
pub mod push;
pub mod send;
pub mod sliding_sync;
pub mod upload;

use std::time::Instant;

use crate::error::Result;
use crate::report::WorkloadReport;
use crate::setup::Ctx;

/// The sizes of every workload, for `all` and `compare`.
#[derive(Debug, Clone, Default)]
pub struct AllParams {
    pub send: send::Params,
    pub deliver: deliver::Params,
    pub initial_sync: initial_sync::Params,
    pub incremental_sync: incremental_sync::Params,
    pub join: join::Params,
    pub push: push::Params,
    pub sliding_sync: sliding_sync::Params,
    pub upload: upload::Params,
}

/// The names `all` runs, in order.
pub const ALL: [&str; 8] = [
    "send",
    "deliver",
    "push",
    "initial-sync",
    "incremental-sync",
    "join",
    "sliding-sync",
    "upload",
];

/// Runs the workload called `name` (one of [`ALL`]) with its sizes from `p`.
pub async fn run_named(ctx: &Ctx, name: &str, p: &AllParams) -> Result<WorkloadReport> {
    let started = Instant::now();
    let mut report = match name {
        "send" => send::run(ctx, &p.send).await?,
        "deliver" => deliver::run(ctx, &p.deliver).await?,
        "push" => push::run(ctx, &p.push).await?,
        "initial-sync" => initial_sync::run(ctx, &p.initial_sync).await?,
        "incremental-sync" => incremental_sync::run(ctx, &p.incremental_sync).await?,
        "join" => join::run(ctx, &p.join).await?,
        "sliding-sync" => sliding_sync::run(ctx, &p.sliding_sync).await?,
        "upload" => upload::run(ctx, &p.upload).await?,
        other => {
            return Err(crate::BenchError::Invalid(format!(
                "unknown workload {other}"
            )))
        }
    };
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Milliseconds elapsed since `t`.
pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
