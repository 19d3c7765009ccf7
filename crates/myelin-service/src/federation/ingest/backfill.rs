//! Backfilling (spec: Server-Server API, "Backfilling and retrieving missing events"): when a
//! local reader pages back (`/messages`, `dir=b`) past the oldest event we hold of a room joined
//! over federation, a server in the room is asked for the events before it (`/backfill`). What
//! comes back is checked like any received PDU (format, signatures, content hash, auth against
//! its own auth events), must be an ancestor of the events we asked from, and is stored before
//! our history at negative stream positions ([`myelin_storage::RoomStore::persist_backfilled`]):
//! backward pagination runs on into it, while `/sync`, which only reads forward from its token,
//! never sees it.
//!
//! Best effort and bounded: at most [`MAX_BACKFILL`] events per request, [`MAX_SERVERS`]
//! servers tried, [`MAX_AUTH_FETCHES`] auth chains fetched, [`BACKFILL_BUDGET`] of time; failures
//! are logged with the server's name and the reader gets what we have.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use myelin_core::{Pdu, StreamPos};
use myelin_federation::{path, Method};
use myelin_room::{check_received_auth, AuthVerdict, PduStateMap};
use myelin_storage::{
    BackfilledEvent, Direction, EventRecord, NewOutlier, OutlierStatus, SnapshotId,
};
use ruma::{events::StateEventType, OwnedEventId, OwnedServerName, RoomId, ServerName};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;

use crate::federation::MAX_BACKFILL;
use crate::{rooms::RoomState, Ingest, ServiceResult};

/// How many servers of the room are asked, one after the other, until one brings something.
const MAX_SERVERS: usize = 3;
/// How many of our oldest timeline events are looked at for the prev events we lack.
const EDGE_EVENTS: usize = 20;
/// The most event IDs sent as `v`.
const MAX_FROM: usize = 20;
/// The most `/event_auth` requests one backfill makes for events whose auth events we lack.
const MAX_AUTH_FETCHES: usize = 5;
/// The most events accepted from one `/event_auth` answer.
const MAX_AUTH_CHAIN: usize = 5_000;
/// How long a reader's `/messages` waits for a backfill before it gets what we have.
const BACKFILL_BUDGET: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
struct BackfillAnswer {
    #[serde(default)]
    pdus: Vec<Box<RawJsonValue>>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    #[serde(default)]
    auth_chain: Vec<Box<RawJsonValue>>,
}

impl Ingest {
    /// [`Ingest::backfill_room`] for a reader waiting on `/messages`: bounded in time and
    /// never an error, since the reader can always be given what we hold. Whether anything was
    /// stored.
    pub(crate) async fn backfill_for_reader(&self, room_id: &RoomId, limit: usize) -> bool {
        match tokio::time::timeout(BACKFILL_BUDGET, self.backfill_room(room_id, limit)).await {
            Ok(Ok(stored)) => stored > 0,
            Ok(Err(e)) => {
                tracing::warn!(%room_id, error = %e, "backfill failed");
                false
            }
            Err(_) => {
                tracing::info!(%room_id, "backfill took too long; serving what we have");
                false
            }
        }
    }

