//! Rooms: the in-memory view of each room's current state, and the one path every new local
//! event takes (build → authorise → persist in one transaction → publish → notify).

mod aliases;
mod cache;
mod directory;
mod guests;
mod hierarchy;
mod members;

pub(crate) use members::acl_allows;
mod power;
mod send;
mod state;
mod summary;
mod txn;
pub(crate) mod visibility;

pub use txn::client_txn_id;

use std::sync::Arc;

use myelin_core::{Pdu, StreamPos};
use myelin_room::{
    auth_event_ids, build_pdu, check_auth, redact_pdu_json, EventTemplate, PduContext,
};
use myelin_storage::{MembershipChange, NewEvent, NewRoom, NewState};
use ruma::{events::StateEventType, OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, UserId};

pub use directory::{instance_id, PublicRoomsQuery};
pub use hierarchy::HierarchyQuery;
pub use state::{Membership, RoomState, StateEntry};

use crate::{federation::Outbox, Context, Push, ServiceError, ServiceResult};

pub(crate) use cache::{RoomCache, RoomSlot};

/// Rooms: each room's current state (cached, loaded on first use) and the one path every new
/// event of a room takes, local or from federation: lock → build/check → commit → publish.
pub struct Rooms {
    pub(crate) ctx: Arc<Context>,
    pub(crate) outbox: Arc<Outbox>,
    /// Evaluates push rules for each new event, under the room's lock.
    pub(crate) push: Arc<Push>,
    pub(crate) cache: RoomCache,
}

/// A room's write lock, from [`Rooms::lock`]; released when dropped.
pub(crate) struct LockedRoom {
    room_id: OwnedRoomId,
    slot: Arc<RoomSlot>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// A new event to append to a room.
pub(crate) struct Append {
    pub sender: OwnedUserId,
    pub template: EventTemplate,
    pub txn: Option<(OwnedDeviceId, String)>,
    /// An event already built (and signed by others too, e.g. an invite the invitee's server
    /// co-signed): checked against the auth rules and stored as is.
    pub prebuilt: Option<Pdu>,
    /// `origin_server_ts` other than now: an application service's `?ts=` (timestamp massaging).
    pub ts: Option<u64>,
}

impl Rooms {
    pub fn new(ctx: Arc<Context>, outbox: Arc<Outbox>, push: Arc<Push>) -> Rooms {
        let cache = RoomCache::new(ctx.config.resources.room_cache_capacity);
        Rooms {
            ctx,
            outbox,
            push,
            cache,
        }
    }

    /// How many rooms' current state is cached in memory (at most
    /// `resources.room_cache_capacity`, and only rooms that exist).
    pub fn room_cache_len(&self) -> usize {
        self.cache.cached_len()
    }

    /// The room's current state, loaded from storage on first use.
    pub async fn room_state(&self, room_id: &RoomId) -> ServiceResult<Arc<RoomState>> {
        let slot = self.cache.slot(room_id);
        if let Some(state) = read_current(&slot) {
            return Ok(state);
        }
        let room = self.lock(room_id).await;
        self.current(&room).await
    }

    /// Takes the room's write lock: every new event of a room, local or from another server,
    /// is built on the state read under it and committed and published before it is released.
    pub(crate) async fn lock(&self, room_id: &RoomId) -> LockedRoom {
        let slot = self.cache.slot(room_id);
        let guard = slot.write.clone().lock_owned().await;
        LockedRoom {
            room_id: room_id.to_owned(),
            slot,
            _guard: guard,
        }
    }

    /// The current state of a locked room (loaded from storage on first use).
    pub(crate) async fn current(&self, room: &LockedRoom) -> ServiceResult<Arc<RoomState>> {
        if let Some(state) = read_current(&room.slot) {
            return Ok(state);
        }
        let state = Arc::new(RoomState::load(self.ctx.storage.as_ref(), &room.room_id).await?);
        *room.slot.current.write().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
        self.cache.keep(&room.room_id);
        Ok(state)
    }

