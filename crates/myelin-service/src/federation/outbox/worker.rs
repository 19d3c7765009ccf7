//! The federation sender: one worker per destination drains that destination's durable outbox
//! (rows written in the same transaction as the event) in transactions of at most 50 PDUs and
//! 100 EDUs, with exponential backoff on failure. A destination that comes back (it contacts
//! us) is retried at once; one gone for longer than `give_up_after_ms` has its queue dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use myelin_federation::Method;
use myelin_storage::{OutboxContent, OutboxEntry};
use ruma::{OwnedEventId, OwnedServerName, ServerName};
use serde_json::{json, value::RawValue as RawJsonValue};
use tokio::sync::Notify;

use crate::{Outbox, ServiceResult};

/// PDUs per outgoing transaction (the spec's limit).
pub const MAX_PDUS_PER_TXN: usize = 50;
/// EDUs per outgoing transaction (the spec's limit).
pub const MAX_EDUS_PER_TXN: usize = 100;
/// How long a worker with an empty queue waits for new rows before it ends (the next row
/// starts a new one), so that idle destinations cost no task.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// A transaction built from outbox rows that the destination has not accepted yet. A retry sends
/// it again as it is, under the same txnId, so that a destination that did process it (and only
/// our side saw the failure) recognises the retry and answers it without processing it twice;
/// rows queued meanwhile wait for the next transaction. Kept in the worker's memory: after a
/// restart the rows go out again under a new txnId.
struct PendingTxn {
    txn_id: String,
    body: serde_json::Value,
    row_ids: Vec<i64>,
}

#[derive(Default)]
pub(super) struct Worker {
    pub(super) wake: Notify,
    /// Set by an incoming request from the destination: skip the current backoff.
    pub(super) back_online: Notify,
}

impl Outbox {
    pub(super) fn worker(
        &self,
        workers: &mut HashMap<OwnedServerName, Arc<Worker>>,
        destination: &ServerName,
    ) -> Arc<Worker> {
        if let Some(worker) = workers.get(destination) {
            return worker.clone();
        }
        let worker = Arc::new(Worker::default());
        workers.insert(destination.to_owned(), worker.clone());
        self.ctx.workers.spawn(run_worker(
            self.this.clone(),
            destination.to_owned(),
            worker.clone(),
        ));
        worker
    }

    /// Ends an idle worker unless it was woken meanwhile; `true` when it should stop.
    fn retire_if_idle(&self, destination: &ServerName, worker: &Arc<Worker>) -> bool {
        use futures_util::FutureExt as _;
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        // A wake-up stored since the queue was last found empty means new rows.
        if worker.wake.notified().now_or_never().is_some() {
            return false;
        }
        if workers
            .get(destination)
            .is_some_and(|w| Arc::ptr_eq(w, worker))
        {
            workers.remove(destination);
        }
        true
    }

    /// Sends the pending transaction, or one of newly queued rows; `Ok(false)` when there is
    /// nothing to send. The transaction stays pending until the destination accepts it.
    async fn send_one_transaction(
        &self,
        destination: &ServerName,
        pending: &mut Option<PendingTxn>,
    ) -> ServiceResult<bool> {
        if pending.is_none() {
            *pending = self.next_transaction(destination).await?;
        }
        let Some(txn) = pending.as_ref() else {
            return Ok(false);
        };
        let path = myelin_federation::path::send_transaction(&txn.txn_id);
        let answer = self
            .ctx
            .federation_request(Method::PUT, destination, &path, Some(txn.body.clone()))
            .await?;
        if let Some(ruma::CanonicalJsonValue::Object(results)) = answer.get("pdus") {
            for (event_id, result) in results {
                if let ruma::CanonicalJsonValue::Object(r) = result {
                    if let Some(error) = r.get("error") {
                        tracing::info!(%destination, %event_id, ?error, "destination refused a PDU");
                    }
                }
            }
        }
        self.ctx
            .storage
            .outbox_remove(destination, &txn.row_ids)
            .await?;
        *pending = None;
        Ok(true)
    }

