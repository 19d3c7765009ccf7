//! What a received event needs from the network, fetched before the room is locked: missing
//! prev events (`/get_missing_events`), the auth chain (`/event_auth`) and the state before it
//! (`/state`), each event of an answer checked like any PDU and kept as an outlier.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use myelin_core::Pdu;
use myelin_federation::{path, Method};
use myelin_room::{check_received_auth, AuthVerdict, PduStateMap, Received};
use myelin_storage::{NewOutlier, OutlierStatus, StateMap};
use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, OwnedEventId, RoomId, ServerName,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue};

use super::state::auth_ids_with_create;
use crate::{rooms::RoomState, Ingest, ServiceError, ServiceResult};

/// How many missing prev events one `/get_missing_events` call asks for.
const MISSING_EVENTS_LIMIT: u64 = 20;
/// The most events (state plus auth chain) accepted from one `/state` answer.
const MAX_REMOTE_STATE: usize = 20_000;

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
    /// What a received event needs from the network before it can be checked: its auth chain
    /// when some auth events are unknown, and the state before it when some prev events are
    /// neither in the timeline nor earlier in `batch`. Asked of `origin` only when `may_ask`;
    /// best effort (what stays missing makes the event fail its checks later).
    pub(super) async fn prefetch(
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

    /// Asks `origin` for the events between our forward extremities and `pdu`: those that pass
    /// the signature and hash checks and are new, oldest first. Best effort: what stays missing
    /// is bridged by asking for the state before the event instead.
    pub(super) async fn fetch_missing_prev_events(
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