    /// Appends events to an existing room in one transaction, then wakes the affected users.
    pub(crate) async fn append_events(
        &self,
        room_id: &RoomId,
        appends: Vec<Append>,
    ) -> ServiceResult<Vec<(Arc<Pdu>, StreamPos)>> {
        let room = self.lock(room_id).await;
        let state = self.current(&room).await?;
        let (new_state, events) = self.persist_appends(Some(state), None, appends).await?;
        self.publish(&room, new_state, &events);
        Ok(events)
    }

    /// Creates a room from its first events (`m.room.create` first) in one transaction, then
    /// publishes its state.
    pub(crate) async fn append_new_room(
        &self,
        room_id: OwnedRoomId,
        new_room: NewRoom,
        appends: Vec<Append>,
    ) -> ServiceResult<Arc<RoomState>> {
        let (state, events) = self
            .persist_appends(None, Some((room_id, new_room)), appends)
            .await?;
        let room = self.lock(&state.room_id).await;
        self.publish(&room, state.clone(), &events);
        Ok(state)
    }

    /// Appends one event; the common case.
    pub(crate) async fn append_event(
        &self,
        room_id: &RoomId,
        append: Append,
    ) -> ServiceResult<(Arc<Pdu>, StreamPos)> {
        let mut events = self.append_events(room_id, vec![append]).await?;
        events
            .pop()
            .ok_or_else(|| ServiceError::Internal("no event persisted".into()))
    }

    /// Builds, authorises and persists `appends` in order on top of `state` (or a new room).
    async fn persist_appends(
        &self,
        state: Option<Arc<RoomState>>,
        new_room: Option<(OwnedRoomId, NewRoom)>,
        appends: Vec<Append>,
    ) -> ServiceResult<(Arc<RoomState>, Vec<(Arc<Pdu>, StreamPos)>)> {
        let mut working: Option<RoomState> = state.as_deref().cloned();
        let base_snapshot = working.as_ref().map(|s| s.snapshot);
        let mut state_changes = Vec::new();
        let mut batch = Vec::with_capacity(appends.len());
        let mut pdus = Vec::with_capacity(appends.len());
        let mut new_room = new_room;
        let now = self.ctx.now_ms();

        for append in appends {
            let pdu = match (&working, append.prebuilt.clone()) {
                (Some(current), Some(pdu)) => {
                    check_auth(
                        &current.rules,
                        &pdu,
                        |id| current.by_event_id(id),
                        |ty: &StateEventType, key| current.get(ty, key).map(|e| e.pdu.clone()),
                    )?;
                    pdu
                }
                (Some(current), None) => {
                    self.build_checked(current, &append, append.ts.unwrap_or(now))?
                }
                (None, _) => self.build_create(
                    new_room.as_ref().map(|(id, r)| (id, &r.version)),
                    &append,
                    now,
                )?,
            };
            let pdu = Arc::new(pdu);
            if let Some(key) = pdu.state_key.clone() {
                state_changes.push(((pdu.kind.to_string(), key), pdu.event_id.clone()));
            }
            let redaction = match (&pdu.redacts, &working) {
                (Some(target), Some(current)) => self.redaction_of(current, &pdu, target).await?,
                _ => None,
            };
            let membership = membership_change(&pdu);
            let new_state = match (&pdu.state_key, base_snapshot) {
                (None, Some(snapshot)) if batch.is_empty() && snapshot != 0 => {
                    NewState::Same(snapshot)
                }
                // After a resolved fork no snapshot equals the current state: write it whole.
                (_, Some(0)) => NewState::Changed {
                    base: None,
                    changes: full_state_with(state.as_deref(), &state_changes),
                },
                _ => NewState::Changed {
                    base: base_snapshot,
                    changes: state_changes.clone(),
                },
            };
            let room = new_room.take().map(|(_, mut r)| {
                r.room_id = pdu.room_id.clone();
                r
            });
            batch.push(NewEvent {
                pdu: (*pdu).clone(),
                room,
                state: new_state,
                updates_current_state: true,
                membership,
                txn: append.txn,
                redaction,
                forward_extremities: vec![pdu.event_id.clone()],
                resolved_current_state: None,
                destinations: working
                    .as_ref()
                    .map(|w| self.outbox.destinations_of(w, &pdu))
                    .unwrap_or_default(),
                push_actions: match &working {
                    Some(before) => self.push.actions_for(before, &pdu).await,
                    None => Vec::new(),
                },
            });
            pdus.push(pdu.clone());
            working = Some(match working {
                Some(current) => current.with_event(pdu.clone(), StreamPos::ZERO, 0),
                None => {
                    RoomState::new_room(pdu.clone())?.with_event(pdu.clone(), StreamPos::ZERO, 0)
                }
            });
        }

        // What is needed after the commit is kept aside, so that the batch itself (events,
        // push actions) moves to storage rather than being copied.
        let notified = crate::push::Notified::by(&batch);
        let kept: Vec<_> = batch
            .iter()
            .zip(pdus)
            .map(|(e, pdu)| (pdu, e.destinations.clone(), e.redaction.clone()))
            .collect();
        let persisted = self.ctx.storage.persist_events(batch).await?;
        for (_, destinations, _) in &kept {
            self.outbox.wake_senders(destinations);
        }
        self.push.wake(&notified).await;
        let mut final_state = state.as_deref().cloned();
        let mut events = Vec::with_capacity(kept.len());
        for ((pdu, _, redaction), done) in kept.into_iter().zip(persisted) {
            let mut next = match final_state {
                Some(current) => {
                    current.with_event(pdu.clone(), done.stream_pos, done.state_snapshot)
                }
                None => RoomState::new_room(pdu.clone())?.with_event(
                    pdu.clone(),
                    done.stream_pos,
                    done.state_snapshot,
                ),
            };
            // Storage now holds the redacted form of the target; so must current state.
            if let Some((target, redacted)) = redaction {
                next = next.with_redacted(&target, redacted, &pdu.event_id);
            }
            final_state = Some(next);
            events.push((pdu, done.stream_pos));
        }
        let final_state =
            final_state.ok_or_else(|| ServiceError::Internal("empty batch".into()))?;
        Ok((Arc::new(final_state), events))
    }

