//! Remote PDUs into a room this server takes part in (spec: Server-Server API, "Checks performed
//! on receipt of a PDU"): the entry points and the flow of one event. Format, signatures and
//! hash are checked; what the event needs from the origin is fetched before the room is locked
//! (`fetch`); then, under the lock, the state before it (`state`), auth against its auth events,
//! the state before it and the current state, and the event is stored in the timeline,
//! soft-failed or rejected, the room's current state (resolved when the event forks) and
//! forward extremities moving on in the same transaction, and published.

use std::sync::Arc;

use myelin_core::Pdu;
use myelin_room::{check_received_auth, AuthVerdict, Received};
use myelin_storage::{
    NewEvent, NewOutlier, NewState, OutlierStatus, RoomStore, SnapshotId, StateKey, StateMap,
};
use ruma::{
    room_version_rules::RoomVersionRules, CanonicalJsonObject, EventId, OwnedEventId, RoomId,
    ServerName,
};
use serde_json::value::RawValue as RawJsonValue;

use super::state::{
    auth_ids_with_create, current_state_ids, current_state_pdus, state_before_matches, StateBefore,
};
use crate::{
    rooms::{membership_change, LockedRoom, RoomState},
    Ingest, Rooms, ServiceError, ServiceResult,
};

/// What became of one received PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted,
    AlreadyKnown,
    SoftFailed(String),
    Rejected(String),
}

/// Where the room goes with an accepted event.
struct Advance {
    /// How storage records the state after the event.
    state: NewState,
    /// The room's new current state when the event does not build on every forward
    /// extremity (it forks); `None`: the state after the event becomes the current state.
    resolved_current_state: Option<StateMap>,
    forward_extremities: Vec<OwnedEventId>,
    /// The event follows the current state directly (its one prev event is the only forward
    /// extremity, and the state before it is the current state): the new current state is the
    /// old one plus the event, not reloaded from storage.
    extends_current: bool,
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

    /// Like [`Ingest::ingest_pdu`] for an event given to us as the resident server
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

