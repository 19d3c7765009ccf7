//! Extensions: to-device messages (queued until a later `since` acknowledges them), E2EE key
//! counts and device-list changes, account data (global, and of the rooms in scope, with the
//! push rules), read receipts and typing of the rooms in scope.
//!
//! Receipts and account data of a room are tracked per connection like rooms are: a room in
//! scope is sent everything new since it was last in scope, and one that left scope while it
//! had news is remembered at the position it was sent up to.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use myelin_core::StreamPos;
use myelin_storage::ReceiptRecord;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde_json::json;

use super::{
    connection::{ConnState, Sent, StateEdit},
    pass::Pass,
    request::{ExtensionsConfig, RoomsExtension, ToDeviceConfig},
    response::{
        AccountDataResponse, DeviceLists, E2eeResponse, ExtensionsResponse, RoomEventsResponse,
        ToDeviceResponse,
    },
    SlidingSync,
};
use crate::{
    e2ee::to_device::TO_DEVICE_PER_SYNC,
    sync::{push_rules_event, receipt_event},
    ServiceError, ServiceResult,
};

const WILDCARD: &str = "*";
/// Most to-device messages one response carries, whatever the extension's `limit` asks
/// (without one: [`TO_DEVICE_PER_SYNC`], Synapse's default of 100 too).
const MAX_TO_DEVICE_LIMIT: u64 = 1_000;

/// The rooms the extensions may speak of.
pub(super) struct Scope<'a> {
    /// Per list: the rooms its ranges selected.
    pub lists: &'a BTreeMap<String, Vec<OwnedRoomId>>,
    /// Every room looked at: those of the lists' ranges and those subscribed to.
    pub relevant: BTreeSet<OwnedRoomId>,
    /// Rooms sent afresh in this response, with their timelines.
    pub afresh: HashMap<OwnedRoomId, Vec<OwnedEventId>>,
}

impl Scope<'_> {
    /// The rooms of the lists named (`*` or absent: all) and of the rooms named (`*` or
    /// absent: every room looked at), as Synapse reads these fields.
    fn rooms_for(&self, ext: &RoomsExtension) -> BTreeSet<OwnedRoomId> {
        let mut out = BTreeSet::new();
        let all_lists = ext
            .lists
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == WILDCARD));
        for (name, rooms) in self.lists {
            if all_lists || ext.lists.as_ref().is_some_and(|l| l.contains(name)) {
                out.extend(rooms.iter().cloned());
            }
        }
        match &ext.rooms {
            Some(named) if !named.iter().any(|r| r == WILDCARD) => out.extend(
                self.relevant
                    .iter()
                    .filter(|r| named.iter().any(|n| n == r.as_str()))
                    .cloned(),
            ),
            _ => out.extend(self.relevant.iter().cloned()),
        }
        out
    }
}

/// Which per-room tracking of the connection state.
#[derive(Clone, Copy)]
enum Tracked {
    Receipts,
    AccountData,
}

impl Tracked {
    fn of(self, state: &ConnState) -> &HashMap<OwnedRoomId, Sent> {
        match self {
            Tracked::Receipts => &state.receipts,
            Tracked::AccountData => &state.account_data,
        }
    }

    fn of_mut(self, state: &mut ConnState) -> &mut HashMap<OwnedRoomId, Sent> {
        match self {
            Tracked::Receipts => &mut state.receipts,
            Tracked::AccountData => &mut state.account_data,
        }
    }

    /// Up to where the room's data was sent; `None`: never.
    fn since(self, state: &ConnState, room: &RoomId, prev: Option<StreamPos>) -> Option<StreamPos> {
        match self.of(state).get(room)? {
            Sent::Live => prev,
            Sent::Since(pos) => Some(*pos),
        }
    }

    /// After a response: the rooms in scope hold everything (`Live`); rooms out of scope that
    /// were `Live` but had news they were not sent stay at the request's position.
    fn settle(
        self,
        state: &mut StateEdit,
        in_scope: &BTreeSet<OwnedRoomId>,
        missed: &[OwnedRoomId],
        prev: Option<StreamPos>,
    ) {
        for room in in_scope {
            if self.of(state.get()).get(room) != Some(&Sent::Live) {
                self.of_mut(state.edit()).insert(room.clone(), Sent::Live);
            }
        }
        let Some(prev) = prev else { return };
        for room in missed {
            if self.of(state.get()).get(room) == Some(&Sent::Live) {
                self.of_mut(state.edit())
                    .insert(room.clone(), Sent::Since(prev));
            }
        }
    }
}

/// What a tracked extension leaves to record in the connection state once it has answered.
struct Settle {
    tracked: Tracked,
    in_scope: BTreeSet<OwnedRoomId>,
    missed: Vec<OwnedRoomId>,
}

impl Settle {
    fn apply(self, state: &mut StateEdit, prev: Option<StreamPos>) {
        self.tracked
            .settle(state, &self.in_scope, &self.missed, prev);
    }
}

