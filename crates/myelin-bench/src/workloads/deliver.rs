//! `deliver`: one member long-polls `/sync` while another sends, one message at a time; measures
//! the time from the start of the `PUT /send` to the event's arrival in the `/sync` response.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::{body_and_sender, next_batch, timeline_events, Client, User};
use crate::error::{BenchError, Result};
use crate::report::WorkloadReport;
use crate::setup::{register_users, rooms_with_members, Ctx};
use crate::stats::Summary;

/// The sizes of `deliver`.
#[derive(Debug, Clone)]
pub struct Params {
    pub samples: usize,
    /// How long to wait for one event to arrive before counting it lost.
    pub arrival_timeout_ms: u64,
    /// The pause between an arrival and the next send, so that the receiver's next long-poll
    /// is in place.
    pub gap_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            samples: 500,
            arrival_timeout_ms: 10_000,
            gap_ms: 5,
        }
    }
}

/// The body of the `i`-th probe message.
fn probe(i: usize) -> String {
    format!("deliver-{i}")
}

/// Long-polls forever (until aborted), reporting each probe from `sender` with its arrival time.
async fn receive(
    client: Client,
    user: User,
    sender: String,
    mut since: String,
    tx: mpsc::UnboundedSender<Result<(usize, Instant)>>,
) {
    loop {
        match client.sync(&user, Some(&since), 30_000, None).await {
            Ok(sync) => {
                let now = Instant::now();
                for (_, event) in timeline_events(&sync) {
                    if let Some((body, from)) = body_and_sender(event) {
                        if let (true, Some(i)) = (
                            from == sender,
                            body.strip_prefix("deliver-").and_then(|n| n.parse().ok()),
                        ) {
                            let _ = tx.send(Ok((i, now)));
                        }
                    }
                }
                match next_batch(&sync) {
                    Ok(next) => since = next,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            Err(e) => {
                if tx.send(Err(e)).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs `deliver`.
pub async fn run(ctx: &Ctx, p: &Params) -> Result<WorkloadReport> {
    let mut report = WorkloadReport::new("deliver");
    report.param("samples", p.samples);
    let users = register_users(ctx, "d", 2).await?;
    let rooms = rooms_with_members(ctx, &users, &[vec![0, 1]]).await?;
    let room = rooms
        .first()
        .ok_or_else(|| BenchError::Invalid("no room".into()))?
        .clone();
    let (sender, receiver) = (users[0].clone(), users[1].clone());
    let since = next_batch(&ctx.client.sync(&receiver, None, 0, None).await?)?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(receive(
        ctx.client.clone(),
        receiver,
        sender.user_id.clone(),
        since,
        tx,
    ));
    let mut latencies = Vec::with_capacity(p.samples);
    let wait = Duration::from_millis(p.arrival_timeout_ms);
    for i in 0..p.samples {
        tokio::time::sleep(Duration::from_millis(p.gap_ms)).await;
        let t0 = Instant::now();
        if let Err(e) = ctx
            .client
            .send_text(&sender, &room, &format!("d{i}"), &probe(i))
            .await
        {
            report.error(e);
            continue;
        }
        let deadline = t0 + wait;
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(Ok((j, at)))) if j == i => {
                    latencies.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => report.error(e),
                Ok(None) => {
                    report.error("the receiving /sync loop stopped");
                    break;
                }
                Err(_) => {
                    report.error(format!("message {i} did not arrive within {wait:?}"));
                    break;
                }
            }
        }
    }
    task.abort();
    report.latency("delivery", Summary::of(&latencies));
    Ok(report)
}
