//! Room lists: each list's filters over the user's rooms, the order (latest bump first), the
//! count, and the rooms its ranges select; then every room to look at, with the configuration
//! its lists and subscriptions combine to.

use std::collections::{BTreeMap, HashSet};

use ruma::OwnedRoomId;

use super::{
    candidates::RoomFacts,
    request::{ListConfig, ListFilters, RoomConfig},
};
use crate::rooms::Membership;

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

/// The rooms to look at (those in the lists' ranges and those subscribed to that the user has
/// a membership in), each with the combined configuration of every list and subscription it
/// is in.
pub(super) fn relevant(
    lists: &BTreeMap<String, ListConfig>,
    selected: &Lists,
    subscriptions: &BTreeMap<OwnedRoomId, RoomConfig>,
    known: &HashSet<&OwnedRoomId>,
) -> BTreeMap<OwnedRoomId, RoomConfig> {
    let mut out: BTreeMap<OwnedRoomId, RoomConfig> = BTreeMap::new();
    let mut add = |room: &OwnedRoomId, config: &RoomConfig| match out.get_mut(room) {
        Some(existing) => existing.combine(config),
        None => {
            out.insert(room.clone(), config.clone());
        }
    };
    for (name, rooms) in &selected.rooms {
        if let Some(list) = lists.get(name) {
            for room in rooms {
                add(room, &list.room);
            }
        }
    }
    for (room, config) in subscriptions {
        if known.contains(room) {
            add(room, config);
        }
    }
    // One order, so that a configuration compares equal to the same one sent again.
    for config in out.values_mut() {
        config.required_state.sort();
        config.required_state.dedup();
    }
    out
}
