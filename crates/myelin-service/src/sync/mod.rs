//! `GET /sync`: initial and incremental, with long-polling woken by the notifier.

use crate::rooms::Membership;
use ruma::events::StateEventType;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use futures_util::StreamExt;
use myelin_core::{Pdu, StreamPos};
use myelin_storage::{Direction, EventRecord, MembershipRecord, ReceiptRecord};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use std::sync::Arc;

use crate::{
    accounts::Authed, filter::Filter, format::stripped_state, Context, E2ee, Ephemeral, History,
    Rooms, ServiceError, ServiceResult, Users,
};

/// `/sync`: reads rooms through the history-visibility check, plus the ephemeral, e2ee and
/// per-user data of the response; it writes nothing but presence.
pub struct Syncer {
    pub(crate) ctx: Arc<Context>,
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) history: Arc<History>,
    pub(crate) e2ee: Arc<E2ee>,
    pub(crate) ephemeral: Arc<Ephemeral>,
    pub(crate) users: Arc<Users>,
}

impl Syncer {
    pub fn new(
        ctx: Arc<Context>,
        rooms: Arc<Rooms>,
        history: Arc<History>,
        e2ee: Arc<E2ee>,
        ephemeral: Arc<Ephemeral>,
        users: Arc<Users>,
    ) -> Syncer {
        Syncer {
            ctx,
            rooms,
            history,
            e2ee,
            ephemeral,
            users,
        }
    }
}

/// A `/sync` cursor: the global stream position, the typing serial, and the position up to
/// which to-device messages were delivered (they stay queued until a later sync acknowledges
/// them, and a response carries a bounded number, so this can lag behind `pos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub pos: StreamPos,
    pub typing: u64,
    pub to_device: StreamPos,
}