    /// Builds a non-create event on top of `current` and checks it against the auth rules.
    pub(crate) fn build_checked(
        &self,
        current: &RoomState,
        append: &Append,
        now: u64,
    ) -> ServiceResult<Pdu> {
        let t = &append.template;
        let auth_events = auth_event_ids(
            &current.rules,
            &t.kind,
            &append.sender,
            t.state_key.as_deref(),
            &t.content,
            |ty, key| current.get(ty, key).map(|e| e.pdu.event_id.clone()),
        )?;
        let ctx = PduContext {
            rules: &current.rules,
            room_id: Some(&current.room_id),
            sender: &append.sender,
            origin_server_ts: now,
            prev_events: current.extremities.clone(),
            auth_events,
            depth: current.depth + 1,
        };
        let pdu = build_pdu(t.clone(), ctx, &self.ctx.key)?;
        check_auth(
            &current.rules,
            &pdu,
            |id| current.by_event_id(id),
            |ty: &StateEventType, key| current.get(ty, key).map(|e| e.pdu.clone()),
        )?;
        Ok(pdu)
    }

    /// Builds the `m.room.create` event of a new room.
    fn build_create(
        &self,
        room: Option<(&OwnedRoomId, &ruma::RoomVersionId)>,
        append: &Append,
        now: u64,
    ) -> ServiceResult<Pdu> {
        let (room_id, version) =
            room.ok_or_else(|| ServiceError::Internal("create without a room".into()))?;
        let rules = myelin_room::rules_for(version)?;
        let ctx = PduContext {
            rules: &rules,
            room_id: (!rules.authorization.room_create_event_id_as_room_id).then_some(room_id),
            sender: &append.sender,
            origin_server_ts: now,
            prev_events: Vec::new(),
            auth_events: Vec::new(),
            depth: 1,
        };
        let pdu = build_pdu(append.template.clone(), ctx, &self.ctx.key)?;
        check_auth(&rules, &pdu, |_| None, |_: &StateEventType, _: &str| None)?;
        Ok(pdu)
    }