impl SlidingSync {
    /// The extensions the request enables, read side by side (each is a storage read or two;
    /// on PostgreSQL a round trip each), the connection state settled after.
    pub(super) async fn extensions(
        &self,
        pass: &Pass<'_>,
        config: &ExtensionsConfig,
        scope: &Scope<'_>,
        state: &mut StateEdit,
    ) -> ServiceResult<ExtensionsResponse> {
        let (to_device, e2ee, account_data, receipts) = {
            let state = &*state;
            let to_device = async {
                match config.to_device.enabled == Some(true) {
                    true => self.to_device(pass, &config.to_device).await.map(Some),
                    false => Ok(None),
                }
            };
            let e2ee = async {
                match config.e2ee.on() {
                    true => self.e2ee_counts(pass).await.map(Some),
                    false => Ok(None),
                }
            };
            let account_data = async {
                match config.account_data.on() {
                    true => {
                        let rooms = scope.rooms_for(&config.account_data);
                        self.account_data(pass, rooms, state).await.map(Some)
                    }
                    false => Ok(None),
                }
            };
            let receipts = async {
                match config.receipts.on() {
                    true => {
                        let rooms = scope.rooms_for(&config.receipts);
                        self.receipts(pass, rooms, &scope.afresh, state)
                            .await
                            .map(Some)
                    }
                    false => Ok(None),
                }
            };
            futures_util::try_join!(to_device, e2ee, account_data, receipts)?
        };
        let prev = pass.prev.map(|p| p.stream);
        let mut out = ExtensionsResponse {
            to_device,
            e2ee,
            ..ExtensionsResponse::default()
        };
        if let Some((response, settle)) = account_data {
            settle.apply(state, prev);
            out.account_data = Some(response);
        }
        if let Some((response, settle)) = receipts {
            settle.apply(state, prev);
            out.receipts = Some(response);
        }
        if config.typing.on() {
            out.typing = Some(self.typing(pass, &scope.rooms_for(&config.typing)));
        }
        Ok(out)
    }

    /// To-device messages: drops those `since` acknowledges, returns the next ones (about
    /// `limit`: the messages of one position are not split).
    async fn to_device(
        &self,
        pass: &Pass<'_>,
        config: &ToDeviceConfig,
    ) -> ServiceResult<ToDeviceResponse> {
        let acked = match &config.since {
            None => None,
            Some(since) => {
                let pos: i64 = since.parse().map_err(|_| {
                    ServiceError::InvalidParam("to_device.since is not a next_batch".into())
                })?;
                Some(StreamPos(pos.clamp(0, pass.now.0)))
            }
        };
        let limit = config
            .limit
            .map_or(TO_DEVICE_PER_SYNC, |l| l.min(MAX_TO_DEVICE_LIMIT) as usize);
        let (events, up_to) = self
            .e2ee
            .to_device_for_sync(pass.authed, acked, pass.now, limit)
            .await?;
        Ok(ToDeviceResponse {
            next_batch: up_to.0.to_string(),
            events,
        })
    }

    /// The device's key counts, and whose devices changed since the request's `pos`.
    async fn e2ee_counts(&self, pass: &Pass<'_>) -> ServiceResult<E2eeResponse> {
        let authed = pass.authed;
        let device_lists = match pass.prev {
            Some(prev) => {
                self.e2ee
                    .device_list_changes(&authed.user_id, prev.stream, pass.now)
                    .await?
            }
            None => Default::default(),
        };
        let fallback = async {
            let storage = self.ctx.storage.as_ref();
            ServiceResult::Ok(
                storage
                    .unused_fallback_key_types(&authed.user_id, authed.device_id.as_str())
                    .await?,
            )
        };
        let (fallback, one_time) =
            futures_util::try_join!(fallback, self.e2ee.one_time_key_counts(authed))?;
        Ok(E2eeResponse {
            device_lists: DeviceLists {
                changed: device_lists.changed,
                left: device_lists.left,
            },
            device_one_time_keys_count: one_time,
            device_unused_fallback_key_types: fallback,
        })
    }

