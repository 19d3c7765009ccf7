//! `initial-sync`: one user in many rooms with many members and some history; measures the
//! first `/sync` (no `since`) with a lazy-loading filter and with the full state.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::client::{joined_room_count, User};
use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, rooms_with_members, Ctx};
use crate::stats::Summary;

use super::ms_since;

/// The sizes of `initial-sync`.
#[derive(Debug, Clone)]
pub struct Params {
    pub rooms: usize,
    pub members: usize,
    /// Messages sent into each room before measuring.
    pub events: usize,
    /// The timeline limit of both filters.
    pub timeline_limit: usize,
    /// How many times each kind of initial sync is measured (the first is also reported alone,
    /// as the cold figure).
    pub samples: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rooms: 200,
            members: 50,
            events: 20,
            timeline_limit: 10,
            samples: 5,
        }
    }
}

/// The set-up of `initial-sync` (and `sliding-sync`): `members` users named with `tag`, all in
/// each of `rooms` public rooms, with `events` messages per room from the members in turn.
/// Returns the users (the first is the one measured) and the room IDs.
pub async fn rooms_with_history(
    ctx: &Ctx,
    tag: &str,
    rooms: usize,
    members: usize,
    events: usize,
) -> Result<(Vec<User>, Vec<String>)> {
    let users = register_users(ctx, tag, members).await?;
    let layout: Vec<Vec<usize>> = (0..rooms).map(|_| (0..members).collect()).collect();
    let room_ids = rooms_with_members(ctx, &users, &layout).await?;
    let (client, u, r, n_rooms) = (
        ctx.client.clone(),
        Arc::new(users.clone()),
        Arc::new(room_ids.clone()),
        rooms,
    );
    let sent = run_indexed(rooms * events, ctx.setup_concurrency, move |i| {
        let (client, u, r) = (client.clone(), u.clone(), r.clone());
        async move {
            client
                .send_text(
                    &u[(i / n_rooms) % members],
                    &r[i % n_rooms],
                    &format!("h{i}"),
                    &format!("history {i}"),
                )
                .await
        }
    })
    .await?;
    sent.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((users, room_ids))
}

/// Runs `initial-sync`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    if p.members == 0 || p.rooms == 0 || p.samples == 0 {
        return Err(BenchError::Invalid(
            "initial-sync needs rooms, members and samples > 0".into(),
        ));
    }
    let mut report = WorkloadReport::new("initial-sync");
    report.param("rooms", p.rooms);
    report.param("members", p.members);
    report.param("events", p.events);
    report.param("timeline_limit", p.timeline_limit);
    report.param("samples", p.samples);

    let (users, _) = rooms_with_history(ctx, "i", p.rooms, p.members, p.events).await?;
    let me = &users[0];
    let lazy = json!({ "room": { "state": { "lazy_load_members": true }, "timeline": { "limit": p.timeline_limit } } }).to_string();
    let full = json!({ "room": { "timeline": { "limit": p.timeline_limit } } }).to_string();
    for (name, filter) in [("lazy", lazy), ("full", full)] {
        let mut samples = Vec::with_capacity(p.samples);
        for _ in 0..p.samples {
            let t = Instant::now();
            match ctx.client.sync(me, None, 0, Some(&filter)).await {
                Ok(sync) => {
                    samples.push(ms_since(t));
                    let seen = joined_room_count(&sync);
                    if seen != p.rooms {
                        report.error(format!(
                            "{name} initial sync listed {seen} of {} rooms",
                            p.rooms
                        ));
                    }
                }
                Err(e) => report.error(e),
            }
        }
        if let Some(first) = samples.first() {
            report.metric(&format!("{name}_first"), "ms", *first, Better::Lower);
        }
        if let Some(s) = Summary::of(&samples) {
            report.metric(&format!("{name}_p50"), "ms", s.p50, Better::Lower);
        }
    }
    Ok(report)
}
