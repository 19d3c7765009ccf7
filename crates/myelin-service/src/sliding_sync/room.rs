//! One room's update: what changed in the room since this connection last sent it (all of it
//! the first time, or after the user joined), as the room's configuration asks: the timeline
//! through the history-visibility check, the required state, name, avatar, heroes, member
//! counts and bump stamp; the stripped state of an invite or knock.

use std::{collections::HashSet, sync::Arc};

use myelin_core::{Pdu, StreamPos};
use myelin_storage::{EventRecord, NotificationCounts, StateMap, TimelineSpan};
use ruma::{
    events::{StateEventType, TimelineEventType},
    OwnedEventId, OwnedUserId, RoomId, UserId,
};
use serde_json::Value;

use super::{
    candidates::RoomEntry,
    connection::RoomSent,
    lists::RoomPlan,
    pass::Pass,
    required_state::{timeline_members, RequiredState},
    response::{Hero, RoomResponse},
    window::Window,
    SlidingSync,
};
use crate::{
    format::client_event_of_pdu,
    rooms::{visibility::HistoryView, Membership, RoomState, StateEntry},
    sync::{pagination_token, prev_batch, stripped_room_state, timeline_of},
    ServiceResult,
};

/// Most members remembered per room as already sent for `$LAZY`; past it the memory starts
/// over (and a few member events are sent again). Bounds a connection's memory per room.
const MAX_LAZY_MEMBERS: usize = 50;
/// Most heroes of a room.
const MAX_HEROES: usize = 5;

/// A room to look at, with its plan and what was last sent of it.
pub(super) struct RoomJob<'a> {
    pub entry: &'a RoomEntry,
    pub plan: &'a RoomPlan,
    pub sent: Option<&'a RoomSent>,
}

/// What a room's look came to.
pub(super) struct RoomUpdate {
    pub response: RoomResponse,
    /// What the connection now holds of the room.
    pub sent: RoomSent,
    /// The timeline's events (a room sent afresh gets the receipts of these).
    pub timeline_ids: Vec<OwnedEventId>,
    /// Sent from scratch, or with a longer timeline than before.
    pub afresh: bool,
}

/// The timeline part of an update.
struct Timeline {
    records: Vec<EventRecord>,
    limited: bool,
    prev_batch: Option<String>,
    num_live: Option<usize>,
}

/// Which parts of the room's description changed since it was last sent.
#[derive(Debug, Clone, Copy)]
struct Changed {
    name: bool,
    avatar: bool,
    members: bool,
}

impl Changed {
    const ALL: Changed = Changed {
        name: true,
        avatar: true,
        members: true,
    };
}

/// How the room is sent this time.
struct Mode<'a> {
    /// First time on this connection (or just joined): the client replaces what it had.
    initial: bool,
    /// The timeline limit grew: a full timeline again, though not `initial`.
    expanded: bool,
    /// The whole required state, not only what changed.
    full_state: bool,
    /// The `required_state` the room was last sent with, when the request asks for another:
    /// what the new one adds goes out too (as Synapse does), not the whole state again.
    previous_spec: Option<&'a RequiredState>,
}

/// What a room's look comes to before anything is read: the plan step, made for every room of
/// the pass at once so that the reads of the build step are batched over all of them.
pub(super) enum Step<'a> {
    /// An invite or a knock: its stripped state.
    Invite { initial: bool },
    /// A room this server has no state of that the user left: only the leave.
    OutsideLeave { initial: bool },
    /// A joined room, or one just left: its timeline and state.
    Member(MemberStep<'a>),
}

/// A joined room's (or one just left's) update to build.
pub(super) struct MemberStep<'a> {
    state: &'a Arc<RoomState>,
    /// The last position the timeline reaches: now, or the user's leave.
    up_to: StreamPos,
    /// The timeline starts after here, when only what is new goes out.
    after: Option<StreamPos>,
    mode: Mode<'a>,
}