    /// Steps 4–6 and persistence, with the room's write lock held: the state before the event,
    /// the auth checks, then for an accepted event the room's new state, the storage batch and
    /// publishing. Nothing here asks another server: `remote_state_before` is the state before
    /// the event as fetched beforehand, used when some of its prev events are not in the timeline.
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
        let current = self.rooms.current(room).await?;
        let before = self.state_before(rules, &pdu, remote_state_before).await?;
        match self
            .auth_verdict(rules, &pdu, &before.state, &current)
            .await?
        {
            AuthVerdict::Accepted => {}
            AuthVerdict::Rejected(why) => {
                return self
                    .store_not_applied(origin, &pdu, OutlierStatus::Rejected, why)
                    .await;
            }
            AuthVerdict::SoftFailed(why) => {
                return self
                    .store_not_applied(origin, &pdu, OutlierStatus::SoftFailed, why)
                    .await;
            }
        }
        let advance = self.advance(rules, &pdu, &current, &before).await?;
        let extends_current = advance.extends_current;
        let event = self
            .accepted_event(origin, &current, &pdu, advance, distribute)
            .await?;
        self.commit_accepted(room, &current, pdu, event, extends_current)
            .await?;
        Ok(IngestOutcome::Accepted)
    }

    /// Checks `pdu` against its auth events, the state before it and the room's current state.
    /// One of its auth events still unknown (they were fetched beforehand) leaves the event
    /// undecided rather than rejected: it may come with a later attempt.
    async fn auth_verdict(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state_before: &StateMap,
        current: &RoomState,
    ) -> ServiceResult<AuthVerdict> {
        let auth_ids = auth_ids_with_create(rules, pdu);
        let auth_events = self.known_events(&auth_ids).await?;
        if let Some(missing) = auth_ids.iter().find(|id| !auth_events.contains_key(*id)) {
            return Err(ServiceError::Forbidden(format!(
                "auth event {missing} of {} is unknown",
                pdu.event_id
            )));
        }
        if let Some(why) = self.redacts_elsewhere(pdu).await? {
            return Ok(AuthVerdict::Rejected(why));
        }
        let before_pdus = self.state_pdus(state_before).await?;
        let current_pdus = current_state_pdus(current);
        Ok(check_received_auth(
            rules,
            pdu,
            &auth_events,
            &before_pdus,
            &current_pdus,
        ))
    }

    /// Why a redaction is refused when it names an event we hold in another room: a room's
    /// events may only redact that room's events.
    async fn redacts_elsewhere(&self, pdu: &Pdu) -> ServiceResult<Option<String>> {
        let Some(target) = &pdu.redacts else {
            return Ok(None);
        };
        let elsewhere = self
            .ctx
            .storage
            .get_event(target)
            .await?
            .is_some_and(|r| r.pdu.room_id != pdu.room_id);
        Ok(elsewhere.then(|| format!("it redacts {target}, an event of another room")))
    }

    /// Keeps a rejected or soft-failed event as an outlier, out of the timeline and the state.
    async fn store_not_applied(
        &self,
        origin: &ServerName,
        pdu: &Pdu,
        status: OutlierStatus,
        why: String,
    ) -> ServiceResult<IngestOutcome> {
        tracing::info!(%origin, event_id = %pdu.event_id, status = status.as_str(), reason = %why, "received PDU not applied");
        let mut stored = pdu.clone();
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
        Ok(match status {
            OutlierStatus::Rejected => IngestOutcome::Rejected(why),
            _ => IngestOutcome::SoftFailed(why),
        })
    }

    /// The state after an accepted event, the room's new current state (resolved with the
    /// state after the event when it forks) and forward extremities.
    async fn advance(
        &self,
        rules: &RoomVersionRules,
        pdu: &Arc<Pdu>,
        current: &RoomState,
        before: &StateBefore,
    ) -> ServiceResult<Advance> {
        let own_change: Option<(StateKey, OwnedEventId)> = pdu
            .state_key
            .clone()
            .map(|k| ((pdu.kind.to_string(), k), pdu.event_id.clone()));
        let mut state_after = before.state.clone();
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
            // The state after the event names the event itself, not stored yet: resolution must
            // see it, or it would drop it from the conflicted set (a leave sent on a fork would
            // lose to the join it replaces).
            let sets = vec![current_state_ids(current), state_after.clone()];
            Some(self.resolve_states(rules, sets, Some(pdu)).await?)
        };
        let extends_current = resolved_current_state.is_none()
            && before.linear_base.is_some()
            && current.extremities == pdu.prev_events
            && state_before_matches(current, &before.state);
        Ok(Advance {
            state: recorded_state(before.linear_base, own_change, state_after),
            resolved_current_state,
            forward_extremities: forward_extremities(current, pdu),
            extends_current,
        })
    }

    /// The storage batch for an accepted event: the event with its state, the room's new
    /// current state and extremities, the redaction it applies, and, when we are the resident
    /// server `distribute`ing it, the other servers to send it on to.
    async fn accepted_event(
        &self,
        origin: &ServerName,
        current: &RoomState,
        pdu: &Pdu,
        advance: Advance,
        distribute: bool,
    ) -> ServiceResult<NewEvent> {
        Ok(NewEvent {
            pdu: pdu.clone(),
            room: None,
            state: advance.state,
            updates_current_state: true,
            membership: membership_change(pdu),
            txn: None,
            redaction: self.remote_redaction(current, pdu).await?,
            forward_extremities: advance.forward_extremities,
            resolved_current_state: advance.resolved_current_state,
            destinations: if distribute {
                let mut servers = self.outbox.destinations_of(current, pdu);
                servers.retain(|s| s != origin);
                servers
            } else {
                Vec::new()
            },
            push_actions: self.rooms.push.actions_for(current, pdu).await,
        })
    }

    /// Stores the batch in one transaction, wakes the senders it queued for, and publishes the
    /// room's new current state: the old one plus the event when it `extends_current`, else
    /// reloaded from storage.
    async fn commit_accepted(
        &self,
        room: &LockedRoom,
        current: &RoomState,
        pdu: Arc<Pdu>,
        event: NewEvent,
        extends_current: bool,
    ) -> ServiceResult<()> {
        let destinations = event.destinations.clone();
        let redaction = event.redaction.clone();
        let notified = crate::push::Notified::by(std::slice::from_ref(&event));
        let persisted = self.ctx.storage.persist_event(event).await?;
        self.outbox.wake_senders(&destinations);
        self.rooms.push.wake(&notified).await;
        let new_state = if extends_current {
            let mut next = current.clone().with_event(
                pdu.clone(),
                persisted.stream_pos,
                persisted.state_snapshot,
            );
            // Storage now holds the redacted form of the target; so must current state.
            if let Some((target, redacted)) = redaction {
                next = next.with_redacted(&target, redacted, &pdu.event_id);
            }
            Arc::new(next)
        } else {
            Arc::new(RoomState::load(self.ctx.storage.as_ref(), &pdu.room_id).await?)
        };
        if pdu.state_key.is_some()
            && Rooms::closes_to_guests(&pdu.kind.to_string(), &pdu.content_value())
        {
            // Our guests leave; their leaves need this room's lock, held until we return.
            let (rooms, room_id) = (self.rooms.clone(), pdu.room_id.clone());
            tokio::spawn(async move {
                if let Err(e) = rooms.remove_guests(&room_id).await {
                    tracing::warn!(%room_id, error = %e, "removing guests failed");
                }
            });
        }
        self.rooms
            .publish(room, new_state, &[(pdu, persisted.stream_pos)]);
        Ok(())
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
}

/// How storage records the state after an event: as its own change (if any) to the snapshot of
/// its single prev event when there is one, else whole.
fn recorded_state(
    linear_base: Option<SnapshotId>,
    own_change: Option<(StateKey, OwnedEventId)>,
    state_after: StateMap,
) -> NewState {
    match (linear_base, own_change) {
        (Some(base), None) => NewState::Same(base),
        (Some(base), Some(change)) => NewState::Changed {
            base: Some(base),
            changes: vec![change],
        },
        (None, _) => NewState::Changed {
            base: None,
            changes: state_after.into_iter().collect(),
        },
    }
}

/// The room's forward extremities once `pdu` is in: those it does not build on, and itself.
fn forward_extremities(current: &RoomState, pdu: &Pdu) -> Vec<OwnedEventId> {
    let mut extremities: Vec<OwnedEventId> = current
        .extremities
        .iter()
        .filter(|tip| !pdu.prev_events.contains(tip))
        .cloned()
        .collect();
    extremities.push(pdu.event_id.clone());
    extremities
}
