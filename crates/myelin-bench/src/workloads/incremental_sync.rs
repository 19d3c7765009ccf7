//! `incremental-sync`: many users hold long-polling `/sync` requests while messages flow into
//! their rooms; measures, for every recipient of every message, the time from the start of its
//! `PUT /send` to its arrival in that recipient's `/sync`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{body_and_sender, next_batch, timeline_events, Client, User};
use crate::error::{BenchError, Result};
use crate::pool::run_indexed;
use crate::report::{Better, WorkloadReport};
use crate::setup::{register_users, rooms_with_members, Ctx};
use crate::stats::Summary;

/// The sizes of `incremental-sync`.
#[derive(Debug, Clone)]
pub struct Params {
    /// Users holding long-polls, spread evenly over the rooms.
    pub users: usize,
    pub rooms: usize,
    pub messages: usize,
    /// The pause between two sends.
    pub interval_ms: u64,
    /// How long to wait after the last send for the last arrivals.
    pub drain_timeout_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            users: 500,
            rooms: 50,
            messages: 200,
            interval_ms: 20,
            drain_timeout_ms: 30_000,
        }
    }
}

/// What the receivers share: the send time of every message and the collected latencies.
#[derive(Default)]
struct Board {
    sent: HashMap<usize, Instant>,
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// Mutex poisoning only follows a panic elsewhere; the data is still usable.
fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|e| e.into_inner())
}

async fn receive(client: Client, user: User, mut since: String, board: Arc<Mutex<Board>>) {
    loop {
        match client.sync(&user, Some(&since), 30_000, None).await {
            Ok(sync) => {
                let now = Instant::now();
                {
                    let mut b = lock(&board);
                    for (_, event) in timeline_events(&sync) {
                        let Some((body, from)) = body_and_sender(event) else {
                            continue;
                        };
                        if from == user.user_id {
                            continue;
                        }
                        if let Some(i) = body
                            .strip_prefix("inc-")
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            if let Some(t0) = b.sent.get(&i).copied() {
                                b.latencies
                                    .push(now.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                            }
                        }
                    }
                }
                match next_batch(&sync) {
                    Ok(next) => since = next,
                    Err(e) => {
                        lock(&board).errors.push(e.to_string());
                        return;
                    }
                }
            }
            Err(e) => {
                lock(&board).errors.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Runs `incremental-sync`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    if p.rooms == 0 || p.users < 2 * p.rooms {
        return Err(BenchError::Invalid(
            "incremental-sync needs at least 2 users per room".into(),
        ));
    }
    let per_room = p.users / p.rooms;
    let mut report = WorkloadReport::new("incremental-sync");
    report.param("users", per_room * p.rooms);
    report.param("rooms", p.rooms);
    report.param("messages", p.messages);
    report.param("interval_ms", p.interval_ms);

    let users = register_users(ctx, "n", per_room * p.rooms).await?;
    let layout: Vec<Vec<usize>> = (0..p.rooms)
        .map(|r| (r * per_room..(r + 1) * per_room).collect())
        .collect();
    let rooms = rooms_with_members(ctx, &users, &layout).await?;
    let (client, u) = (ctx.client.clone(), Arc::new(users.clone()));
    let tokens = run_indexed(users.len(), ctx.setup_concurrency, move |i| {
        let (client, u) = (client.clone(), u.clone());
        async move {
            next_batch(
                &client
                    .sync(&u[i], None, 0, Some(r#"{"room":{"timeline":{"limit":1}}}"#))
                    .await?,
            )
        }
    })
    .await?
    .into_iter()
    .collect::<Result<Vec<String>>>()?;

    let board = Arc::new(Mutex::new(Board::default()));
    let receivers: Vec<_> = users
        .iter()
        .zip(tokens)
        .map(|(user, since)| {
            tokio::spawn(receive(
                ctx.client.clone(),
                user.clone(),
                since,
                board.clone(),
            ))
        })
        .collect();
    // Let the long-polls reach the server before the first send.
    tokio::time::sleep(Duration::from_millis(500 + users.len() as u64)).await;

    let mut sent_ok = 0usize;
    for i in 0..p.messages {
        let r = i % p.rooms;
        let sender = &users[layout[r][(i / p.rooms) % per_room]];
        lock(&board).sent.insert(i, Instant::now());
        match ctx
            .client
            .send_text(sender, &rooms[r], &format!("n{i}"), &format!("inc-{i}"))
            .await
        {
            Ok(_) => sent_ok += 1,
            Err(e) => report.error(e),
        }
        tokio::time::sleep(Duration::from_millis(p.interval_ms)).await;
    }
    let expected = sent_ok * (per_room - 1);
    let deadline = Instant::now() + Duration::from_millis(p.drain_timeout_ms);
    while lock(&board).latencies.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in &receivers {
        r.abort();
    }
    let b = lock(&board);
    for e in &b.errors {
        report.error(e);
    }
    if b.latencies.len() < expected {
        report.error(format!(
            "{} of {expected} deliveries missing",
            expected - b.latencies.len()
        ));
    }
    report.metric(
        "deliveries",
        "count",
        b.latencies.len() as f64,
        Better::Higher,
    );
    report.latency("wakeup", Summary::of(&b.latencies));
    Ok(report)
}