impl MemberStep<'_> {
    /// The stretch of timeline the update shows (the caller reads `limit + 1` events of it).
    pub(super) fn span(&self, room_id: &RoomId) -> TimelineSpan {
        TimelineSpan {
            room_id: room_id.to_owned(),
            from: self.up_to,
            floor: self.after,
        }
    }
}

/// The room's step, or `None` when nothing changed since it was last sent.
pub(super) fn plan_room<'a>(pass: &Pass<'_>, job: &RoomJob<'a>) -> Option<Step<'a>> {
    let RoomJob { entry, plan, sent } = *job;
    let moved = sent.is_some_and(|s| entry.record.stream_pos > s.pos);
    let joined = entry.facts.membership == Membership::Join;
    // A profile change is a new member event too, but only a join is a new start.
    let initial = sent.is_none_or(|s| joined && s.membership != Membership::Join);
    if matches!(
        entry.facts.membership,
        Membership::Invite | Membership::Knock
    ) {
        return (initial || moved).then_some(Step::Invite { initial });
    }
    let Some(state) = &entry.state else {
        return (initial || moved).then_some(Step::OutsideLeave { initial });
    };
    let expanded = !initial && sent.is_some_and(|s| s.timeline_limit < plan.timeline_limit);
    let reconfigured = sent.is_some_and(|s| s.required_state != plan.fingerprint);
    let up_to = if joined {
        pass.now
    } else {
        entry.record.stream_pos
    };
    let since = sent.map(|s| s.pos);
    let has_events = since.is_none_or(|s| state.last_pos > s && up_to > s);
    if !(initial || expanded || reconfigured || moved || has_events) {
        return None;
    }
    let mode = Mode {
        initial,
        expanded,
        full_state: initial || !joined,
        previous_spec: sent.filter(|_| reconfigured).map(|s| s.state_spec.as_ref()),
    };
    let after = (!initial && !expanded).then_some(since).flatten();
    Some(Step::Member(MemberStep {
        state,
        up_to,
        after,
        mode,
    }))
}

impl SlidingSync {
    /// The room's update by its step, from what `window` read for all the pass's rooms.
    pub(super) async fn room_update(
        &self,
        pass: &Pass<'_>,
        job: RoomJob<'_>,
        step: Step<'_>,
        window: &Window,
    ) -> ServiceResult<RoomUpdate> {
        let RoomJob { entry, plan, sent } = job;
        match step {
            Step::Invite { initial } => self.invite_update(pass, entry, plan, initial).await,
            Step::OutsideLeave { initial } => self.outside_leave(entry, plan, pass, initial).await,
            Step::Member(step) => {
                self.member_update(pass, (entry, plan, sent), step, window)
                    .await
            }
        }
    }

