//! One worker per application service with a URL: it turns the event stream after the
//! appservice's delivered position (plus what was buffered for it) into a transaction, stores it,
//! and sends it with `PUT /_matrix/app/v1/transactions/{txnId}` until accepted, under the same
//! txnId and body, backing off exponentially. Only then does the position move and the next
//! transaction get built, so order is kept. The worker sleeps on the notifier (woken by any
//! commit) and ends at shutdown or when its registration is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use myelin_core::StreamPos;
use myelin_storage::{Direction, EventRecord, PendingAppserviceTxn};
use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde_json::{json, Value};

use super::buffer::Buffered;
use super::registration::Appservice;
use super::Appservices;
use crate::{ServiceError, ServiceResult};

/// Most events in one transaction.
const MAX_EVENTS: usize = 100;
/// First retry delay; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Appservices {
    /// Starts a worker for every registered appservice with a URL that has none running.
    pub fn start_pushers(self: &Arc<Self>) {
        let mut running = self.pushers.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, handle| !handle.is_finished());
        for a in &self.ctx.appservices.all().list {
            if a.url.is_none() || running.contains_key(&a.id) {
                continue;
            }
            let this = self.clone();
            let id = a.id.clone();
            running.insert(
                a.id.clone(),
                self.ctx
                    .workers
                    .spawn(async move { this.push_loop(id).await }),
            );
        }
    }

    async fn push_loop(self: Arc<Self>, id: String) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Subscribed before reading, so a commit in between still wakes us.
            let mut waiter = self.ctx.notifier.subscribe_all();
            if waiter.is_closing() {
                return;
            }
            let Some(a) = self.ctx.appservices.by_id(&id).filter(|a| a.url.is_some()) else {
                return;
            };
            match self.push_step(&a).await {
                Ok(Step::Sent | Step::Queued) => backoff = FIRST_BACKOFF,
                Ok(Step::Idle) => waiter.changed().await,
                Err(e) => {
                    tracing::warn!(appservice = %id, error = %e, retry_in = ?backoff, "appservice transaction failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = async { loop { waiter.changed().await; if waiter.is_closing() { break; } } } => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One move: send the pending transaction, or build and store the next one, or find
    /// nothing to do.
    async fn push_step(&self, a: &Appservice) -> ServiceResult<Step> {
        let storage = &self.ctx.storage;
        let now = storage.current_stream_pos().await?;
        let state = storage.appservice_state(&a.id, now).await?;
        if let Some(pending) = state.pending {
            self.send_transaction(a, pending.txn_id, &pending.body)
                .await?;
            storage.appservice_txn_done(&a.id, pending.txn_id).await?;
            return Ok(Step::Sent);
        }
        let (events, reached) = self.events_for(a, state.delivered_pos, now).await?;
        let buffered = self.ctx.appservices.take_buffered(&a.id);
        if events.is_empty() && buffered.is_empty() {
            storage.appservice_skip_to(&a.id, reached).await?;
            return Ok(Step::Idle);
        }
        let body = self.transaction_body(a, events, buffered).await?;
        let txn = PendingAppserviceTxn {
            txn_id: state.next_txn_id,
            up_to: reached,
            body: body.to_string(),
        };
        storage.appservice_queue_txn(&a.id, txn).await?;
        Ok(Step::Queued)
    }

    /// `PUT {url}/_matrix/app/v1/transactions/{txnId}` with the `hs_token`.
    pub(crate) async fn send_transaction(
        &self,
        a: &Appservice,
        txn_id: u64,
        body: &str,
    ) -> ServiceResult<()> {
        let path = format!("_matrix/app/v1/transactions/{txn_id}");
        let response = self
            .request(a, reqwest::Method::PUT, &path, &[])
            .await?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| ServiceError::Remote(format!("appservice {}: {e}", a.id)))?;
        if !response.status().is_success() {
            return Err(ServiceError::Remote(format!(
                "appservice {} answered {} to transaction {txn_id}",
                a.id,
                response.status()
            )));
        }
        Ok(())
    }

    /// Events after `after` (up to `now`) the appservice is interested in, oldest first, and
    /// the position they reach (short of `now` when there were more than fit).
    pub(super) async fn events_for(
        &self,
        a: &Appservice,
        after: StreamPos,
        now: StreamPos,
    ) -> ServiceResult<(Vec<EventRecord>, StreamPos)> {
        if now <= after {
            return Ok((Vec::new(), after));
        }
        let storage = &self.ctx.storage;
        let mut cut = now;
        let mut records = Vec::new();
        for room in storage.rooms_with_events_between(after, now).await? {
            let events = storage
                .room_events(&room, after, Some(now), Direction::Forward, MAX_EVENTS)
                .await?;
            if events.len() == MAX_EVENTS {
                if let Some(last) = events.last() {
                    cut = cut.min(last.stream_pos);
                }
            }
            records.extend(events);
        }
        records.retain(|r| r.stream_pos <= cut && r.outlier.is_none() && !r.pdu.rejected);
        records.sort_by_key(|r| r.stream_pos);
        if records.len() > MAX_EVENTS {
            cut = records[MAX_EVENTS - 1].stream_pos;
            records.truncate(MAX_EVENTS);
        }
        let mut rooms: HashMap<OwnedRoomId, bool> = HashMap::new();
        let mut wanted = Vec::new();
        for record in records {
            if self.wants_event(a, &record, &mut rooms).await? {
                wanted.push(record);
            }
        }
        Ok((wanted, cut))
    }

    /// Whether the event matters to the appservice: its sender or state key is in the user
    /// namespace, or its room is (by ID, by alias, or by a member in the namespace).
    async fn wants_event(
        &self,
        a: &Appservice,
        record: &EventRecord,
        rooms: &mut HashMap<OwnedRoomId, bool>,
    ) -> ServiceResult<bool> {
        let pdu = &record.pdu;
        if a.is_user_in_namespace(&pdu.sender) {
            return Ok(true);
        }
        let key_is_ours = pdu
            .state_key
            .as_deref()
            .and_then(|k| <&ruma::UserId>::try_from(k).ok())
            .is_some_and(|u| a.is_user_in_namespace(u));
        if key_is_ours {
            return Ok(true);
        }
        if let Some(known) = rooms.get(&pdu.room_id) {
            return Ok(*known);
        }
        let wanted = self.wants_room(a, &pdu.room_id).await?;
        rooms.insert(pdu.room_id.clone(), wanted);
        Ok(wanted)
    }

    pub(crate) async fn wants_room(&self, a: &Appservice, room_id: &RoomId) -> ServiceResult<bool> {
        if a.is_room_in_namespace(room_id) {
            return Ok(true);
        }
        let state = self.rooms.room_state(room_id).await?;
        if state
            .joined_members()
            .iter()
            .any(|m| a.is_user_in_namespace(m))
        {
            return Ok(true);
        }
        let aliases = state
            .content(&ruma::events::StateEventType::RoomCanonicalAlias, "")
            .map(|c| canonical_aliases(&c))
            .unwrap_or_default();
        Ok(aliases
            .iter()
            .filter_map(|alias| <&ruma::RoomAliasId>::try_from(alias.as_str()).ok())
            .any(|alias| a.is_alias_in_namespace(alias)))
    }

    /// The transaction's JSON: events in the client format, ephemeral events and to-device
    /// messages (MSC2409) and the MSC3202 device fields when the appservice asked for them.
    pub(super) async fn transaction_body(
        &self,
        a: &Appservice,
        events: Vec<EventRecord>,
        buffered: Buffered,
    ) -> ServiceResult<Value> {
        let now = self.ctx.now_ms();
        let left = if a.msc3202 {
            self.users_gone_from(a, &events).await?
        } else {
            BTreeSet::new()
        };
        let events: Vec<Value> = events
            .iter()
            .map(|r| crate::format::client_event(r, None, now, None))
            .collect();
        let mut body = json!({ "events": events });
        if a.receive_ephemeral {
            body["ephemeral"] = json!(buffered.ephemeral);
            body["de.sorunome.msc2409.ephemeral"] = json!(buffered.ephemeral);
            body["de.sorunome.msc2409.to_device"] = json!(buffered.to_device);
            // MSC4203's name for it.
            body["to_device"] = json!(buffered.to_device);
        }
        if a.msc3202 {
            self.add_msc3202(&mut body, &buffered, left).await?;
        }
        Ok(body)
    }

    async fn add_msc3202(
        &self,
        body: &mut Value,
        buffered: &Buffered,
        left: BTreeSet<OwnedUserId>,
    ) -> ServiceResult<()> {
        let changed: Vec<&str> = buffered
            .device_changes
            .iter()
            .filter(|u| !left.contains(*u))
            .map(|u| u.as_str())
            .collect();
        body["org.matrix.msc3202.device_lists"] = json!({ "changed": changed, "left": left });
        let mut counts: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut fallbacks: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (user, device) in &buffered.key_changes {
            let storage = &self.ctx.storage;
            let mut count = storage.one_time_key_counts(user, device.as_str()).await?;
            count.entry("signed_curve25519".to_owned()).or_insert(0);
            let unused = storage
                .unused_fallback_key_types(user, device.as_str())
                .await?;
            counts
                .entry(user.to_string())
                .or_default()
                .insert(device.to_string(), json!(count));
            fallbacks
                .entry(user.to_string())
                .or_default()
                .insert(device.to_string(), json!(unused));
        }
        body["org.matrix.msc3202.device_one_time_keys_count"] = json!(counts);
        // The name mautrix and Synapse also use for it.
        body["org.matrix.msc3202.device_one_time_key_counts"] = json!(counts);
        body["org.matrix.msc3202.device_unused_fallback_key_types"] = json!(fallbacks);
        Ok(())
    }
}

impl Appservices {
    /// MSC3202 `device_lists.left`: users who, after the leaves and bans among `events`, share
    /// no room with any user of the appservice any more (its users stop tracking their devices).
    /// A leaving outsider is checked; so is every member of a room one of its users left.
    async fn users_gone_from(
        &self,
        a: &Appservice,
        events: &[EventRecord],
    ) -> ServiceResult<BTreeSet<OwnedUserId>> {
        let mut candidates = BTreeSet::new();
        for record in events {
            let pdu = &record.pdu;
            let leaving = pdu.kind == ruma::events::TimelineEventType::RoomMember
                && matches!(
                    pdu.content_value()["membership"].as_str(),
                    Some("leave" | "ban")
                );
            let Some(user) = pdu
                .state_key
                .as_deref()
                .filter(|_| leaving)
                .and_then(|k| OwnedUserId::try_from(k).ok())
            else {
                continue;
            };
            if a.is_user_in_namespace(&user) {
                let state = self.rooms.room_state(&pdu.room_id).await?;
                candidates.extend(state.joined_members());
            } else {
                candidates.insert(user);
            }
        }
        let mut gone = BTreeSet::new();
        for user in candidates {
            if a.is_user_in_namespace(&user) {
                continue;
            }
            let sharing = self.rooms.users_sharing_rooms(&user).await?;
            if !sharing.iter().any(|u| a.is_user_in_namespace(u)) {
                gone.insert(user);
            }
        }
        Ok(gone)
    }
}

/// The aliases an `m.room.canonical_alias` content names.
fn canonical_aliases(content: &Value) -> Vec<String> {
    let mut out: Vec<String> = content["alias"]
        .as_str()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(alt) = content["alt_aliases"].as_array() {
        out.extend(alt.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    out
}

enum Step {
    /// A pending transaction was accepted.
    Sent,
    /// A new transaction was stored.
    Queued,
    /// Nothing to send.
    Idle,
}