    /// Global account data new since `pos` (all of it, with the push rules, the first time),
    /// and each room in scope's new since it was last sent.
    async fn account_data(
        &self,
        pass: &Pass<'_>,
        rooms: BTreeSet<OwnedRoomId>,
        state: &StateEdit,
    ) -> ServiceResult<(AccountDataResponse, Settle)> {
        let user_id = &pass.authed.user_id;
        let prev = pass.prev.map(|p| p.stream);
        let tracked = Tracked::AccountData;
        let since = |room: &RoomId| tracked.since(state.get(), room, prev);
        let floor = rooms
            .iter()
            .map(|r| since(r).unwrap_or(StreamPos::ZERO))
            .chain([prev.unwrap_or(StreamPos::ZERO)])
            .min()
            .unwrap_or(StreamPos::ZERO);
        let mut out = AccountDataResponse::default();
        let mut missed = Vec::new();
        for d in self.ctx.storage.account_data_since(user_id, floor).await? {
            let event = json!({ "type": d.data_type, "content": d.content });
            let Some(room) = &d.room_id else {
                if prev.is_none_or(|p| d.stream_pos > p) {
                    out.global.push(event);
                }
                continue;
            };
            if rooms.contains(room) {
                if since(room).is_none_or(|s| d.stream_pos > s) {
                    out.rooms.entry(room.clone()).or_default().push(event);
                }
            } else if prev.is_some_and(|p| d.stream_pos > p) {
                missed.push(room.clone());
            }
        }
        // Clients read their push rules here: the merged ruleset, the first time and whenever
        // the stored rules changed.
        let rules_changed = out.global.iter().any(|e| e["type"] == "m.push_rules");
        if prev.is_none() || rules_changed {
            out.global.retain(|e| e["type"] != "m.push_rules");
            out.global
                .push(push_rules_event(&self.users, user_id).await?);
        }
        let settle = Settle {
            tracked,
            in_scope: rooms,
            missed,
        };
        Ok((out, settle))
    }

    /// Receipts of the rooms in scope: new since last sent; for a room sent afresh, those on
    /// its timeline's events and the user's own.
    async fn receipts(
        &self,
        pass: &Pass<'_>,
        rooms: BTreeSet<OwnedRoomId>,
        afresh: &HashMap<OwnedRoomId, Vec<OwnedEventId>>,
        state: &StateEdit,
    ) -> ServiceResult<(RoomEventsResponse, Settle)> {
        let me = &pass.authed.user_id;
        let prev = pass.prev.map(|p| p.stream);
        let tracked = Tracked::Receipts;
        let since = |room: &RoomId| tracked.since(state.get(), room, prev);
        let (fresh, known): (Vec<OwnedRoomId>, Vec<OwnedRoomId>) = rooms
            .iter()
            .cloned()
            .partition(|r| afresh.contains_key(r) || since(r).is_none());
        // `Live` rooms out of scope: asked too, to learn whether they missed something.
        let live_out = tracked
            .of(state.get())
            .iter()
            .filter(|(r, s)| **s == Sent::Live && !rooms.contains(*r))
            .map(|(r, _)| r.clone());
        let ask: Vec<OwnedRoomId> = known.into_iter().chain(live_out).collect();
        let mut by_room: BTreeMap<OwnedRoomId, Vec<ReceiptRecord>> = BTreeMap::new();
        let mut missed = Vec::new();
        if !ask.is_empty() {
            let floor = ask.iter().filter_map(|r| since(r)).min();
            let storage = &self.ctx.storage;
            for r in storage
                .receipts_since(&ask, floor.unwrap_or(StreamPos::ZERO))
                .await?
            {
                if !visible(&r, me) || since(&r.room_id).is_some_and(|s| r.stream_pos <= s) {
                    continue;
                }
                if rooms.contains(&r.room_id) {
                    by_room.entry(r.room_id.clone()).or_default().push(r);
                } else {
                    missed.push(r.room_id);
                }
            }
        }
        if !fresh.is_empty() {
            for r in self
                .ctx
                .storage
                .receipts_since(&fresh, StreamPos::ZERO)
                .await?
            {
                let on_timeline = afresh
                    .get(&r.room_id)
                    .is_some_and(|ids| ids.contains(&r.event_id));
                if visible(&r, me) && (r.user_id == *me || on_timeline) {
                    by_room.entry(r.room_id.clone()).or_default().push(r);
                }
            }
        }
        let response = RoomEventsResponse {
            rooms: by_room
                .into_iter()
                .map(|(room, receipts)| (room, receipt_event(&receipts)))
                .collect(),
        };
        let settle = Settle {
            tracked,
            in_scope: rooms,
            missed,
        };
        Ok((response, settle))
    }

    /// Who types in the rooms in scope, where that changed since `pos` (everywhere someone
    /// types, the first time). Not tracked per room: typing expires within seconds anyway.
    fn typing(&self, pass: &Pass<'_>, rooms: &BTreeSet<OwnedRoomId>) -> RoomEventsResponse {
        let since = pass.prev.map(|p| p.typing);
        let now = self.ctx.now_ms();
        let typing = &self.ephemeral.typing;
        let rooms = rooms
            .iter()
            .filter_map(|room| {
                let users = typing.changed_since(room, since, now)?;
                let event = json!({ "type": "m.typing", "content": { "user_ids": users } });
                Some((room.clone(), event))
            })
            .collect();
        RoomEventsResponse { rooms }
    }
}

/// Private receipts are for their owner only.
fn visible(r: &ReceiptRecord, me: &UserId) -> bool {
    r.receipt_type != "m.read.private" || r.user_id == me
}
