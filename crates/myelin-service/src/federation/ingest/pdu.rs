//! Remote PDUs into a room this server takes part in (spec: Server-Server API, "Checks performed
//! on receipt of a PDU"): format, signatures and hash; missing prev events fetched from the
//! origin (bounded); the state before the event resolved across its prev events (or asked of the
//! origin when the gap cannot be closed); auth against the event's auth events, the state before
//! it and the current state; then the event is stored in the timeline, soft-failed or rejected,
//! and the room's current state and forward extremities move on, all in one transaction.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::Pdu;
use myelin_federation::{path, Method};
use myelin_room::{check_received_auth, resolve_state, AuthVerdict, PduStateMap, Received};
use myelin_storage::{
    NewEvent, NewOutlier, NewState, OutlierStatus, RoomStore, StateKey, StateMap,
};
use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, CanonicalJsonObject, EventId,
    OwnedEventId, RoomId, ServerName,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue};

use crate::{
    rooms::{membership_change, LockedRoom, RoomState},
    Ingest, ServiceError, ServiceResult,
};

/// How many missing prev events one `/get_missing_events` call asks for.
const MISSING_EVENTS_LIMIT: u64 = 20;
/// The most events (state plus auth chain) accepted from one `/state` answer.
const MAX_REMOTE_STATE: usize = 20_000;

/// What became of one received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted,
    AlreadyKnown,
    SoftFailed(String),
    Rejected(String),
}

#[derive(Deserialize)]
struct EventsAnswer {
    #[serde(default)]
    events: Vec<Box<RawJsonValue>>,
}

#[derive(Deserialize)]
struct StateAnswer {
    #[serde(default)]
    pdus: Vec<Box<RawJsonValue>>,
    #[serde(default)]
    auth_chain: Vec<Box<RawJsonValue>>,
}

#[derive(Deserialize)]
struct AuthAnswer {
    #[serde(default)]
    auth_chain: Vec<Box<RawJsonValue>>,
}

impl Ingest {
    /// Receives one PDU (parsed, not yet verified) that `origin` sent in a transaction, for the
    /// room whose current state is `current`.
    pub async fn ingest_pdu(
        &self,
        origin: &ServerName,
        current: Arc<RoomState>,
        object: CanonicalJsonObject,
    ) -> ServiceResult<IngestOutcome> {
        let room_id = &current.room_id;
        let rules = current.rules.clone();
        let received = self.ctx.verify_parsed_pdu(object, room_id, &rules).await?;
        if self.in_timeline(&received.pdu.event_id).await? {
            return Ok(IngestOutcome::AlreadyKnown);
        }
        // Before anything is fetched for it.
        self.refuse_unknown_local_event(&received.pdu).await?;
        // Everything the event needs from the network is fetched before the room's write lock
        // is taken, so that local sends never queue behind a remote server, and only from an
        // origin that is in the room: anyone else gets no call back.
        let may_ask = current
            .joined_members()
            .iter()
            .any(|u| u.server_name() == origin);
        let missing = if may_ask {
            self.fetch_missing_prev_events(origin, &current, &received.pdu, &rules)
                .await
        } else {
            Vec::new()
        };
        let mut batch = Vec::with_capacity(missing.len() + 1);
        for event in missing.into_iter().chain([received]) {
            let prefetched = self
                .prefetch(origin, &event.pdu, &rules, may_ask, &batch)
                .await;
            batch.push((event, prefetched));
        }
        let room = self.rooms.lock(room_id).await;
        let mut outcome = Ok(IngestOutcome::AlreadyKnown);
        let last = batch.len() - 1;
        for (i, (event, prefetched)) in batch.into_iter().enumerate() {
            let id = event.pdu.event_id.clone();
            if i < last && self.in_timeline(&id).await.unwrap_or(false) {
                continue;
            }
            outcome = self
                .ingest_locked(origin, &room, event, &rules, false, prefetched)
                .await;
            if i < last {
                if let Err(e) = &outcome {
                    tracing::info!(%origin, event_id = %id, error = %e, "missing event not ingested");
                }
            }
        }
        outcome
    }