    /// A joined room, or one just left (up to the leave).
    async fn member_update(
        &self,
        pass: &Pass<'_>,
        (entry, plan, sent): (&RoomEntry, &RoomPlan, Option<&RoomSent>),
        step: MemberStep<'_>,
        window: &Window,
    ) -> ServiceResult<RoomUpdate> {
        let MemberStep {
            state, up_to, mode, ..
        } = step;
        let mut view = self
            .rooms
            .history_view(&pass.authed.user_id, state.clone(), Some(&entry.record))
            .ignoring(pass.ignored.clone());
        let limit = plan.timeline_limit();
        let raw = window.timeline(&entry.facts.room_id);
        let timeline = timeline(pass, &mut view, raw, limit, up_to).await?;
        let spec = &plan.required_state;
        let me = &pass.authed.user_id;
        let lazy = timeline_members(&timeline.records);
        let joined = entry.facts.membership == Membership::Join;
        let (picked, changed) = if mode.full_state && !joined {
            let ids = self.state_at_leave_ids(entry, spec, me, &lazy).await?;
            (Picked::Stored(ids), Changed::ALL)
        } else if mode.full_state {
            let entries = spec.pick(state, me.as_str(), &lazy);
            (Picked::Current(entries), Changed::ALL)
        } else {
            let since = sent.map_or(StreamPos::ZERO, |s| s.pos);
            let known = sent.map(|s| &s.lazy_members);
            let (mut entries, changed) =
                delta_state(state, since, spec, me, &lazy, timeline.limited, known);
            if let Some(previous) = mode.previous_spec {
                let held = Held {
                    spec: previous,
                    lazy: known,
                };
                add_newly_wanted(state, spec, &held, me, &lazy, &mut entries);
            }
            (Picked::Current(entries), changed)
        };
        let changed = if mode.initial { Changed::ALL } else { changed };
        let (required_state, sent_members) = match picked {
            Picked::Current(entries) => (
                self.format_current(&entries).await?,
                members_of(entries.iter().map(|e| &*e.pdu)),
            ),
            Picked::Stored(ids) => {
                let records = self.ctx.storage.get_events(&ids).await?;
                (
                    self.history.format_events(&records, None).await?,
                    members_of(records.iter().map(|r| &r.pdu)),
                )
            }
        };
        let lazy_members = remember_lazy(sent, &mode, state, sent_members, sent.map(|s| s.pos));
        // Without a gap, the client still holds the longer timeline it had.
        let timeline_limit = match sent {
            Some(s) if !mode.initial && !timeline.limited => {
                s.timeline_limit.max(plan.timeline_limit)
            }
            _ => plan.timeline_limit,
        };
        let sent = RoomSent {
            timeline_limit,
            lazy_members,
            ..fresh_sent(pass, entry, plan)
        };
        let viewer = (&*pass.authed.user_id, &*pass.authed.device_id);
        // A former member's aggregations stop at their leave.
        let read_up_to = (!joined).then_some(up_to);
        let mut response = describe(entry, state, me, changed, &mode);
        response.timeline = self
            .history
            .format_timeline_known(
                &timeline.records,
                viewer,
                (&mut view, read_up_to),
                &window.related,
            )
            .await?;
        response.required_state = required_state;
        response.prev_batch = timeline.prev_batch;
        response.limited = timeline.limited;
        response.num_live = timeline.num_live;
        if joined {
            let counts = self.unread(pass, &entry.facts.room_id, window).await?;
            response.notification_count = Some(counts.notifications);
            response.highlight_count = Some(counts.highlights);
        }
        Ok(RoomUpdate {
            response,
            sent,
            timeline_ids: timeline
                .records
                .iter()
                .map(|r| r.pdu.event_id.clone())
                .collect(),
            afresh: mode.initial || mode.expanded,
        })
    }

    /// The user's unread counts in a joined room: as the window read them (else read now).
    async fn unread(
        &self,
        pass: &Pass<'_>,
        room_id: &RoomId,
        window: &Window,
    ) -> ServiceResult<NotificationCounts> {
        match window.counts(room_id) {
            Some(counts) => Ok(counts),
            None => Ok(self
                .push
                .unread_counts(&pass.authed.user_id, room_id)
                .await?
                .total()),
        }
    }

    /// The wanted state at the leave of a room left.
    async fn state_at_leave_ids(
        &self,
        entry: &RoomEntry,
        spec: &RequiredState,
        me: &UserId,
        lazy: &HashSet<&str>,
    ) -> ServiceResult<Vec<OwnedEventId>> {
        let at_leave = self.state_at(&entry.record.event_id).await?;
        let mut ids: Vec<OwnedEventId> = at_leave
            .into_iter()
            .filter(|((kind, key), _)| spec.wants(kind, key, me.as_str(), lazy))
            .map(|(_, id)| id)
            .collect();
        // The client learns of the leave from the user's own member event.
        if !ids.contains(&entry.record.event_id) {
            ids.push(entry.record.event_id.clone());
        }
        Ok(ids)
    }

    /// Current state entries in the client format, as [`crate::History::format_events`] gives
    /// their stored events: from memory, reading only the redactions of redacted ones.
    async fn format_current(&self, entries: &[&StateEntry]) -> ServiceResult<Vec<Value>> {
        let now = self.ctx.now_ms();
        let redactions = self
            .history
            .formatted_redactions(entries.iter().filter_map(|e| e.redacted_by.clone()), now)
            .await?;
        Ok(entries
            .iter()
            .map(|e| {
                let because = e.redacted_by.as_ref().and_then(|id| redactions.get(id));
                client_event_of_pdu(&e.pdu, now, because.cloned())
            })
            .collect())
    }