    /// The redacted JSON of the event `redaction` redacts, if it is in this room.
    pub(crate) async fn redaction_of(
        &self,
        current: &RoomState,
        redaction: &Pdu,
        target: &ruma::EventId,
    ) -> ServiceResult<Option<(ruma::OwnedEventId, Box<serde_json::value::RawValue>)>> {
        let Some(record) = self.ctx.storage.get_event(target).await? else {
            return Ok(None);
        };
        if record.pdu.room_id != redaction.room_id || record.redacted_by.is_some() {
            return Ok(None);
        }
        Ok(Some((
            record.pdu.event_id.clone(),
            redact_pdu_json(&record.pdu, &current.rules)?,
        )))
    }

    /// Publishes the new state of a locked room (after its commit) and wakes everyone the
    /// events concern.
    pub(crate) fn publish(
        &self,
        room: &LockedRoom,
        state: Arc<RoomState>,
        events: &[(Arc<Pdu>, StreamPos)],
    ) {
        let mut users: Vec<OwnedUserId> = state.joined_members().into_iter().collect();
        for (pdu, _) in events {
            if let (Some(key), true) = (&pdu.state_key, pdu.kind.to_string() == "m.room.member") {
                if let Ok(user) = OwnedUserId::try_from(key.as_str()) {
                    users.push(user);
                }
            }
        }
        self.forget_unshared_device_lists(&state, events);
        *room.slot.current.write().unwrap_or_else(|p| p.into_inner()) = Some(state);
        self.cache.keep(&room.room_id);
        self.ctx.notifier.notify(users.iter().map(|u| &**u));
        self.ctx.notifier.notify_room(&room.room_id);
    }

    /// Wakes the joined members of a room (ephemeral changes: typing, receipts).
    pub(crate) async fn notify_room(&self, room_id: &RoomId) -> ServiceResult<()> {
        let state = self.room_state(room_id).await?;
        let members = state.joined_members();
        self.ctx.notifier.notify(members.iter().map(|u| &**u));
        Ok(())
    }

    /// The user's current membership in the room, from current state.
    pub async fn membership_of(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> ServiceResult<Option<Membership>> {
        let state = self.room_state(room_id).await?;
        Ok(state.membership(user_id))
    }
}

/// The whole state of `base` (if any) with `changes` applied, for a snapshot written in full.
fn full_state_with(
    base: Option<&RoomState>,
    changes: &[(myelin_storage::StateKey, ruma::OwnedEventId)],
) -> Vec<(myelin_storage::StateKey, ruma::OwnedEventId)> {
    let mut state: myelin_storage::StateMap = base
        .map(|b| {
            b.entries()
                .filter_map(|e| {
                    Some((
                        (e.pdu.kind.to_string(), e.pdu.state_key.clone()?),
                        e.pdu.event_id.clone(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    state.extend(changes.iter().cloned());
    state.into_iter().collect()
}

fn read_current(slot: &RoomSlot) -> Option<Arc<RoomState>> {
    slot.current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub(crate) fn membership_change(pdu: &Pdu) -> Option<MembershipChange> {
    if pdu.kind.to_string() != "m.room.member" {
        return None;
    }
    let user_id = OwnedUserId::try_from(pdu.state_key.as_deref()?).ok()?;
    let membership = pdu.content_value().get("membership")?.as_str()?.to_owned();
    Some(MembershipChange {
        user_id,
        membership,
    })
}

#[cfg(test)]
mod tests;
