//! The federation sender: one worker per destination drains that destination's durable outbox
//! (rows written in the same transaction as the event) in transactions of at most 50 PDUs and
//! 100 EDUs, with exponential backoff on failure. A destination that comes back (it contacts
//! us) is retried at once; one gone for longer than `give_up_after_ms` has its queue dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use myelin_federation::Method;
use myelin_storage::{OutboxContent, OutboxEntry};
use ruma::{OwnedEventId, OwnedServerName, ServerName};
use serde_json::{json, value::RawValue as RawJsonValue};
use tokio::sync::Notify;

use crate::{rooms::RoomState, ServiceResult, Services};

/// PDUs per outgoing transaction (the spec's limit).
pub const MAX_PDUS_PER_TXN: usize = 50;
/// EDUs per outgoing transaction (the spec's limit).
pub const MAX_EDUS_PER_TXN: usize = 100;
/// How long a worker with an empty queue waits for new rows before it ends (the next row
/// starts a new one), so that idle destinations cost no task.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The per-destination workers, started on first use and ended once idle.
pub(crate) struct Senders {
    workers: Mutex<HashMap<String, Arc<Worker>>>,
    /// Workers hold a weak reference to the server so that they stop with it.
    services: Weak<Services>,
}

impl Senders {
    pub(crate) fn new(services: Weak<Services>) -> Senders {
        Senders {
            workers: Mutex::new(HashMap::new()),
            services,
        }
    }
}

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
struct Worker {
    wake: Notify,
    /// Set by an incoming request from the destination: skip the current backoff.
    back_online: Notify,
}

impl Services {
    /// Starts sending: wakes a worker for every destination with queued rows (events queued
    /// before a restart are sent now).
    pub async fn start_federation_sender(&self) -> ServiceResult<()> {
        let pending = self.storage.outbox_destinations().await?;
        self.wake_senders(&pending);
        Ok(())
    }

    /// The remote servers a new event of the room goes to: those with joined members, and the
    /// server of a member event's target (a kicked or banned user's server hears of it).
    pub(crate) fn destinations_of(&self, state: &RoomState, pdu: &myelin_core::Pdu) -> Vec<String> {
        if !self.federation.config.enabled {
            return Vec::new();
        }
        let mut servers = self.other_servers_in(state);
        if pdu.kind.to_string() == "m.room.member" {
            if let Some(target) = pdu
                .state_key
                .as_deref()
                .and_then(|k| <&ruma::UserId>::try_from(k).ok())
                .map(|u| u.server_name())
                .filter(|s| *s != self.server_name() && !self.is_blocked_server(s.as_str()))
            {
                servers.insert(target.to_owned());
            }
        }
        servers.into_iter().map(|s| s.to_string()).collect()
    }

    /// The other servers with joined members in the room, blocked ones left out, in order.
    pub(crate) fn other_servers_in(
        &self,
        state: &RoomState,
    ) -> std::collections::BTreeSet<ruma::OwnedServerName> {
        let own = self.server_name();
        state
            .members_with(&["join"])
            .iter()
            .map(|u| u.server_name())
            .filter(|s| *s != own && !self.is_blocked_server(s.as_str()))
            .map(ToOwned::to_owned)
            .collect()
    }

    /// Whether the configuration refuses this server.
    pub fn is_blocked_server(&self, server: &str) -> bool {
        <&ServerName>::try_from(server).is_ok_and(|s| {
            myelin_federation::client::listed(&self.federation.config.blocked_servers, s)
        })
    }

    /// Wakes (starting if needed) the workers of `destinations`.
    pub(crate) fn wake_senders(&self, destinations: &[String]) {
        if destinations.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut workers = self
            .senders
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Woken under the lock, so that an idle worker deciding to end (under the same lock)
        // either sees this wake-up or is already gone and a new worker starts.
        for destination in destinations {
            self.worker(&mut workers, destination).wake.notify_one();
        }
    }

    /// A request from `origin` arrived: it is reachable, so stop waiting out its backoff.
    pub(crate) fn destination_back_online(&self, origin: &ServerName) {
        let workers = self
            .senders
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(worker) = workers.get(origin.as_str()) {
            worker.back_online.notify_one();
        }
    }

    fn worker(&self, workers: &mut HashMap<String, Arc<Worker>>, destination: &str) -> Arc<Worker> {
        if let Some(worker) = workers.get(destination) {
            return worker.clone();
        }
        let worker = Arc::new(Worker::default());
        workers.insert(destination.to_owned(), worker.clone());
        let Ok(server) = OwnedServerName::try_from(destination) else {
            return worker;
        };
        tokio::spawn(run_worker(
            self.senders.services.clone(),
            server,
            worker.clone(),
        ));
        worker
    }

    /// Ends an idle worker unless it was woken meanwhile; `true` when it should stop.
    fn retire_if_idle(&self, destination: &ServerName, worker: &Arc<Worker>) -> bool {
        use futures_util::FutureExt as _;
        let mut workers = self
            .senders
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A wake-up stored since the queue was last found empty means new rows.
        if worker.wake.notified().now_or_never().is_some() {
            return false;
        }
        if workers
            .get(destination.as_str())
            .is_some_and(|w| Arc::ptr_eq(w, worker))
        {
            workers.remove(destination.as_str());
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
        self.storage
            .outbox_remove(destination.as_str(), &txn.row_ids)
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
            .storage
            .outbox_peek(destination.as_str(), MAX_PDUS_PER_TXN, MAX_EDUS_PER_TXN)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (pdus, edus) = self.transaction_body(&rows).await?;
        // Unique per origin across restarts: the time and the first row's ID.
        let txn_id = format!("{}-{}", self.now_ms(), first.id);
        let body = json!({
            "origin": self.server_name(),
            "origin_server_ts": self.now_ms(),
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
        match self.storage.outbox_drop(destination.as_str()).await {
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
async fn run_worker(services: Weak<Services>, destination: OwnedServerName, worker: Arc<Worker>) {
    let mut failures: u32 = 0;
    let mut failing_since: Option<u64> = None;
    let mut pending: Option<PendingTxn> = None;
    loop {
        let outcome = {
            let Some(s) = services.upgrade() else { return };
            let outcome = s.send_one_transaction(&destination, &mut pending).await;
            if let Err(e) = &outcome {
                let now = s.now_ms();
                let since = *failing_since.get_or_insert(now);
                tracing::info!(%destination, failures, error = %e, "federation transaction failed");
                if now.saturating_sub(since) > s.federation.config.give_up_after_ms {
                    s.give_up_on(&destination).await;
                    pending = None;
                    failing_since = None;
                    failures = 0;
                }
            }
            let config = &s.federation.config;
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
                    let Some(s) = services.upgrade() else { return };
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