    /// The room's state after an event (empty for an event outside the timeline).
    async fn state_at(&self, event_id: &ruma::EventId) -> ServiceResult<StateMap> {
        match self.ctx.storage.get_event(event_id).await? {
            Some(r) if r.outlier.is_none() => {
                Ok(self.ctx.storage.state_at_snapshot(r.state_snapshot).await?)
            }
            _ => Ok(StateMap::new()),
        }
    }

    /// An invite or a knock: its stripped state.
    async fn invite_update(
        &self,
        pass: &Pass<'_>,
        entry: &RoomEntry,
        plan: &RoomPlan,
        initial: bool,
    ) -> ServiceResult<RoomUpdate> {
        let invite_state = stripped_room_state(&self.ctx, &self.rooms, &entry.record).await?;
        let name = invite_state
            .iter()
            .find(|e| e["type"] == "m.room.name")
            .and_then(|e| e["content"]["name"].as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let response = RoomResponse {
            name,
            initial: initial.then_some(true),
            is_dm: entry.facts.is_dm.then_some(true),
            invite_state: Some(invite_state),
            bump_stamp: Some(entry.facts.bump_stamp),
            ..RoomResponse::default()
        };
        Ok(RoomUpdate {
            response,
            sent: fresh_sent(pass, entry, plan),
            timeline_ids: Vec::new(),
            afresh: initial,
        })
    }

    /// A room this server has no state of that the user left (a rejected invite to, or a
    /// withdrawn knock on, a room elsewhere): only the leave.
    async fn outside_leave(
        &self,
        entry: &RoomEntry,
        plan: &RoomPlan,
        pass: &Pass<'_>,
        initial: bool,
    ) -> ServiceResult<RoomUpdate> {
        let leave: Vec<EventRecord> = self
            .ctx
            .storage
            .get_event(&entry.record.event_id)
            .await?
            .into_iter()
            .collect();
        let events = self.history.format_events(&leave, None).await?;
        let response = RoomResponse {
            initial: initial.then_some(true),
            timeline: events.clone(),
            required_state: events,
            bump_stamp: Some(entry.facts.bump_stamp),
            ..RoomResponse::default()
        };
        Ok(RoomUpdate {
            response,
            sent: fresh_sent(pass, entry, plan),
            timeline_ids: Vec::new(),
            afresh: initial,
        })
    }
}

/// The timeline of an update from the newest events read (up to `limit + 1`, newest first):
/// those `view` shows, at most `limit`.
async fn timeline(
    pass: &Pass<'_>,
    view: &mut HistoryView<'_>,
    raw: Vec<EventRecord>,
    limit: usize,
    up_to: StreamPos,
) -> ServiceResult<Timeline> {
    if limit == 0 {
        return Ok(Timeline {
            records: Vec::new(),
            limited: false,
            prev_batch: None,
            num_live: None,
        });
    }
    let (raw, limited) = timeline_of(raw, limit);
    let prev_batch = pagination_token(prev_batch(&raw, up_to));
    let records = view.filter(raw).await?;
    // Live: new since the request's `pos` (not merely new to this connection).
    let num_live = pass.prev.map_or(0, |p| {
        records
            .iter()
            .rev()
            .take_while(|r| r.stream_pos > p.stream)
            .count()
    });
    Ok(Timeline {
        records,
        limited,
        prev_batch: Some(prev_batch),
        num_live: Some(num_live),
    })
}

/// The state entries an update sends: of the current state in memory (a joined room), or
/// stored events (the state at a leave).
enum Picked<'a> {
    Current(Vec<&'a StateEntry>),
    Stored(Vec<OwnedEventId>),
}

/// The users whose member event is among `pdus`.
fn members_of<'a>(pdus: impl Iterator<Item = &'a Pdu>) -> Vec<OwnedUserId> {
    pdus.filter(|p| p.kind == TimelineEventType::RoomMember)
        .filter_map(|p| OwnedUserId::try_from(p.state_key.as_deref()?).ok())
        .collect()
}