    /// Fetches up to `limit` (at most [`MAX_BACKFILL`]) events preceding the oldest history we
    /// hold of `room_id` from a server in the room and stores them before it. Returns how many
    /// were stored: 0 when our history is complete (it starts at the create event), no other
    /// server is in the room, or none answered with anything new.
    pub(crate) async fn backfill_room(
        &self,
        room_id: &RoomId,
        limit: usize,
    ) -> ServiceResult<usize> {
        if !self.ctx.federation.config.enabled {
            return Ok(0);
        }
        let limit = limit.clamp(1, MAX_BACKFILL);
        let edge = self
            .ctx
            .storage
            .room_events(
                room_id,
                StreamPos(i64::MIN),
                None,
                Direction::Forward,
                EDGE_EVENTS,
            )
            .await?;
        let Some(oldest) = edge.first() else {
            return Ok(0);
        };
        if oldest.pdu.kind.to_string() == "m.room.create" {
            return Ok(0);
        }
        let from = self.backfill_starts(&edge).await?;
        if from.is_empty() {
            return Ok(0);
        }
        let state = self.rooms.room_state(room_id).await?;
        // Backfilled events come without their state, and working it out would mean resolving
        // state over a DAG we hold only part of. The state after our oldest event stands in for
        // it: an approximation, right about the room as of that event but blind to state changes
        // within the backfilled history. It is what `/context`, `/sync` and servers asking for
        // the state at those events get, and the state before a late event built on one of them.
        let snapshot = oldest.state_snapshot;
        for server in self.backfill_servers(&state).iter().take(MAX_SERVERS) {
            match self
                .backfill_from_server(server, &state, &from, limit, snapshot)
                .await
            {
                Ok(0) => tracing::info!(%room_id, %server, "backfill brought nothing new"),
                Ok(stored) => {
                    tracing::debug!(%room_id, %server, stored, "backfilled");
                    return Ok(stored);
                }
                Err(e) => tracing::info!(%room_id, %server, error = %e, "backfill failed"),
            }
        }
        Ok(0)
    }

    /// The `v` of a backfill request: the prev events of our oldest timeline events that are
    /// not in the timeline. One we hold as rejected or soft-failed will never be shown, so its
    /// own prev events are asked for instead (one step), or the history would end there.
    async fn backfill_starts(&self, edge: &[EventRecord]) -> ServiceResult<Vec<OwnedEventId>> {
        let prevs: Vec<OwnedEventId> = edge
            .iter()
            .flat_map(|r| r.pdu.prev_events.iter().cloned())
            .collect();
        let (mut starts, refused) = self.not_in_timeline(prevs).await?;
        if !refused.is_empty() {
            let behind: Vec<OwnedEventId> = refused
                .iter()
                .flat_map(|r| r.pdu.prev_events.iter().cloned())
                .collect();
            starts.extend(self.not_in_timeline(behind).await?.0);
        }
        let mut seen = HashSet::new();
        starts.retain(|id| seen.insert(id.clone()));
        starts.truncate(MAX_FROM);
        Ok(starts)
    }

