//! One pass: everything that changed for this connection between the version the request
//! names and now: the user's rooms, the lists over them, an update of each room in range or
//! subscribed to that has news, the extensions, and the connection state after it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use futures_util::StreamExt;
use myelin_core::StreamPos;
use myelin_storage::MembershipRecord;
use ruma::{OwnedRoomId, OwnedUserId, RoomId};

use super::{
    candidates::RoomEntry,
    connection::{ConnState, StateEdit, Version},
    extensions::Scope,
    lists::{self, Lists, RoomPlan},
    request::SlidingSyncRequest,
    response::{ListCount, SlidingSyncResponse},
    room::{plan_room, RoomJob, RoomUpdate, Step},
    window::WindowRoom,
    SlidingSync,
};
use crate::{accounts::Authed, ServiceResult};

/// How many rooms' updates are built at once.
const ROOMS_AT_ONCE: usize = 8;

/// What every step of a pass reads: who syncs, from which version, up to where.
pub(super) struct Pass<'a> {
    pub authed: &'a Authed,
    /// The version the request continues from; `None` for a new connection.
    pub prev: Option<&'a Version>,
    /// The stream position this pass covers.
    pub now: StreamPos,
    /// The typing serial it covers.
    pub typing: u64,
    /// Users the syncing user ignores: their messages and invites are not shown.
    pub ignored: Arc<HashSet<OwnedUserId>>,
}

/// What a pass leaves for the connection's next version.
pub(super) struct Next {
    pub stream: StreamPos,
    pub typing: u64,
    pub state: Arc<ConnState>,
}

/// The rooms a pass looks at: the user's rooms, the lists over them, and the plan of each room
/// in a list's ranges or subscribed to.
struct View {
    entries: Vec<RoomEntry>,
    lists: Lists,
    relevant: BTreeMap<OwnedRoomId, Arc<RoomPlan>>,
}

impl SlidingSync {
    /// One response for `req` after `prev` (its `pos` is filled in when it is recorded).
    pub(super) async fn build(
        &self,
        authed: &Authed,
        req: &SlidingSyncRequest,
        prev: Option<&Version>,
    ) -> ServiceResult<(SlidingSyncResponse, Next)> {
        let user_id = &authed.user_id;
        let storage = self.ctx.storage.as_ref();
        // Independent reads, side by side (on PostgreSQL a round trip each).
        let now = async { ServiceResult::Ok(storage.current_stream_pos().await?) };
        let memberships = async { ServiceResult::Ok(storage.memberships_of_user(user_id).await?) };
        let (now, ignored, direct, memberships) = futures_util::try_join!(
            now,
            self.users.ignored_users(user_id),
            self.direct_rooms(user_id),
            memberships,
        )?;
        let pass = Pass {
            authed,
            prev,
            now,
            typing: self.ephemeral.typing.serial(self.ctx.now_ms()),
            ignored,
        };
        let mut state = StateEdit::new(prev.map(|p| p.state.clone()).unwrap_or_default());
        let view = self.view(&pass, req, (direct, memberships)).await?;
        let updates = self
            .room_updates(&pass, &view.entries, &view.relevant, &state)
            .await?;
        let mut response = SlidingSyncResponse {
            lists: view
                .lists
                .counts
                .iter()
                .map(|(name, count)| (name.clone(), ListCount { count: *count }))
                .collect(),
            ..SlidingSyncResponse::default()
        };
        let mut afresh = HashMap::new();
        for (room_id, update) in updates {
            if update.afresh {
                afresh.insert(room_id.clone(), update.timeline_ids);
            }
            if update.response.has_news() {
                response.rooms.insert(room_id.clone(), update.response);
            }
            state.edit().rooms.insert(room_id, update.sent);
        }
        let scope = Scope {
            lists: &view.lists.rooms,
            relevant: view.relevant.keys().cloned().collect(),
            afresh,
        };
        response.extensions = self
            .extensions(&pass, &req.extensions, &scope, &mut state)
            .await?;
        let next = Next {
            stream: pass.now,
            typing: pass.typing,
            state: state.finish(),
        };
        Ok((response, next))
    }