/// What the connection holds of a room just sent by `plan`.
fn fresh_sent(pass: &Pass<'_>, entry: &RoomEntry, plan: &RoomPlan) -> RoomSent {
    RoomSent {
        pos: pass.now,
        membership: entry.facts.membership,
        timeline_limit: plan.timeline_limit,
        required_state: plan.fingerprint,
        state_spec: plan.required_state.clone(),
        lazy_members: HashSet::new(),
    }
}

/// What the client holds of a room's state: what `spec` asked for, with `lazy` the members
/// `$LAZY` sent it.
struct Held<'a> {
    spec: &'a RequiredState,
    lazy: Option<&'a HashSet<OwnedUserId>>,
}

/// Adds to `picked` the current state entries `spec` wants that the client does not hold:
/// those its previous `required_state` did not ask for.
fn add_newly_wanted<'a>(
    state: &'a RoomState,
    spec: &RequiredState,
    held: &Held<'_>,
    me: &UserId,
    lazy: &HashSet<&str>,
    picked: &mut Vec<&'a StateEntry>,
) {
    let held_lazy: HashSet<&str> = held
        .lazy
        .into_iter()
        .flatten()
        .map(|u| u.as_str())
        .collect();
    let mut have: HashSet<OwnedEventId> = picked.iter().map(|e| e.pdu.event_id.clone()).collect();
    for e in state.entries() {
        if wants_entry(spec, e, me, lazy)
            && !wants_entry(held.spec, e, me, &held_lazy)
            && have.insert(e.pdu.event_id.clone())
        {
            picked.push(e);
        }
    }
}

fn wants_entry(spec: &RequiredState, e: &StateEntry, me: &UserId, lazy: &HashSet<&str>) -> bool {
    let key = e.pdu.state_key.as_deref().unwrap_or_default();
    spec.wants(&e.pdu.kind.to_string(), key, me.as_str(), lazy)
}

/// The wanted state entries that changed since `since`, plus the member events of the
/// timeline's members the client was not sent yet (`$LAZY`); and what the changes touch.
/// Without a gap in the timeline, every member change goes out under `$LAZY` (a client that
/// loaded the whole member list keeps it right).
fn delta_state<'a>(
    state: &'a RoomState,
    since: StreamPos,
    spec: &RequiredState,
    me: &UserId,
    lazy: &HashSet<&str>,
    limited: bool,
    known_lazy: Option<&HashSet<OwnedUserId>>,
) -> (Vec<&'a StateEntry>, Changed) {
    let changed: Vec<&StateEntry> = state.entries().filter(|e| e.pos > since).collect();
    let is = |e: &StateEntry, kind: StateEventType| e.pdu.kind.to_string() == kind.to_string();
    let touched = Changed {
        name: changed.iter().any(|e| is(e, StateEventType::RoomName)),
        avatar: changed.iter().any(|e| is(e, StateEventType::RoomAvatar)),
        members: changed.iter().any(|e| e.member.is_some()),
    };
    let mut wanted_lazy = lazy.clone();
    if spec.lazy_members() && !limited {
        wanted_lazy.extend(
            changed
                .iter()
                .filter_map(|e| e.member.as_ref().map(|(u, _)| u.as_str())),
        );
    }
    let mut picked: Vec<&StateEntry> = changed
        .iter()
        .copied()
        .filter(|e| wants_entry(spec, e, me, &wanted_lazy))
        .collect();
    if spec.lazy_members() {
        for user in lazy {
            let already = known_lazy.is_some_and(|k| k.iter().any(|u| u.as_str() == *user));
            if already {
                continue;
            }
            if let Some(e) = state.get(&StateEventType::RoomMember, user) {
                if !picked.iter().any(|p| p.pdu.event_id == e.pdu.event_id) {
                    picked.push(e);
                }
            }
        }
    }
    (picked, touched)
}

