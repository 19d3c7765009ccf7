//! Room lists: each list's filters over the user's rooms, the order (latest bump first), the
//! count, and the rooms its ranges select; then every room to look at, with the plan its lists
//! and subscriptions combine to.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use ruma::OwnedRoomId;

use super::{
    candidates::RoomFacts,
    request::{ListConfig, ListFilters, RoomConfig},
    required_state::RequiredState,
};
use crate::rooms::Membership;

/// Timeline events per room at most, whatever `timeline_limit` asks.
const MAX_TIMELINE_LIMIT: u64 = 100;

/// What the lists came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Lists {
    /// Per list: how many rooms pass its filters.
    pub counts: BTreeMap<String, usize>,
    /// Per list: the rooms its ranges select, in list order.
    pub rooms: BTreeMap<String, Vec<OwnedRoomId>>,
}

/// Whether a room passes a list's filters. `space_children` are the children of the spaces
/// the filter names (read only when it names some).
pub(super) fn passes(
    room: &RoomFacts,
    filters: &ListFilters,
    space_children: &HashSet<OwnedRoomId>,
) -> bool {
    let is_invite = room.membership == Membership::Invite;
    let room_type = &room.room_type;
    filters.is_dm.is_none_or(|want| room.is_dm == want)
        && filters
            .is_encrypted
            .is_none_or(|want| room.is_encrypted == want)
        && filters.is_invite.is_none_or(|want| is_invite == want)
        && (filters.room_types.is_empty() || filters.room_types.contains(room_type))
        && !filters.not_room_types.contains(room_type)
        && (filters.spaces.is_empty() || space_children.contains(&room.room_id))
}

/// Latest bump first; ties by room ID so that the order is stable between requests.
pub(super) fn sort(rooms: &mut [&RoomFacts]) {
    rooms.sort_by(|a, b| {
        b.bump_stamp
            .cmp(&a.bump_stamp)
            .then_with(|| a.room_id.cmp(&b.room_id))
    });
}

/// The rooms of the inclusive `ranges` of a sorted list, each once, in list order.
pub(super) fn select(sorted: &[&RoomFacts], ranges: &[(u64, u64)]) -> Vec<OwnedRoomId> {
    let mut picked = vec![false; sorted.len()];
    for &(start, end) in ranges {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let end = usize::try_from(end).unwrap_or(usize::MAX);
        for slot in picked.iter_mut().take(end.saturating_add(1)).skip(start) {
            *slot = true;
        }
    }
    sorted
        .iter()
        .zip(picked)
        .filter(|(_, p)| *p)
        .map(|(r, _)| r.room_id.clone())
        .collect()
}

/// Every list of the request over `rooms`.
pub(super) fn compute(
    lists: &BTreeMap<String, ListConfig>,
    rooms: &[&RoomFacts],
    space_children: &HashSet<OwnedRoomId>,
) -> Lists {
    let mut out = Lists::default();
    for (name, list) in lists {
        let filters = list.filters.clone().unwrap_or_default();
        let mut passing: Vec<&RoomFacts> = rooms
            .iter()
            .copied()
            .filter(|r| passes(r, &filters, space_children))
            .collect();
        sort(&mut passing);
        out.counts.insert(name.clone(), passing.len());
        out.rooms
            .insert(name.clone(), select(&passing, &list.ranges));
    }
    out
}

/// What to send of one room: the combination of every list and subscription it is in,
/// shared by the rooms with the same combination.
#[derive(Debug)]
pub(super) struct RoomPlan {
    /// The longest timeline asked for.
    pub timeline_limit: u64,
    /// Every state entry any of them names (kept by the connection for each room sent, to
    /// tell what a later, different `required_state` adds).
    pub required_state: Arc<RequiredState>,
    /// Tells combinations apart (in this process) without keeping them per room.
    pub fingerprint: u64,
}

impl RoomPlan {
    fn of<'a>(configs: impl IntoIterator<Item = &'a RoomConfig>) -> RoomPlan {
        let mut timeline_limit = 0;
        let mut entries: Vec<&(String, String)> = Vec::new();
        for config in configs {
            timeline_limit = timeline_limit.max(config.timeline_limit);
            entries.extend(&config.required_state);
        }
        entries.sort();
        entries.dedup();
        let mut hasher = std::hash::DefaultHasher::new();
        entries.hash(&mut hasher);
        RoomPlan {
            timeline_limit,
            required_state: Arc::new(RequiredState::new(entries.iter().copied())),
            fingerprint: hasher.finish(),
        }
    }

    /// The timeline limit, bounded.
    pub(super) fn timeline_limit(&self) -> usize {
        self.timeline_limit.min(MAX_TIMELINE_LIMIT) as usize
    }
}

/// The rooms to look at (those in the lists' ranges, and those subscribed to that the user has
/// a membership in), each with its plan.
pub(super) fn relevant(
    lists: &BTreeMap<String, ListConfig>,
    selected: &Lists,
    subscriptions: &BTreeMap<OwnedRoomId, RoomConfig>,
    known: &HashSet<&OwnedRoomId>,
) -> BTreeMap<OwnedRoomId, Arc<RoomPlan>> {
    let mut in_lists: BTreeMap<&OwnedRoomId, Vec<&str>> = BTreeMap::new();
    for (name, rooms) in &selected.rooms {
        for room in rooms {
            in_lists.entry(room).or_default().push(name);
        }
    }
    let configs_of = |names: &[&str]| -> Vec<&RoomConfig> {
        names
            .iter()
            .filter_map(|n| lists.get(*n))
            .map(|l| &l.room)
            .collect()
    };
    // Rooms in the same lists share one plan.
    let mut shared: HashMap<Vec<&str>, Arc<RoomPlan>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (room, names) in &in_lists {
        let plan = shared
            .entry(names.clone())
            .or_insert_with(|| Arc::new(RoomPlan::of(configs_of(names))))
            .clone();
        out.insert((*room).clone(), plan);
    }
    for (room, subscription) in subscriptions {
        if known.contains(room) {
            let mut configs = in_lists.get(room).map_or_else(Vec::new, |n| configs_of(n));
            configs.push(subscription);
            out.insert(room.clone(), Arc::new(RoomPlan::of(configs)));
        }
    }
    out
}