impl SyncToken {
    pub fn parse(token: &str) -> Option<SyncToken> {
        let mut parts = token.strip_prefix('s')?.split('_');
        let pos = StreamPos(parts.next()?.parse().ok()?);
        let typing = parts.next().map_or(Some(0), |t| t.parse().ok())?;
        // Tokens from before to-device delivery had nothing queued to acknowledge.
        let to_device = parts
            .next()
            .map_or(Some(pos), |t| t.parse().ok().map(StreamPos))?;
        if parts.next().is_some() || to_device > pos {
            return None;
        }
        Some(SyncToken {
            pos,
            typing,
            to_device,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}_{}", self.pos.0, self.typing, self.to_device.0)
    }
}

/// Pagination tokens share the sync format (the typing part is ignored).
pub fn pagination_token(pos: StreamPos) -> String {
    format!("s{}", pos.0)
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub since: Option<String>,
    pub timeout_ms: u64,
    pub full_state: bool,
    pub filter: Option<String>,
    pub set_presence: Option<String>,
}

const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// How many joined rooms one `/sync` builds concurrently.
const ROOMS_AT_ONCE: usize = 8;

impl Syncer {
    pub async fn sync(&self, authed: &Authed, req: SyncRequest) -> ServiceResult<Value> {
        let since = match &req.since {
            Some(t) => Some(
                SyncToken::parse(t)
                    .ok_or_else(|| ServiceError::InvalidParam("Invalid since token".into()))?,
            ),
            None => None,
        };
        let filter = self
            .resolve_filter(&authed.user_id, req.filter.as_deref())
            .await?;
        if let Some(presence) = req.set_presence.as_deref() {
            self.update_presence_from_sync(&authed.user_id, presence)
                .await?;
        }
        let mut waiter = self.ctx.notifier.subscribe(&authed.user_id);
        let timeout =
            Duration::from_millis(req.timeout_ms.min(self.ctx.config.max_sync_timeout_ms));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (response, empty) = self
                .build_sync(authed, since, &filter, req.full_state)
                .await?;
            let must_answer = since.is_none() || req.full_state || waiter.is_closing();
            if !empty || must_answer || tokio::time::Instant::now() >= deadline {
                return Ok(response);
            }
            tokio::select! {
                _ = waiter.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn resolve_filter(
        &self,
        user_id: &UserId,
        filter: Option<&str>,
    ) -> ServiceResult<Filter> {
        let value = match filter {
            None => return Ok(Filter::default()),
            Some(f) if f.trim_start().starts_with('{') => serde_json::from_str(f)
                .map_err(|e| ServiceError::BadJson(format!("Invalid filter: {e}")))?,
            Some(id) => self.users.get_filter(user_id, id).await?,
        };
        Filter::from_json(&value).map_err(|e| ServiceError::BadJson(format!("Invalid filter: {e}")))
    }

    async fn update_presence_from_sync(
        &self,
        user_id: &UserId,
        presence: &str,
    ) -> ServiceResult<()> {
        if !matches!(presence, "online" | "offline" | "unavailable") {
            return Err(ServiceError::InvalidParam(format!(
                "Unknown presence state {presence}"
            )));
        }
        let current = self.ctx.storage.get_presence(user_id).await?;
        if current.as_ref().map(|p| p.state.as_str()) != Some(presence) {
            self.ephemeral
                .set_presence(
                    user_id,
                    presence,
                    current.and_then(|p| p.status_msg).as_deref(),
                )
                .await?;
        }
        Ok(())
    }

    /// One pass over everything that changed since `since`; `true` if nothing did.
    async fn build_sync(
        &self,
        authed: &Authed,
        since: Option<SyncToken>,
        filter: &Filter,
        full_state: bool,
    ) -> ServiceResult<(Value, bool)> {
        let user_id = &authed.user_id;
        let now = self.ctx.now_ms();
        let pos = self.ctx.storage.current_stream_pos().await?;
        let (to_device, to_device_pos) = self
            .e2ee
            .to_device_for_sync(authed, since.map(|s| s.to_device), pos)
            .await?;
        let next = SyncToken {
            pos,
            typing: self.ephemeral.typing.serial(now),
            to_device: to_device_pos,
        };
        let since_pos = since.map(|s| s.pos);
        let device_lists = match since_pos {
            Some(since) => self.e2ee.device_list_changes(user_id, since, pos).await?,
            None => Default::default(),
        };
        let memberships = self.ctx.storage.memberships_of_user(user_id).await?;
        let memberships: Vec<_> = memberships
            .into_iter()
            .filter(|m| filter.room.allows_room(m.room_id.as_str()))
            .collect();

        let joined_ids: Vec<OwnedRoomId> = memberships
            .iter()
            .filter(|m| m.membership == "join")
            .map(|m| m.room_id.clone())
            .collect();
        // Incremental syncs read timelines only of rooms that have new events (one query, not one
        // per joined room). `next` was read first, so every event up to it is visible here.
        let rooms_with_events: Option<HashSet<OwnedRoomId>> = match since_pos {
            Some(s) if !full_state => Some(
                self.ctx
                    .storage
                    .rooms_with_events_between(s, next.pos)
                    .await?
                    .into_iter()
                    .collect(),
            ),
            _ => None,
        };
        let mut receipts: HashMap<OwnedRoomId, Vec<ReceiptRecord>> = HashMap::new();
        for r in self
            .ctx
            .storage
            .receipts_since(&joined_ids, since_pos.unwrap_or(StreamPos::ZERO))
            .await?
        {
            if r.receipt_type == "m.read.private" && r.user_id != *user_id {
                continue;
            }
            receipts.entry(r.room_id.clone()).or_default().push(r);
        }
        let mut global_data = Vec::new();
        let mut room_data: HashMap<OwnedRoomId, Vec<Value>> = HashMap::new();
        for d in self
            .ctx
            .storage
            .account_data_since(user_id, since_pos.unwrap_or(StreamPos::ZERO))
            .await?
        {
            let event = json!({ "type": d.data_type, "content": d.content });
            match d.room_id {
                Some(room) => room_data.entry(room).or_default().push(event),
                None if filter.account_data.allows(&d.data_type) => global_data.push(event),
                None => {}
            }
        }
        // Clients read their push rules from the initial sync, changed by them or not.
        let push_rules_sent = global_data.iter().any(|e| e["type"] == "m.push_rules");
        if since_pos.is_none() && !push_rules_sent && filter.account_data.allows("m.push_rules") {
            let rules = self.users.push_rules(user_id).await?;
            global_data.push(json!({ "type": "m.push_rules", "content": { "global": rules } }));
        }

        let mut join = Map::new();
        let mut invite = Map::new();
        let mut knock = Map::new();
        let mut leave = Map::new();
        let mut presence_users: HashSet<OwnedUserId> = HashSet::from([user_id.clone()]);
        // Joined rooms are built a few at a time, so their storage reads overlap on the
        // reader pool instead of queueing behind each other.
        let mut joined_rooms = Vec::new();
        for m in &memberships {
            if m.membership != "join" {
                continue;
            }
            let ctx = JoinedRoomCtx {
                since,
                next,
                full_state,
                has_new_events: rooms_with_events
                    .as_ref()
                    .is_none_or(|r| r.contains(&m.room_id)),
                receipts: receipts.remove(&m.room_id).unwrap_or_default(),
                account_data: room_data.remove(&m.room_id).unwrap_or_default(),
            };
            let room = self.joined_room(authed, m, filter, ctx);
            joined_rooms.push(async move { (m, room.await) });
        }
        let mut built = futures_util::stream::iter(joined_rooms).buffered(ROOMS_AT_ONCE);
        while let Some((m, result)) = built.next().await {
            if let Some((room, members)) = result? {
                join.insert(m.room_id.to_string(), room);
                presence_users.extend(members);
            }
        }
        drop(built);
        for m in &memberships {
            let changed = since_pos.is_none_or(|s| m.stream_pos > s);
            match m.membership.as_str() {
                "invite" if changed => {
                    invite.insert(
                        m.room_id.to_string(),
                        json!({ "invite_state": { "events": self.stripped_room_state(m).await? } }),
                    );
                }
                "knock" if changed => {
                    knock.insert(
                        m.room_id.to_string(),
                        json!({ "knock_state": { "events": self.stripped_room_state(m).await? } }),
                    );
                }
                "leave" | "ban"
                    if !m.forgotten
                        && (since.is_some() && changed
                            || since.is_none() && filter.room.include_leave) =>
                {
                    leave.insert(
                        m.room_id.to_string(),
                        self.left_room(authed, m, since_pos, filter).await?,
                    );
                }
                _ => {}
            }
        }

        let presence: Vec<Value> = if filter.presence.allows("m.presence") {
            // Rooms without news are not in `join`, yet their members' presence changes count.
            presence_users.extend(self.rooms.users_sharing_rooms(user_id).await?);
            let users: Vec<_> = presence_users.into_iter().collect();
            self.ctx.storage
                .presence_since(&users, since_pos.unwrap_or(StreamPos::ZERO))
                .await?
                .into_iter()
                .map(|p| {
                    let mut content = json!({ "presence": p.state, "last_active_ago": now.saturating_sub(p.last_active_ms), "currently_active": p.state == "online" });
                    if let Some(msg) = p.status_msg { content["status_msg"] = json!(msg); }
                    json!({ "type": "m.presence", "sender": p.user_id, "content": content })
                })
                .collect()
        } else {
            Vec::new()
        };

        let empty = join.is_empty()
            && invite.is_empty()
            && knock.is_empty()
            && leave.is_empty()
            && presence.is_empty()
            && global_data.is_empty()
            && to_device.is_empty()
            && device_lists.changed.is_empty()
            && device_lists.left.is_empty();
        let device = authed.device_id.as_str();
        let response = json!({
            "next_batch": next.to_string(),
            "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
            "presence": { "events": presence },
            "account_data": { "events": global_data },
            "to_device": { "events": to_device },
            "device_lists": { "changed": device_lists.changed, "left": device_lists.left },
            "device_one_time_keys_count": self.e2ee.one_time_key_counts(authed).await?,
            "device_unused_fallback_key_types":
                self.ctx.storage.unused_fallback_key_types(user_id, device).await?,
        });
        Ok((response, empty))
    }

    /// The `rooms.join` entry of one room, or `None` if nothing changed; also returns the members.
    async fn joined_room(
        &self,
        authed: &Authed,
        m: &MembershipRecord,
        filter: &Filter,
        ctx: JoinedRoomCtx,
    ) -> ServiceResult<Option<(Value, Vec<OwnedUserId>)>> {
        let state = self.rooms.room_state(&m.room_id).await?;
        let since_pos = ctx.since.map(|s| s.pos);
        let newly = ctx.full_state || since_pos.is_none_or(|s| m.stream_pos > s);
        // The membership record is at hand: no per-room storage read.
        let mut view = self
            .rooms
            .history_view(&authed.user_id, state.clone(), Some(m));
        let limit = filter
            .room
            .timeline
            .limit
            .map_or(DEFAULT_TIMELINE_LIMIT, |l| l.clamp(1, 100) as usize);
        let lower = match (newly, since_pos) {
            (false, Some(s)) => Some(s),
            _ => None,
        };
        let mut records = if newly || ctx.has_new_events {
            self.ctx
                .storage
                .room_events(
                    &m.room_id,
                    ctx.next.pos,
                    lower,
                    Direction::Backward,
                    limit + 1,
                )
                .await?
        } else {
            Vec::new()
        };
        let limited = records.len() > limit;
        records.truncate(limit);
        records.reverse();
        let mut records = view.filter(records).await?;

        let typing = self.ephemeral.typing.changed_since(
            &m.room_id,
            ctx.since.map(|s| s.typing),
            self.ctx.now_ms(),
        );
        let mut ephemeral = Vec::new();
        if let Some(users) = typing {
            ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
        }
        if !ctx.receipts.is_empty() {
            ephemeral.push(receipt_event(&ctx.receipts));
        }
        if !newly && records.is_empty() && ephemeral.is_empty() && ctx.account_data.is_empty() {
            return Ok(None);
        }

        let timeline_ids: HashSet<_> = records.iter().map(|r| r.pdu.event_id.clone()).collect();
        let prev_batch = records
            .first()
            .map_or(ctx.next.pos, |r| StreamPos(r.stream_pos.0 - 1));
        let state_filter = &filter.room.state;
        let mut state_ids: Vec<_> = if newly {
            self.state_before(&records, &state).await?
        } else {
            state
                .entries()
                .filter(|e| since_pos.is_some_and(|s| e.pos > s))
                .map(|e| e.pdu.event_id.clone())
                .collect()
        };
        state_ids.retain(|id| !timeline_ids.contains(id));
        // Filter what the in-memory current state already describes before loading anything:
        // a lazy-loading sync of a big room then loads a handful of member events, not all.
        let known: HashMap<&ruma::EventId, &Pdu> = state
            .entries()
            .map(|e| (&*e.pdu.event_id, &*e.pdu))
            .collect();
        let lazy_wanted: Option<HashSet<&str>> = state_filter.lazy_load_members.then(|| {
            records
                .iter()
                .map(|r| r.pdu.sender.as_str())
                .chain([authed.user_id.as_str()])
                .collect()
        });
        state_ids.retain(|id| match known.get(&**id) {
            None => true,
            Some(pdu) => {
                let kind = pdu.kind.to_string();
                let lazily_dropped = kind == "m.room.member"
                    && lazy_wanted
                        .as_ref()
                        .is_some_and(|w| !pdu.state_key.as_deref().is_some_and(|k| w.contains(k)));
                !lazily_dropped && state_filter.allows(&kind, pdu.sender.as_str())
            }
        });
        let mut state_records = self.ctx.storage.get_events(&state_ids).await?;
        state_records
            .retain(|r| state_filter.allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str()));
        if state_filter.lazy_load_members {
            let mut wanted: HashSet<String> =
                records.iter().map(|r| r.pdu.sender.to_string()).collect();
            wanted.insert(authed.user_id.to_string());
            state_records.retain(|r| {
                r.pdu.kind.to_string() != "m.room.member"
                    || r.pdu.state_key.as_ref().is_some_and(|k| wanted.contains(k))
            });
            let have: HashSet<String> = state_records
                .iter()
                .filter_map(|r| r.pdu.state_key.clone())
                .collect();
            let missing: Vec<_> = records
                .iter()
                .map(|r| r.pdu.sender.to_string())
                .filter(|s| !have.contains(s))
                .filter_map(|s| {
                    state
                        .get(&StateEventType::RoomMember, &s)
                        .map(|e| e.pdu.event_id.clone())
                })
                .filter(|id| !timeline_ids.contains(id))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            state_records.extend(self.ctx.storage.get_events(&missing).await?);
        }
        records.retain(|r| {
            filter
                .room
                .timeline
                .allows(&r.pdu.kind.to_string(), r.pdu.sender.as_str())
        });

        let joined = state.joined_members();
        let invited = state.members_with(&[Membership::Invite]);
        let mut heroes: Vec<_> = joined
            .iter()
            .chain(invited.iter())
            .filter(|u| **u != authed.user_id)
            .map(|u| u.to_string())
            .collect();
        heroes.sort();
        heroes.truncate(5);

        let room = json!({
            "timeline": { "events": self.history.format_events(&records, Some((&authed.user_id, &authed.device_id))).await?, "limited": limited, "prev_batch": pagination_token(prev_batch) },
            "state": { "events": self.history.format_events(&state_records, None).await? },
            "ephemeral": { "events": ephemeral },
            "account_data": { "events": ctx.account_data },
            "summary": { "m.heroes": heroes, "m.joined_member_count": joined.len(), "m.invited_member_count": invited.len() },
        });
        Ok(Some((room, joined)))
    }

    /// Event IDs of the state before the first timeline event (current state if the timeline
    /// changes no state).
    async fn state_before(
        &self,
        timeline: &[EventRecord],
        state: &crate::rooms::RoomState,
    ) -> ServiceResult<Vec<ruma::OwnedEventId>> {
        let changes_state = timeline.iter().any(|r| r.pdu.state_key.is_some());
        let first_prev = timeline
            .first()
            .and_then(|r| r.pdu.prev_events.first().cloned());
        match (changes_state, first_prev) {
            // An outlier prev event (history from before our join) has no stored state.
            (true, Some(prev)) => match self
                .ctx
                .storage
                .get_event(&prev)
                .await?
                .filter(|r| r.outlier.is_none())
            {
                Some(prev) => Ok(self
                    .ctx
                    .storage
                    .state_at_snapshot(prev.state_snapshot)
                    .await?
                    .into_values()
                    .collect()),
                None => Ok(state.entries().map(|e| e.pdu.event_id.clone()).collect()),
            },
            (true, None) => Ok(Vec::new()),
            (false, _) => Ok(state.entries().map(|e| e.pdu.event_id.clone()).collect()),
        }
    }

    /// `rooms.invite` and `rooms.knock`: the room's stripped state plus the membership event.
    async fn stripped_room_state(&self, m: &MembershipRecord) -> ServiceResult<Vec<Value>> {
        let known = myelin_storage::RoomStore::room_info(self.ctx.storage.as_ref(), &m.room_id)
            .await?
            .is_some();
        if !known {
            // An invite to a room on another server: the state its server sent with it.
            return self.remote_stripped_state(m).await;
        }
        let state = self.rooms.room_state(&m.room_id).await?;
        let mut events: Vec<Value> = crate::format::STRIPPED_STATE_TYPES
            .iter()
            .filter_map(|k| state.get(&(*k).into(), ""))
            .map(|e| stripped_state(&e.pdu))
            .collect();
        if let Some(member) = self.ctx.storage.get_event(&m.event_id).await? {
            events.push(stripped_state(&member.pdu));
        }
        Ok(events)
    }

    /// The stripped state stored with a remote invite, plus the invite itself.
    async fn remote_stripped_state(&self, m: &MembershipRecord) -> ServiceResult<Vec<Value>> {
        let mut events: Vec<Value> = match self
            .ctx
            .storage
            .stripped_state(&m.room_id, &m.user_id)
            .await?
        {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Vec::new(),
        };
        if let Some(member) = self.ctx.storage.get_event(&m.event_id).await? {
            events.push(stripped_state(&member.pdu));
        }
        Ok(events)
    }

    /// `rooms.leave`: the timeline up to the leave, and the state at it.
    async fn left_room(
        &self,
        authed: &Authed,
        m: &MembershipRecord,
        since: Option<StreamPos>,
        filter: &Filter,
    ) -> ServiceResult<Value> {
        let limit = filter
            .room
            .timeline
            .limit
            .map_or(DEFAULT_TIMELINE_LIMIT, |l| l.clamp(1, 100) as usize);
        let mut records = self
            .ctx
            .storage
            .room_events(
                &m.room_id,
                m.stream_pos,
                since,
                Direction::Backward,
                limit + 1,
            )
            .await?;
        let limited = records.len() > limit;
        records.truncate(limit);
        records.reverse();
        let own_leave = records
            .iter()
            .find(|r| r.pdu.event_id == m.event_id)
            .cloned();
        let mut records = match self.rooms.room_state(&m.room_id).await {
            Ok(state) => {
                self.rooms
                    .history_view(&authed.user_id, state, Some(m))
                    .filter(records)
                    .await?
            }
            // A room on another server we never joined: nothing of it is ours to show.
            Err(ServiceError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        // The user always sees their own leave (or ban), which is what tells a client the room
        // was left; a rejected invite to a remote room has no more than that.
        if !records.iter().any(|r| r.pdu.event_id == m.event_id) {
            let leave = match own_leave {
                Some(leave) => Some(leave),
                None => self
                    .ctx
                    .storage
                    .get_event(&m.event_id)
                    .await?
                    .filter(|leave| leave.outlier == Some(myelin_storage::OutlierStatus::Outlier)),
            };
            records.extend(leave);
        }
        let prev_batch = records
            .first()
            .map_or(m.stream_pos, |r| StreamPos(r.stream_pos.0 - 1));
        Ok(json!({
            "timeline": { "events": self.history.format_events(&records, Some((&authed.user_id, &authed.device_id))).await?, "limited": limited, "prev_batch": pagination_token(prev_batch) },
            "state": { "events": [] },
            "account_data": { "events": [] },
        }))
    }
}

struct JoinedRoomCtx {
    since: Option<SyncToken>,
    next: SyncToken,
    full_state: bool,
    /// False when the room certainly has no event in `(since, next]`.
    has_new_events: bool,
    receipts: Vec<ReceiptRecord>,
    account_data: Vec<Value>,
}

/// One `m.receipt` event for a room: `{event_id: {type: {user: {ts, thread_id?}}}}`.
fn receipt_event(receipts: &[ReceiptRecord]) -> Value {
    let mut content: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
    for r in receipts {
        let mut data = json!({ "ts": r.ts });
        if let Some(thread) = &r.thread_id {
            data["thread_id"] = json!(thread);
        }
        content
            .entry(r.event_id.to_string())
            .or_default()
            .entry(r.receipt_type.clone())
            .or_default()
            .insert(r.user_id.to_string(), data);
    }
    json!({ "type": "m.receipt", "content": content })
}
