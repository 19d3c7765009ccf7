//! `initial-sync`: one user in many rooms with many members and some history; measures the
//! first `/sync` (no `since`) with a lazy-loading filter and with the full state.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::client::{joined_room_count, User};
use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, rooms_with_members, Ctx, PASSWORD};
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

/// The names of the figures of one kind of initial sync (`lazy` or `full`): the first request
/// (cold), the median of the same request repeated on the same device (a server may answer it
/// from a response cache: Synapse keeps identical `/sync` answers for two minutes), and the
/// median of the request on a new login each time (warm caches, nothing to replay).
pub fn metric_names(kind: &str) -> [String; 3] {
    [
        format!("{kind}_first"),
        format!("{kind}_warm_repeat_p50"),
        format!("{kind}_warm_new_device_p50"),
    ]
}

/// The device ID of the `i`-th new-device sample of `kind` in this run: distinct for every
/// sample and kind, so that each login makes a new device with a new access token.
pub fn warm_device_id(prefix: &str, kind: &str, i: usize) -> String {
    format!("{}_{}_WARM_{i}", prefix.to_uppercase(), kind.to_uppercase())
}

/// The access tokens the new-device samples used, so that a login answering with a token seen
/// before (a replayable request) is reported rather than measured silently.
#[derive(Debug, Default)]
pub struct SeenTokens(std::collections::HashSet<String>);

impl SeenTokens {
    /// Records `token`; false when it was seen before.
    pub fn fresh(&mut self, token: &str) -> bool {
        self.0.insert(token.to_owned())
    }
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
    let mut tokens = SeenTokens::default();
    tokens.fresh(&me.token);
    for (kind, filter) in [("lazy", lazy), ("full", full)] {
        let [first_name, repeat_name, new_name] = metric_names(kind);
        let mut repeat = Vec::with_capacity(p.samples);
        for _ in 0..p.samples {
            if let Some(ms) = timed_sync(ctx, me, &filter, kind, p.rooms, &mut report).await {
                repeat.push(ms);
            }
        }
        if let Some(first) = repeat.first() {
            report.metric(&first_name, "ms", *first, Better::Lower);
        }
        if let Some(s) = Summary::of(&repeat) {
            report.metric(&repeat_name, "ms", s.p50, Better::Lower);
        }
        let mut fresh = Vec::with_capacity(p.samples);
        for i in 0..p.samples {
            let device = warm_device_id(&ctx.prefix, kind, i);
            let user = match ctx.client.login(&me.user_id, PASSWORD, &device).await {
                Ok(user) => user,
                Err(e) => {
                    report.error(e);
                    continue;
                }
            };
            if !tokens.fresh(&user.token) {
                report.error(format!("login on {device} returned a token used before"));
                continue;
            }
            if let Some(ms) = timed_sync(ctx, &user, &filter, kind, p.rooms, &mut report).await {
                fresh.push(ms);
            }
        }
        if let Some(s) = Summary::of(&fresh) {
            report.metric(&new_name, "ms", s.p50, Better::Lower);
        }
    }
    Ok(report)
}

/// One initial sync of `user` with `filter`: its time in milliseconds, or `None` (with the error
/// reported) when it failed. A response listing fewer than `rooms` rooms is reported too.
async fn timed_sync(
    ctx: &Ctx,
    user: &User,
    filter: &str,
    kind: &str,
    rooms: usize,
    report: &mut WorkloadReport,
) -> Option<f64> {
    let t = Instant::now();
    match ctx.client.sync(user, None, 0, Some(filter)).await {
        Ok(sync) => {
            let ms = ms_since(t);
            let seen = joined_room_count(&sync);
            if seen != rooms {
                report.error(format!(
                    "{kind} initial sync listed {seen} of {rooms} rooms"
                ));
            }
            Some(ms)
        }
        Err(e) => {
            report.error(e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_named_apart() {
        let lazy = metric_names("lazy");
        assert_eq!(
            lazy,
            [
                "lazy_first".to_owned(),
                "lazy_warm_repeat_p50".to_owned(),
                "lazy_warm_new_device_p50".to_owned()
            ]
        );
        let full = metric_names("full");
        assert!(lazy.iter().all(|n| !full.contains(n)));
    }

    #[test]
    fn every_new_device_sample_has_its_own_device() {
        let mut ids = std::collections::HashSet::new();
        for kind in ["lazy", "full"] {
            for i in 0..50 {
                assert!(ids.insert(warm_device_id("b1x", kind, i)));
            }
        }
        assert_eq!(ids.len(), 100);
        // Another run (prefix) never reuses a device of an earlier one.
        assert_ne!(
            warm_device_id("b1x", "lazy", 0),
            warm_device_id("b1y", "lazy", 0)
        );
    }

    #[test]
    fn a_repeated_token_is_caught() {
        let mut seen = SeenTokens::default();
        assert!(seen.fresh("t1"));
        assert!(seen.fresh("t2"));
        assert!(!seen.fresh("t1"));
    }
}