    /// A new transaction of the destination's oldest queued rows, under a new txnId; `None` when
    /// its queue is empty.
    async fn next_transaction(
        &self,
        destination: &ServerName,
    ) -> ServiceResult<Option<PendingTxn>> {
        let rows = self
            .ctx
            .storage
            .outbox_peek(destination, MAX_PDUS_PER_TXN, MAX_EDUS_PER_TXN)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (pdus, edus) = self.transaction_body(&rows).await?;
        // Unique per origin across restarts: the time and the first row's ID.
        let txn_id = format!("{}-{}", self.ctx.now_ms(), first.id);
        let body = json!({
            "origin": self.ctx.server_name(),
            "origin_server_ts": self.ctx.now_ms(),
            "pdus": pdus,
            "edus": edus,
        });
        Ok(Some(PendingTxn {
            txn_id,
            body,
            row_ids: rows.iter().map(|r| r.id).collect(),
        }))
    }

    /// The PDUs (as stored) and EDUs of a batch of outbox rows, in order.
    async fn transaction_body(
        &self,
        rows: &[OutboxEntry],
    ) -> ServiceResult<(Vec<Box<RawJsonValue>>, Vec<Box<RawJsonValue>>)> {
        let ids: Vec<OwnedEventId> = rows
            .iter()
            .filter_map(|r| match &r.content {
                OutboxContent::Pdu(id) => Some(id.clone()),
                OutboxContent::Edu(_) => None,
            })
            .collect();
        let mut events: HashMap<OwnedEventId, Box<RawJsonValue>> = self
            .ctx
            .storage
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), r.pdu.json))
            .collect();
        let mut pdus = Vec::with_capacity(ids.len());
        let mut edus = Vec::new();
        for row in rows {
            match &row.content {
                OutboxContent::Pdu(id) => {
                    if let Some(json) = events.remove(id) {
                        pdus.push(json);
                    }
                }
                OutboxContent::Edu(text) => match RawJsonValue::from_string(text.clone()) {
                    Ok(edu) => edus.push(edu),
                    Err(e) => tracing::warn!(error = %e, "dropping an unreadable queued EDU"),
                },
            }
        }
        Ok((pdus, edus))
    }

    /// Drops the queue of a destination that has failed for too long.
    async fn give_up_on(&self, destination: &ServerName) {
        match self.ctx.storage.outbox_drop(destination).await {
            Ok(n) => {
                tracing::warn!(%destination, dropped = n, "destination unreachable for too long; its queue was dropped")
            }
            Err(e) => {
                tracing::error!(%destination, error = %e, "cannot drop a destination's queue")
            }
        }
    }
}

/// One destination's loop: drain, back off on failure, sleep when idle; ends with the server.
async fn run_worker(outbox: Weak<Outbox>, destination: OwnedServerName, worker: Arc<Worker>) {
    let mut failures: u32 = 0;
    let mut failing_since: Option<u64> = None;
    let mut pending: Option<PendingTxn> = None;
    loop {
        let outcome = {
            let Some(s) = outbox.upgrade() else { return };
            let outcome = s.send_one_transaction(&destination, &mut pending).await;
            if let Err(e) = &outcome {
                let now = s.ctx.now_ms();
                let since = *failing_since.get_or_insert(now);
                tracing::info!(%destination, failures, error = %e, "federation transaction failed");
                if now.saturating_sub(since) > s.ctx.federation.config.give_up_after_ms {
                    s.give_up_on(&destination).await;
                    pending = None;
                    failing_since = None;
                    failures = 0;
                }
            }
            let config = &s.ctx.federation.config;
            outcome.map_err(|_| {
                let shift = failures.min(20);
                config
                    .retry_min_ms
                    .saturating_mul(1u64 << shift)
                    .min(config.retry_max_ms)
            })
        };
        match outcome {
            Ok(true) => {
                failures = 0;
                failing_since = None;
            }
            Ok(false) => {
                failures = 0;
                failing_since = None;
                let idle = tokio::select! {
                    _ = worker.wake.notified() => false,
                    _ = tokio::time::sleep(IDLE_CHECK) => true,
                };
                if idle {
                    let Some(s) = outbox.upgrade() else { return };
                    if s.retire_if_idle(&destination, &worker) {
                        return;
                    }
                }
            }
            Err(delay_ms) => {
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = worker.back_online.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
                }
            }
        }
    }
}