    /// Splits `ids` into those that may still go into the timeline (unknown, or plain
    /// outliers), in order and without repeats, and the records of those refused before
    /// (rejected or soft-failed). Events in the timeline are in neither.
    async fn not_in_timeline(
        &self,
        mut ids: Vec<OwnedEventId>,
    ) -> ServiceResult<(Vec<OwnedEventId>, Vec<EventRecord>)> {
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        let known: HashMap<OwnedEventId, EventRecord> = self
            .ctx
            .storage
            .get_events(&ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), r))
            .collect();
        let mut open = Vec::new();
        let mut refused = Vec::new();
        for id in ids {
            match known.get(&id).map(|r| r.outlier) {
                None | Some(Some(OutlierStatus::Outlier)) => open.push(id),
                Some(None) => {}
                Some(Some(_)) => refused.extend(known.get(&id).cloned()),
            }
        }
        Ok((open, refused))
    }

    /// The servers to ask: those with joined members other than us, the room ID's server
    /// first (it created the room, so it likely holds all of it), then the most members first.
    fn backfill_servers(&self, state: &RoomState) -> Vec<OwnedServerName> {
        let mut counts: HashMap<OwnedServerName, usize> = HashMap::new();
        for user in state.joined_members() {
            let server = user.server_name();
            if server != self.ctx.server_name() && !self.ctx.is_blocked_server(server.as_str()) {
                *counts.entry(server.to_owned()).or_default() += 1;
            }
        }
        let creator = state.room_id.server_name();
        let mut servers: Vec<(OwnedServerName, usize)> = counts.into_iter().collect();
        servers.sort_by(|(a, n), (b, m)| {
            (Some(&**b) == creator)
                .cmp(&(Some(&**a) == creator))
                .then(m.cmp(n))
                .then_with(|| a.cmp(b))
        });
        servers.into_iter().map(|(server, _)| server).collect()
    }

    /// One `/backfill` request to `server` and the storing of what passes the checks; how many
    /// events were stored.
    async fn backfill_from_server(
        &self,
        server: &ServerName,
        state: &RoomState,
        from: &[OwnedEventId],
        limit: usize,
        snapshot: SnapshotId,
    ) -> ServiceResult<usize> {
        let room_id = &state.room_id;
        let path = path::backfill(room_id, from.iter().map(|id| &**id), limit);
        let answer: BackfillAnswer = self
            .ctx
            .federation_call(Method::GET, server, &path, None)
            .await?;

        let mut received: HashMap<OwnedEventId, Pdu> = HashMap::new();
        for raw in answer.pdus.iter().take(limit) {
            match self.ctx.verify_remote_pdu(raw, room_id, &state.rules).await {
                Ok(checked) => {
                    received.insert(checked.pdu.event_id.clone(), checked.pdu);
                }
                Err(e) => tracing::info!(%room_id, %server, error = %e, "backfilled event refused"),
            }
        }
        let mut received = ancestors_of(from, received);
        // In the timeline already, or refused before: never (again) into the timeline.
        let ids: Vec<OwnedEventId> = received.keys().cloned().collect();
        for record in self.ctx.storage.get_events(&ids).await? {
            if record.outlier != Some(OutlierStatus::Outlier) {
                received.remove(&record.pdu.event_id);
            }
        }
        if received.is_empty() {
            return Ok(0);
        }

        self.fetch_backfill_auth(server, state, &received).await?;
        let (accepted, rejected) = self.check_backfilled(state, server, received).await?;
        if !rejected.is_empty() {
            // Kept so that the walk back does not ask for them again (see `backfill_starts`).
            self.ctx
                .storage
                .persist_with_outliers(rejected, Vec::new())
                .await?;
        }
        let stored = accepted.len();
        if stored > 0 {
            // Newest first: each takes the next position down, so the oldest sorts first.
            let events = accepted
                .into_iter()
                .rev()
                .map(|pdu| BackfilledEvent {
                    pdu,
                    state_snapshot: snapshot,
                })
                .collect();
            self.ctx.storage.persist_backfilled(events).await?;
        }
        Ok(stored)
    }

    /// Fetches (`/event_auth`) and stores the auth chains of received events whose auth events
    /// we lack, for a few of them, oldest first (their chains likely cover the newer ones').
    /// Events still lacking auth events are rejected by [`Ingest::check_backfilled`].
    async fn fetch_backfill_auth(
        &self,
        server: &ServerName,
        state: &RoomState,
        received: &HashMap<OwnedEventId, Pdu>,
    ) -> ServiceResult<()> {
        let mut wanted: Vec<OwnedEventId> = received
            .values()
            .flat_map(|p| p.auth_events.iter())
            .filter(|id| !received.contains_key(*id))
            .cloned()
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut known = self.stored_ids(&wanted).await?;
        let mut order: Vec<&Pdu> = received.values().collect();
        order.sort_by(|a, b| dag_order(a, b));
        let mut fetches = 0;
        for pdu in order {
            let lacking = pdu
                .auth_events
                .iter()
                .any(|id| !received.contains_key(id) && !known.contains(id));
            if !lacking {
                continue;
            }
            if fetches == MAX_AUTH_FETCHES {
                break;
            }
            fetches += 1;
            let path = path::event_auth(&state.room_id, &pdu.event_id);
            let answer: AuthAnswer = match self
                .ctx
                .federation_call(Method::GET, server, &path, None)
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(room_id = %state.room_id, %server, event_id = %pdu.event_id, error = %e, "event_auth for a backfilled event failed");
                    continue;
                }
            };
            if answer.auth_chain.len() > MAX_AUTH_CHAIN {
                tracing::info!(room_id = %state.room_id, %server, event_id = %pdu.event_id, "auth chain too long; not used");
                continue;
            }
            self.store_remote_events(&state.room_id, &state.rules, &[], &answer.auth_chain)
                .await?;
            known = self.stored_ids(&wanted).await?;
        }
        Ok(())
    }

    /// The IDs among `ids` of events we hold (in the timeline or not).
    async fn stored_ids(&self, ids: &[OwnedEventId]) -> ServiceResult<HashSet<OwnedEventId>> {
        Ok(self
            .ctx
            .storage
            .get_events(ids)
            .await?
            .into_iter()
            .map(|r| r.pdu.event_id)
            .collect())
    }

    /// Auth of each received event against its own auth events (stored, or earlier in the
    /// batch), oldest first. Returns the accepted events oldest first, and the rejected ones as
    /// outliers. A rejected event makes every event it authorises rejected too.
    async fn check_backfilled(
        &self,
        state: &RoomState,
        server: &ServerName,
        received: HashMap<OwnedEventId, Pdu>,
    ) -> ServiceResult<(Vec<Pdu>, Vec<NewOutlier>)> {
        let mut order: Vec<Pdu> = received.into_values().collect();
        order.sort_by(dag_order);
        let batch: HashSet<&OwnedEventId> = order.iter().map(|p| &p.event_id).collect();
        let mut outside: Vec<OwnedEventId> = order
            .iter()
            .flat_map(|p| p.auth_events.iter())
            .filter(|id| !batch.contains(id))
            .cloned()
            .collect();
        outside.sort();
        outside.dedup();
        // Stored events carry `rejected` as stored, so a rejected auth event rejects.
        let mut pool: HashMap<OwnedEventId, Arc<Pdu>> = self
            .ctx
            .storage
            .get_events(&outside)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), Arc::new(r.pdu)))
            .collect();
        // From room version 12 the create event is implied by the room ID, not listed.
        let create = state
            .get(&StateEventType::RoomCreate, "")
            .map(|e| e.pdu.clone());
        if let Some(create) = &create {
            pool.entry(create.event_id.clone())
                .or_insert_with(|| create.clone());
        }

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for mut pdu in order {
            let implied_create = create
                .as_ref()
                .map(|c| &c.event_id)
                .filter(|id| **id != pdu.event_id);
            let auth: HashMap<OwnedEventId, Arc<Pdu>> = pdu
                .auth_events
                .iter()
                .chain(implied_create)
                .filter_map(|id| Some((id.clone(), pool.get(id)?.clone())))
                .collect();
            let own: PduStateMap = auth
                .values()
                .filter_map(|e| {
                    let key = e.state_key.clone()?;
                    Some(((StateEventType::from(e.kind.to_string()), key), e.clone()))
                })
                .collect();
            match check_received_auth(&state.rules, &pdu, &auth, &own, &own) {
                AuthVerdict::Rejected(why) => {
                    tracing::info!(room_id = %state.room_id, %server, event_id = %pdu.event_id, reason = %why, "backfilled event rejected");
                    pdu.rejected = true;
                    pool.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
                    rejected.push(NewOutlier {
                        pdu,
                        status: OutlierStatus::Rejected,
                    });
                }
                // Checked against its own auth events only, so it cannot be soft-failed; it is
                // history, which the current state does not govern.
                AuthVerdict::Accepted | AuthVerdict::SoftFailed(_) => {
                    pool.insert(pdu.event_id.clone(), Arc::new(pdu.clone()));
                    accepted.push(pdu);
                }
            }
        }
        Ok((accepted, rejected))
    }
}

/// The received events that are `from` or reachable from them through `prev_events` within the
/// answer: `/backfill` must only return ancestors of what was asked for, so a server cannot
/// slip unrelated events into our history.
fn ancestors_of(
    from: &[OwnedEventId],
    mut received: HashMap<OwnedEventId, Pdu>,
) -> HashMap<OwnedEventId, Pdu> {
    let mut kept = HashMap::with_capacity(received.len());
    let mut stack: Vec<OwnedEventId> = from.to_vec();
    while let Some(id) = stack.pop() {
        if let Some(pdu) = received.remove(&id) {
            stack.extend(pdu.prev_events.iter().cloned());
            kept.insert(id, pdu);
        }
    }
    if !received.is_empty() {
        tracing::info!(
            dropped = received.len(),
            "backfill answer held events outside the history asked for"
        );
    }
    kept
}

/// DAG order for history: by depth, then older first, then by ID so the order is total.
fn dag_order(a: &Pdu, b: &Pdu) -> std::cmp::Ordering {
    (a.depth, a.origin_server_ts, &a.event_id).cmp(&(b.depth, b.origin_server_ts, &b.event_id))
}