    /// The user's rooms, the lists over them, and the rooms to look at.
    /// `read` is what the user's rooms are made of: the rooms `m.direct` names, and the
    /// user's memberships.
    async fn view(
        &self,
        pass: &Pass<'_>,
        req: &SlidingSyncRequest,
        read: (HashSet<OwnedRoomId>, Vec<MembershipRecord>),
    ) -> ServiceResult<View> {
        let entries = self.candidates(pass, &req.room_subscriptions, read).await?;
        let spaces: HashSet<&RoomId> = req
            .lists
            .values()
            .filter_map(|l| l.filters.as_ref())
            .flat_map(|f| f.spaces.iter().map(|s| &**s))
            .collect();
        let children = if spaces.is_empty() {
            HashSet::new()
        } else {
            self.space_children(&entries, &spaces).await?
        };
        // Left rooms are there only for subscriptions, or to be shown once when just left.
        let listed: Vec<_> = entries
            .iter()
            .filter(|e| shown_in_lists(e, pass.prev))
            .map(|e| &e.facts)
            .collect();
        let lists = lists::compute(&req.lists, &listed, &children);
        let known: HashSet<&OwnedRoomId> = entries.iter().map(|e| &e.facts.room_id).collect();
        let relevant = lists::relevant(&req.lists, &lists, &req.room_subscriptions, &known);
        Ok(View {
            entries,
            lists,
            relevant,
        })
    }

    /// The update of every room looked at, rooms without news left out: each room's step is
    /// planned first, the window's reads done for all of them at once, then the updates built
    /// a few at a time.
    async fn room_updates(
        &self,
        pass: &Pass<'_>,
        entries: &[RoomEntry],
        relevant: &BTreeMap<OwnedRoomId, Arc<RoomPlan>>,
        state: &StateEdit,
    ) -> ServiceResult<Vec<(OwnedRoomId, RoomUpdate)>> {
        let by_id: HashMap<&OwnedRoomId, &RoomEntry> =
            entries.iter().map(|e| (&e.facts.room_id, e)).collect();
        let sent = &state.get().rooms;
        let mut planned = Vec::new();
        for (room_id, plan) in relevant {
            let Some(entry) = by_id.get(room_id).copied() else {
                continue;
            };
            let job = RoomJob {
                entry,
                plan,
                sent: sent.get(room_id),
            };
            if let Some(step) = plan_room(pass, &job) {
                planned.push((room_id, job, step));
            }
        }
        let window = self.read_window(pass, window_rooms(&planned)).await?;
        let window = &window;
        // Futures gathered in a loop (not a closure), so that the whole stays `Send`.
        let mut jobs = Vec::new();
        for (room_id, job, step) in planned {
            let update = self.room_update(pass, job, step, window);
            jobs.push(async move { (room_id, update.await) });
        }
        let mut built = futures_util::stream::iter(jobs).buffered(ROOMS_AT_ONCE);
        let mut out = Vec::new();
        while let Some((room_id, update)) = built.next().await {
            out.push((room_id.clone(), update?));
        }
        Ok(out)
    }
}

/// What the window reads for the planned rooms: the timeline of each joined or left room (one
/// event more than shown, to tell whether there were more), the counts of each joined one.
fn window_rooms(planned: &[(&OwnedRoomId, RoomJob<'_>, Step<'_>)]) -> Vec<WindowRoom> {
    planned
        .iter()
        .filter_map(|(room_id, job, step)| {
            let Step::Member(member) = step else {
                return None;
            };
            let limit = job.plan.timeline_limit();
            Some(WindowRoom {
                room_id: (*room_id).clone(),
                timeline: (limit > 0).then(|| (member.span(room_id), limit + 1)),
                counts: job.entry.facts.membership == crate::rooms::Membership::Join,
            })
        })
        .collect()
}

/// Whether a room goes into the lists: anything but a leave, and a leave only when it is new
/// since the request's `pos` (subscriptions reach left rooms without it).
fn shown_in_lists(entry: &RoomEntry, prev: Option<&Version>) -> bool {
    use crate::rooms::Membership;
    match entry.facts.membership {
        Membership::Leave | Membership::Ban => {
            prev.is_some_and(|p| entry.record.stream_pos > p.stream)
        }
        _ => true,
    }
}
