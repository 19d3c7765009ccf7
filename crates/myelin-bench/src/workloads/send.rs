//! `send`: many users send messages into many rooms at a fixed concurrency; measures the
//! throughput and the latency of `PUT /rooms/{room}/send`.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, rooms_with_members, Ctx};
use crate::stats::Summary;

use super::ms_since;

/// The sizes of `send`.
#[derive(Debug, Clone)]
pub struct Params {
    pub users: usize,
    pub rooms: usize,
    pub members: usize,
    pub messages: usize,
    pub concurrency: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            users: 50,
            rooms: 20,
            members: 10,
            messages: 5000,
            concurrency: 32,
        }
    }
}

/// Room `r`'s members: `members` consecutive users (wrapping), the first one creates it.
pub fn room_members(r: usize, members: usize, users: usize) -> Vec<usize> {
    (0..members).map(|k| (r * members + k) % users).collect()
}

/// Runs `send`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    if p.members == 0 || p.members > p.users || p.rooms == 0 {
        return Err(BenchError::Invalid(
            "send needs 0 < members <= users and rooms > 0".into(),
        ));
    }
    let mut report = WorkloadReport::new("send");
    report.param("users", p.users);
    report.param("rooms", p.rooms);
    report.param("members", p.members);
    report.param("messages", p.messages);
    report.param("concurrency", p.concurrency);

    let users = register_users(ctx, "s", p.users).await?;
    let layout: Vec<Vec<usize>> = (0..p.rooms)
        .map(|r| room_members(r, p.members, p.users))
        .collect();
    let rooms = rooms_with_members(ctx, &users, &layout).await?;

    let (client, users, rooms, layout) = (
        ctx.client.clone(),
        Arc::new(users),
        Arc::new(rooms),
        Arc::new(layout),
    );
    let (n_rooms, members) = (p.rooms, p.members);
    let started = Instant::now();
    let results = run_indexed(p.messages, p.concurrency, move |i| {
        let (client, users, rooms, layout) =
            (client.clone(), users.clone(), rooms.clone(), layout.clone());
        async move {
            let r = i % n_rooms;
            let sender = &users[layout[r][(i / n_rooms) % members]];
            let t = Instant::now();
            client
                .send_text(sender, &rooms[r], &format!("t{i}"), &format!("message {i}"))
                .await
                .map(|_| ms_since(t))
        }
    })
    .await?;
    let wall = started.elapsed().as_secs_f64();

    let mut latencies = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(ms) => latencies.push(ms),
            Err(e) => report.error(e),
        }
    }
    if wall > 0.0 {
        report.metric(
            "throughput",
            "msg/s",
            latencies.len() as f64 / wall,
            Better::Higher,
        );
    }
    report.latency("put", Summary::of(&latencies));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_take_consecutive_distinct_users() {
        assert_eq!(room_members(0, 3, 5), vec![0, 1, 2]);
        assert_eq!(room_members(1, 3, 5), vec![3, 4, 0]);
        let m = room_members(19, 10, 50);
        let mut d = m.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 10);
    }
}