    /// What a received event needs from the network before it can be checked: its auth chain
    /// when some auth events are unknown, and the state before it when some prev events are
    /// neither in the timeline nor earlier in `batch`. Asked of `origin` only when `may_ask`;
    /// best effort (what stays missing makes the event fail its checks later).
    async fn prefetch(
        &self,
        origin: &ServerName,
        pdu: &Pdu,
        rules: &RoomVersionRules,
        may_ask: bool,
        batch: &[(Received, Option<StateMap>)],
    ) -> Option<StateMap> {
        if !may_ask {
            return None;
        }
        let auth_ids = auth_ids_with_create(rules, pdu);
        let known = self.known_events(&auth_ids).await.unwrap_or_default();
        if auth_ids.iter().any(|id| !known.contains_key(id)) {
            if let Err(e) = self.fetch_auth_chain(origin, pdu, rules).await {
                tracing::info!(%origin, event_id = %pdu.event_id, error = %e, "event_auth failed");
            }
        }
        let mut prevs_known = true;
        for prev in &pdu.prev_events {
            let in_batch = batch.iter().any(|(r, _)| &r.pdu.event_id == prev);
            if !in_batch && !self.in_timeline(prev).await.unwrap_or(false) {
                prevs_known = false;
            }
        }
        if prevs_known {
            return None;
        }
        match self.remote_state_before(origin, pdu, rules).await {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::info!(%origin, event_id = %pdu.event_id, error = %e, "remote state failed");
                None
            }
        }
    }

    /// Like [`Services::ingest_pdu`] for an event given to us as the resident server
    /// (`send_join`, `send_leave`): we also send it on to the other servers in the room.
    /// Returns the outcome and the event ID.
    pub(crate) async fn ingest_distributed(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        raw: &RawJsonValue,
    ) -> ServiceResult<(IngestOutcome, OwnedEventId)> {
        let info = RoomStore::room_info(self.ctx.storage.as_ref(), room_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("This server is not in {room_id}")))?;
        let rules = myelin_room::rules_for_received(&info.version)?;
        let received = self.ctx.verify_remote_pdu(raw, room_id, &rules).await?;
        let event_id = received.pdu.event_id.clone();
        if self.in_timeline(&event_id).await? {
            return Ok((IngestOutcome::AlreadyKnown, event_id));
        }
        let room = self.rooms.lock(room_id).await;
        // The event was built on our own template: nothing about it is fetched from its sender.
        let outcome = self
            .ingest_locked(origin, &room, received, &rules, true, None)
            .await?;
        Ok((outcome, event_id))
    }

    /// Refuses an event of one of our users that we do not have. Only we sign our users'
    /// events and we store each one as we make it (joins, knocks and leaves through other
    /// servers included), so such an event was never ours to accept: a membership another
    /// server got us to sign for some other purpose and now replays (a leave from a rejected
    /// invite, used to take our user out of a room), or one whose sending failed. Nothing is
    /// stored for it, so the real event, if it ever is ours, is not shadowed.
    async fn refuse_unknown_local_event(&self, pdu: &Pdu) -> ServiceResult<()> {
        // A membership of one of our users that they sent themselves has them as sender too;
        // a remote sender's kick, ban or invite of our user is the remote server's to make.
        if pdu.sender.server_name() != self.ctx.server_name() {
            return Ok(());
        }
        if self.ctx.storage.get_event(&pdu.event_id).await?.is_some() {
            return Ok(());
        }
        tracing::warn!(event_id = %pdu.event_id, sender = %pdu.sender, room_id = %pdu.room_id, "refused an event of one of our users that we never made");
        Err(ServiceError::Forbidden(format!(
            "{} is an event of {}, a user of this server, that this server did not make",
            pdu.event_id, pdu.sender
        )))
    }

    /// Whether the event is stored in the timeline (not as an outlier).
    pub(crate) async fn in_timeline(&self, event_id: &EventId) -> ServiceResult<bool> {
        Ok(self
            .ctx
            .storage
            .get_event(event_id)
            .await?
            .is_some_and(|r| r.outlier.is_none()))
    }

    /// Asks `origin` for the events between our forward extremities and `pdu`: those that pass
    /// the signature and hash checks and are new, oldest first. Best effort: what stays missing
    /// is bridged by asking for the state before the event instead.
    async fn fetch_missing_prev_events(
        &self,
        origin: &ServerName,
        state: &RoomState,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Vec<Received> {
        let mut missing = Vec::new();
        for prev in &pdu.prev_events {
            match self.in_timeline(prev).await {
                Ok(true) => {}
                _ => missing.push(prev.clone()),
            }
        }
        if missing.is_empty() {
            return Vec::new();
        }
        let path = path::get_missing_events(&pdu.room_id);
        let body = json!({
            "earliest_events": state.extremities,
            "latest_events": [pdu.event_id],
            "limit": MISSING_EVENTS_LIMIT,
            "min_depth": state.depth.saturating_sub(MISSING_EVENTS_LIMIT * 5),
        });
        let answer: EventsAnswer = match self
            .ctx
            .federation_call(Method::POST, origin, &path, Some(body))
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%origin, room_id = %pdu.room_id, error = %e, "get_missing_events failed");
                return Vec::new();
            }
        };
        let mut events = Vec::new();
        for raw in answer.events.iter().take(MISSING_EVENTS_LIMIT as usize) {
            match self.ctx.verify_remote_pdu(raw, &pdu.room_id, rules).await {
                Ok(received) if received.pdu.event_id != pdu.event_id => {
                    if !self
                        .in_timeline(&received.pdu.event_id)
                        .await
                        .unwrap_or(false)
                    {
                        events.push(received);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::info!(%origin, error = %e, "missing event refused"),
            }
        }
        events.sort_by_key(|r| r.pdu.depth);
        events.dedup_by(|a, b| a.pdu.event_id == b.pdu.event_id);
        events
    }

    /// Steps 4–6 and persistence, with the room's write lock held.
    /// Nothing here asks another server: `remote_state_before` is the state before the event as
    /// fetched beforehand, used when some of its prev events are not in the timeline.
    async fn ingest_locked(
        &self,
        origin: &ServerName,
        room: &LockedRoom,
        received: Received,
        rules: &RoomVersionRules,
        distribute: bool,
        remote_state_before: Option<StateMap>,
    ) -> ServiceResult<IngestOutcome> {
        self.refuse_unknown_local_event(&received.pdu).await?;
        let pdu = Arc::new(received.pdu);
        let room_id = pdu.room_id.clone();
        let current = self.rooms.current(room).await?;

        // The state before the event: from its prev events when we have them all, else as the
        // origin gave it (its answer was checked like any PDU and kept as outliers).
        let prevs = self.ctx.storage.get_events(&pdu.prev_events).await?;
        let prevs: Vec<_> = prevs.into_iter().filter(|r| r.outlier.is_none()).collect();
        let linear_base = match prevs.as_slice() {
            [prev] if pdu.prev_events.len() == 1 => Some(prev.state_snapshot),
            _ => None,
        };
        let state_before: StateMap = if prevs.len() == pdu.prev_events.len() {
            let mut sets = Vec::with_capacity(prevs.len());
            for prev in &prevs {
                sets.push(
                    self.ctx
                        .storage
                        .state_at_snapshot(prev.state_snapshot)
                        .await?,
                );
            }
            self.resolve_states(rules, sets, None).await?
        } else {
            remote_state_before.ok_or_else(|| {
                ServiceError::Forbidden(format!(
                    "the state before {} is unknown: its prev events are missing",
                    pdu.event_id
                ))
            })?
        };

        // Its auth events (fetched beforehand when unknown). One still missing leaves the event
        // undecided rather than rejected: it may come with a later attempt.
        let auth_ids = auth_ids_with_create(rules, &pdu);
        let auth_events = self.known_events(&auth_ids).await?;
        if let Some(missing) = auth_ids.iter().find(|id| !auth_events.contains_key(*id)) {
            return Err(ServiceError::Forbidden(format!(
                "auth event {missing} of {} is unknown",
                pdu.event_id
            )));
        }

        let before_pdus = self.state_pdus(&state_before).await?;
        let current_pdus: PduStateMap = current
            .entries()
            .filter_map(|e| {
                let key = e.pdu.state_key.clone()?;
                Some((
                    (StateEventType::from(e.pdu.kind.to_string()), key),
                    e.pdu.clone(),
                ))
            })
            .collect();
        let verdict = check_received_auth(rules, &pdu, &auth_events, &before_pdus, &current_pdus);
        let status = match &verdict {
            AuthVerdict::Accepted => None,
            AuthVerdict::Rejected(why) => Some((OutlierStatus::Rejected, why.clone())),
            AuthVerdict::SoftFailed(why) => Some((OutlierStatus::SoftFailed, why.clone())),
        };
        if let Some((status, why)) = status {
            tracing::info!(%origin, event_id = %pdu.event_id, status = status.as_str(), reason = %why, "received PDU not applied");
            let mut stored = (*pdu).clone();
            stored.rejected = status == OutlierStatus::Rejected;
            self.ctx
                .storage
                .persist_with_outliers(
                    vec![NewOutlier {
                        pdu: stored,
                        status,
                    }],
                    Vec::new(),
                )
                .await?;
            return Ok(match status {
                OutlierStatus::Rejected => IngestOutcome::Rejected(why),
                _ => IngestOutcome::SoftFailed(why),
            });
        }

        // Accepted: the state after it, the room's new current state and extremities.
        let mut state_after = state_before.clone();
        let own_change: Option<(StateKey, OwnedEventId)> = pdu
            .state_key
            .clone()
            .map(|k| ((pdu.kind.to_string(), k), pdu.event_id.clone()));
        if let Some((key, id)) = &own_change {
            state_after.insert(key.clone(), id.clone());
        }
        let covers_tips = current
            .extremities
            .iter()
            .all(|tip| pdu.prev_events.contains(tip));
        let resolved_current_state = if covers_tips {
            None
        } else {
            let current_ids: StateMap = current
                .entries()
                .filter_map(|e| {
                    Some((
                        (e.pdu.kind.to_string(), e.pdu.state_key.clone()?),
                        e.pdu.event_id.clone(),
                    ))
                })
                .collect();
            Some(
                // The state after the event names the event itself, not stored yet: resolution
                // must see it, or it would drop it from the conflicted set (a leave sent on a
                // fork would lose to the join it replaces).
                self.resolve_states(rules, vec![current_ids, state_after.clone()], Some(&pdu))
                    .await?,
            )
        };
        let mut extremities: Vec<OwnedEventId> = current
            .extremities
            .iter()
            .filter(|tip| !pdu.prev_events.contains(tip))
            .cloned()
            .collect();
        extremities.push(pdu.event_id.clone());
        let new_state = match (linear_base, &own_change) {
            (Some(base), None) => NewState::Same(base),
            (Some(base), Some(change)) => NewState::Changed {
                base: Some(base),
                changes: vec![change.clone()],
            },
            (None, _) => NewState::Changed {
                base: None,
                changes: state_after.clone().into_iter().collect(),
            },
        };
        let simple = resolved_current_state.is_none()
            && linear_base.is_some()
            && current.extremities == pdu.prev_events
            && state_before_matches(&current, &state_before);
        let event = NewEvent {
            pdu: (*pdu).clone(),
            room: None,
            state: new_state,
            updates_current_state: true,
            membership: membership_change(&pdu),
            txn: None,
            redaction: self.remote_redaction(&current, &pdu).await?,
            forward_extremities: extremities,
            resolved_current_state,
            destinations: if distribute {
                let mut servers = self.outbox.destinations_of(&current, &pdu);
                servers.retain(|s| s != origin);
                servers
            } else {
                Vec::new()
            },
        };
        let destinations = event.destinations.clone();
        let redaction = event.redaction.clone();
        let persisted = self.ctx.storage.persist_event(event).await?;
        self.outbox.wake_senders(&destinations);
        let new_state = if simple {
            let mut next = (*current).clone().with_event(
                pdu.clone(),
                persisted.stream_pos,
                persisted.state_snapshot,
            );
            // Storage now holds the redacted form of the target; so must current state.
            if let Some((target, redacted)) = redaction {
                next = next.with_redacted(&target, redacted);
            }
            Arc::new(next)
        } else {
            Arc::new(RoomState::load(self.ctx.storage.as_ref(), &room_id).await?)
        };
        self.rooms
            .publish(room, new_state, &[(pdu, persisted.stream_pos)]);
        Ok(IngestOutcome::Accepted)
    }

    /// The redacted JSON of the event a received redaction targets, when the redaction may
    /// apply: the redacter's server is the target sender's, or the redacter has the power to
    /// redact others (the auth rules checked the rest).
    async fn remote_redaction(
        &self,
        current: &RoomState,
        pdu: &Pdu,
    ) -> ServiceResult<Option<(OwnedEventId, Box<RawJsonValue>)>> {
        let Some(target) = &pdu.redacts else {
            return Ok(None);
        };
        let Some(redaction) = self.rooms.redaction_of(current, pdu, target).await? else {
            return Ok(None);
        };
        let power_ok = current.user_power(&pdu.sender) >= current.action_level("redact");
        let same_server = self
            .ctx
            .storage
            .get_event(target)
            .await?
            .is_some_and(|r| r.pdu.sender.server_name() == pdu.sender.server_name());
        Ok((power_ok || same_server).then_some(redaction))
    }

    /// Stored events (timeline or outliers) by ID.
    async fn known_events(
        &self,
        ids: &[OwnedEventId],
    ) -> ServiceResult<HashMap<OwnedEventId, Arc<Pdu>>> {
        Ok(self
            .ctx
            .storage
            .get_events(ids)
            .await?
            .into_iter()
            .map(|r| (r.pdu.event_id.clone(), Arc::new(r.pdu)))
            .collect())
    }

    /// The PDUs of a state map (entries whose event is unknown are left out).
    pub(crate) async fn state_pdus(&self, state: &StateMap) -> ServiceResult<PduStateMap> {
        let ids: Vec<OwnedEventId> = state.values().cloned().collect();
        let events = self.known_events(&ids).await?;
        Ok(state
            .iter()
            .filter_map(|((kind, key), id)| {
                let pdu = events.get(id)?.clone();
                Some(((StateEventType::from(kind.as_str()), key.clone()), pdu))
            })
            .collect())
    }

    /// One state from several: the single set as is, several through state resolution over
    /// their stored auth chains (and `pending`, an event being stored that the sets name).
    pub(crate) async fn resolve_states(
        &self,
        rules: &RoomVersionRules,
        mut sets: Vec<StateMap>,
        pending: Option<&Arc<Pdu>>,
    ) -> ServiceResult<StateMap> {
        sets.dedup();
        if sets.len() <= 1 {
            return Ok(sets.pop().unwrap_or_default());
        }
        let starts: Vec<OwnedEventId> = sets
            .iter()
            .flat_map(|s| s.values().cloned())
            .chain(pending.iter().flat_map(|p| p.auth_events.iter().cloned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut events = self.auth_closure(starts).await?;
        if let Some(pdu) = pending {
            events.insert(pdu.event_id.clone(), pdu.clone());
        }
        let ruma_sets: Vec<ruma::state_res::StateMap<OwnedEventId>> = sets
            .iter()
            .map(|s| {
                s.iter()
                    .map(|((k, sk), id)| {
                        ((StateEventType::from(k.as_str()), sk.clone()), id.clone())
                    })
                    .collect()
            })
            .collect();
        let resolved = resolve_state(rules, &ruma_sets, |id| events.get(id).cloned())?;
        Ok(resolved
            .into_iter()
            .map(|((k, sk), id)| ((k.to_string(), sk), id))
            .collect())
    }

    /// `starts` and everything reachable from them through `auth_events`, loaded from storage
    /// one layer at a time; bounded by [`myelin_room::MAX_WALK`].
    async fn auth_closure(
        &self,
        starts: Vec<OwnedEventId>,
    ) -> ServiceResult<HashMap<OwnedEventId, Arc<Pdu>>> {
        let mut loaded: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut asked: HashSet<OwnedEventId> = starts.iter().cloned().collect();
        let mut frontier = starts;
        while !frontier.is_empty() {
            if asked.len() > myelin_room::MAX_WALK {
                return Err(ServiceError::Forbidden(
                    "the room's auth DAG is too large to resolve".into(),
                ));
            }
            let mut next = Vec::new();
            for chunk in frontier.chunks(500) {
                for record in self.ctx.storage.get_events(chunk).await? {
                    next.extend(
                        record
                            .pdu
                            .auth_events
                            .iter()
                            .filter(|a| asked.insert((*a).clone()))
                            .cloned(),
                    );
                    loaded.insert(record.pdu.event_id.clone(), Arc::new(record.pdu));
                }
            }
            frontier = next;
        }
        Ok(loaded)
    }

    /// Asks `origin` for the state before `pdu` (`/state`), checks every event of the answer,
    /// stores the new ones as outliers and returns the state as IDs.
    async fn remote_state_before(
        &self,
        origin: &ServerName,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> ServiceResult<StateMap> {
        let path = path::state(&pdu.room_id, &pdu.event_id);
        let answer: StateAnswer = self
            .ctx
            .federation_call(Method::GET, origin, &path, None)
            .await?;
        if answer.pdus.len() + answer.auth_chain.len() > MAX_REMOTE_STATE {
            return Err(ServiceError::Remote(format!(
                "{origin} sent more than {MAX_REMOTE_STATE} state events"
            )));
        }
        let state = self
            .store_remote_events(&pdu.room_id, rules, &answer.pdus, &answer.auth_chain)
            .await?;
        Ok(state)
    }

    /// Asks `origin` for the auth chain of `pdu` (`/event_auth`) and stores what is new.
    async fn fetch_auth_chain(
        &self,
        origin: &ServerName,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> ServiceResult<()> {
        let path = path::event_auth(&pdu.room_id, &pdu.event_id);
        let answer: AuthAnswer = self
            .ctx
            .federation_call(Method::GET, origin, &path, None)
            .await?;
        if answer.auth_chain.len() > MAX_REMOTE_STATE {
            return Err(ServiceError::Remote(format!(
                "{origin} sent an auth chain of more than {MAX_REMOTE_STATE} events"
            )));
        }
        self.store_remote_events(&pdu.room_id, rules, &[], &answer.auth_chain)
            .await?;
        Ok(())
    }

    /// Checks remote state and auth-chain events (signatures and hashes; auth against their own
    /// auth events, oldest first), stores those not yet known as outliers (or rejected), and
    /// returns `state` as a state map of the events that passed.
    pub(crate) async fn store_remote_events(
        &self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        state: &[Box<RawJsonValue>],
        auth_chain: &[Box<RawJsonValue>],
    ) -> ServiceResult<StateMap> {
        let mut verified: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut state_ids = Vec::new();
        for (raw, is_state) in auth_chain
            .iter()
            .map(|r| (r, false))
            .chain(state.iter().map(|r| (r, true)))
        {
            match self.ctx.verify_remote_pdu(raw, room_id, rules).await {
                Ok(received) => {
                    if is_state {
                        state_ids.push(received.pdu.event_id.clone());
                    }
                    verified.insert(received.pdu.event_id.clone(), Arc::new(received.pdu));
                }
                Err(e) => tracing::info!(%room_id, error = %e, "remote state event refused"),
            }
        }
        let mut known = self
            .known_events(&verified.keys().cloned().collect::<Vec<_>>())
            .await?;
        // Auth each new event against its own auth events, oldest first.
        let mut order: Vec<Arc<Pdu>> = verified
            .values()
            .filter(|p| !known.contains_key(&p.event_id))
            .cloned()
            .collect();
        order.sort_by(|a, b| {
            a.depth
                .cmp(&b.depth)
                .then_with(|| a.event_id.cmp(&b.event_id))
        });
        let mut outliers = Vec::with_capacity(order.len());
        let mut rejected = HashSet::new();
        for pdu in order {
            let mut auth: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
            for id in &auth_ids_with_create(rules, &pdu) {
                if let Some(e) = known.get(id).or_else(|| verified.get(id)) {
                    let mut e = (**e).clone();
                    e.rejected = e.rejected || rejected.contains(id);
                    auth.insert(id.clone(), Arc::new(e));
                }
            }
            let own: PduStateMap = auth
                .values()
                .filter_map(|e| {
                    Some((
                        (
                            StateEventType::from(e.kind.to_string()),
                            e.state_key.clone()?,
                        ),
                        e.clone(),
                    ))
                })
                .collect();
            let verdict = check_received_auth(rules, &pdu, &auth, &own, &own);
            let status = match verdict {
                AuthVerdict::Rejected(why) => {
                    tracing::info!(%room_id, event_id = %pdu.event_id, reason = %why, "remote state event rejected");
                    rejected.insert(pdu.event_id.clone());
                    OutlierStatus::Rejected
                }
                _ => OutlierStatus::Outlier,
            };
            let mut stored = (*pdu).clone();
            stored.rejected = status == OutlierStatus::Rejected;
            known.insert(pdu.event_id.clone(), Arc::new(stored.clone()));
            outliers.push(NewOutlier {
                pdu: stored,
                status,
            });
        }
        if !outliers.is_empty() {
            self.ctx
                .storage
                .persist_with_outliers(outliers, Vec::new())
                .await?;
        }
        Ok(state_ids
            .into_iter()
            .filter(|id| !rejected.contains(id))
            .filter_map(|id| {
                let pdu = verified.get(&id)?;
                Some(((pdu.kind.to_string(), pdu.state_key.clone()?), id))
            })
            .collect())
    }
}

/// The event's auth events, plus the create event where the room version implies it by the
/// room ID (version 12) instead of listing it.
fn auth_ids_with_create(rules: &RoomVersionRules, pdu: &Pdu) -> Vec<OwnedEventId> {
    let mut ids = pdu.auth_events.clone();
    if rules.authorization.room_create_event_id_as_room_id
        && pdu.kind.to_string() != "m.room.create"
    {
        if let Ok(id) =
            OwnedEventId::try_from(format!("${}", pdu.room_id.as_str().trim_start_matches('!')))
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Whether `state` is exactly the room's current state.
fn state_before_matches(current: &RoomState, state: &StateMap) -> bool {
    let mut count = 0;
    for entry in current.entries() {
        count += 1;
        let Some(key) = &entry.pdu.state_key else {
            return false;
        };
        if state.get(&(entry.pdu.kind.to_string(), key.clone())) != Some(&entry.pdu.event_id) {
            return false;
        }
    }
    count == state.len()
}
