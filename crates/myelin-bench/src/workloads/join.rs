//! `join`: state size scaling. For each member count it creates a room, fills it with that many
//! members, then has members leave and rejoin; measures createRoom, the fill joins, and the
//! join and leave latency at that size.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, Ctx};
use crate::stats::Summary;

use super::ms_since;

/// The sizes of `join`.
#[derive(Debug, Clone)]
pub struct Params {
    pub sizes: Vec<usize>,
    /// Leave + rejoin cycles measured at each size.
    pub samples: usize,
    /// Concurrency of the fill joins.
    pub concurrency: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            sizes: vec![10, 100, 1000],
            samples: 20,
            concurrency: 8,
        }
    }
}

/// Runs `join`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    let max = p.sizes.iter().copied().max().unwrap_or(0);
    if max < 2 || p.sizes.contains(&0) {
        return Err(BenchError::Invalid(
            "join sizes must be at least 2 (a creator and a member)".into(),
        ));
    }
    let mut report = WorkloadReport::new("join");
    report.param("sizes", p.sizes.clone());
    report.param("samples", p.samples);
    report.param("concurrency", p.concurrency);
    let users = Arc::new(register_users(ctx, "j", max).await?);

    for &size in &p.sizes {
        let t = Instant::now();
        let room = match ctx.client.create_public_room(&users[0]).await {
            Ok(room) => room,
            Err(e) => {
                report.error(e);
                continue;
            }
        };
        report.metric(&format!("create_{size}"), "ms", ms_since(t), Better::Lower);

        let (client, u, r) = (ctx.client.clone(), users.clone(), Arc::new(room.clone()));
        let t = Instant::now();
        let fill = run_indexed(size - 1, p.concurrency, move |i| {
            let (client, u, r) = (client.clone(), u.clone(), r.clone());
            async move {
                let t = Instant::now();
                client.join(&u[i + 1], &r).await.map(|_| ms_since(t))
            }
        })
        .await?;
        let fill_s = t.elapsed().as_secs_f64();
        let mut fill_ms = Vec::new();
        for f in fill {
            match f {
                Ok(ms) => fill_ms.push(ms),
                Err(e) => report.error(e),
            }
        }
        if fill_s > 0.0 {
            report.metric(
                &format!("fill_{size}_rate"),
                "joins/s",
                fill_ms.len() as f64 / fill_s,
                Better::Higher,
            );
        }

        let (mut joins, mut leaves) = (Vec::new(), Vec::new());
        for k in 0..p.samples {
            let member = &users[1 + k % (size - 1)];
            let t = Instant::now();
            match ctx.client.leave(member, &room).await {
                Ok(()) => leaves.push(ms_since(t)),
                Err(e) => report.error(e),
            }
            let t = Instant::now();
            match ctx.client.join(member, &room).await {
                Ok(()) => joins.push(ms_since(t)),
                Err(e) => report.error(e),
            }
        }
        if let Some(s) = Summary::of(&joins) {
            report.metric(&format!("join_{size}_p50"), "ms", s.p50, Better::Lower);
        }
        if let Some(s) = Summary::of(&leaves) {
            report.metric(&format!("leave_{size}_p50"), "ms", s.p50, Better::Lower);
        }
    }
    Ok(report)
}