/// The members the client now holds the member event of, for `$LAZY`: those sent now, and
/// (unless the state was sent whole) those sent before whose member event has not changed.
fn remember_lazy(
    sent: Option<&RoomSent>,
    mode: &Mode,
    state: &RoomState,
    sent_now: Vec<OwnedUserId>,
    since: Option<StreamPos>,
) -> HashSet<OwnedUserId> {
    let mut members = match sent {
        Some(s) if !mode.full_state => s.lazy_members.clone(),
        _ => HashSet::new(),
    };
    if let Some(since) = since {
        members.retain(|u| {
            state
                .get(&StateEventType::RoomMember, u.as_str())
                .is_none_or(|e| e.pos <= since)
        });
    }
    members.extend(sent_now);
    if members.len() > MAX_LAZY_MEMBERS {
        members.clear();
    }
    members
}

/// Name, avatar, heroes, counts, bump stamp and DM flag: what changed of them (all of it the
/// first time).
fn describe(
    entry: &RoomEntry,
    state: &RoomState,
    me: &UserId,
    changed: Changed,
    mode: &Mode,
) -> RoomResponse {
    let joined = entry.facts.membership == Membership::Join;
    let name = room_name(state);
    let avatar = if mode.initial {
        room_avatar(state).map(Some)
    } else if changed.avatar {
        // `null` tells the client the avatar is gone.
        Some(room_avatar(state))
    } else {
        None
    };
    let members_news = joined && changed.members;
    RoomResponse {
        name: name.clone().filter(|_| changed.name),
        avatar,
        initial: mode.initial.then_some(true),
        unstable_expanded_timeline: mode.expanded,
        is_dm: entry.facts.is_dm.then_some(true),
        joined_count: members_news.then(|| count_members(state, Membership::Join)),
        invited_count: members_news.then(|| count_members(state, Membership::Invite)),
        bump_stamp: Some(entry.facts.bump_stamp),
        heroes: (members_news && name.is_none()).then(|| heroes(state, me)),
        ..RoomResponse::default()
    }
}

/// How many members have the membership (what `RoomState::members_with` would list).
fn count_members(state: &RoomState, membership: Membership) -> usize {
    state
        .member_entries()
        .filter(|(_, e)| e.membership() == Some(membership))
        .count()
}

/// `m.room.name`'s name; an empty or missing one is no name.
fn room_name(state: &RoomState) -> Option<String> {
    state_string(state, StateEventType::RoomName, "name")
}

fn room_avatar(state: &RoomState) -> Option<String> {
    state_string(state, StateEventType::RoomAvatar, "url")
}

fn state_string(state: &RoomState, kind: StateEventType, field: &str) -> Option<String> {
    let content = state.content(&kind, "")?;
    let value = content.get(field)?.as_str()?;
    (!value.is_empty()).then(|| value.to_owned())
}

/// Up to five other members to name an unnamed room after: joined and invited ones, in the
/// order they came; if there are none, those who left or were banned.
pub(super) fn heroes(state: &RoomState, me: &UserId) -> Vec<Hero> {
    let others: Vec<(&UserId, &StateEntry)> =
        state.member_entries().filter(|(u, _)| *u != me).collect();
    let present = |m: Option<Membership>| matches!(m, Some(Membership::Join | Membership::Invite));
    let mut chosen: Vec<&(&UserId, &StateEntry)> = others
        .iter()
        .filter(|(_, e)| present(e.membership()))
        .collect();
    if chosen.is_empty() {
        chosen = others.iter().collect();
    }
    chosen.sort_by(|(a, ea), (b, eb)| (ea.pos, a.as_str()).cmp(&(eb.pos, b.as_str())));
    chosen
        .into_iter()
        .take(MAX_HEROES)
        .map(|(user, e)| {
            let content = e.pdu.content_value();
            let text = |field: &str| {
                content
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            Hero {
                user_id: (*user).to_owned(),
                displayname: text("displayname"),
                avatar_url: text("avatar_url"),
            }
        })
        .collect()
}
