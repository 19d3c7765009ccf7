//! The writer's copy of `push_members`: the member numbers of the rooms written to lately, so
//! that a message does not look up every member it notifies. Only the writer thread uses it.
//! It is dropped whole when a write or a group commit fails, because it may then hold numbers
//! whose rows were rolled back.

use std::collections::HashMap;
use std::sync::Mutex;

use myelin_storage::{MemberNumber, MemberNumbers, NewPushAction};

/// How many (room, user) numbers are kept; past it the cache starts over.
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub(crate) struct MemberNumberCache {
    rooms: Mutex<Numbers>,
}

#[derive(Default)]
struct Numbers {
    by_room: HashMap<String, HashMap<String, MemberNumber>>,
    len: usize,
}

impl MemberNumberCache {
    /// The known numbers of the users `actions` notify in the room, one entry per action in
    /// the same order (no map keyed by freshly copied IDs: this runs for every message).
    pub(crate) fn known(
        &self,
        room_id: &str,
        actions: &[NewPushAction],
    ) -> Vec<Option<MemberNumber>> {
        let numbers = self.lock();
        let room = numbers.by_room.get(room_id);
        actions
            .iter()
            .map(|a| room.and_then(|room| room.get(a.user_id.as_str()).copied()))
            .collect()
    }

    /// Remembers numbers read or assigned in the running write.
    pub(crate) fn remember(&self, room_id: &str, found: &MemberNumbers) {
        let mut numbers = self.lock();
        if numbers.len + found.len() > CAPACITY {
            *numbers = Numbers::default();
        }
        let room = numbers.by_room.entry(room_id.to_owned()).or_default();
        let before = room.len();
        room.extend(found.iter().map(|(u, n)| (u.clone(), *n)));
        let added = room.len() - before;
        numbers.len += added;
    }

    /// Forgets everything: a write or a commit failed.
    pub(crate) fn clear(&self) {
        *self.lock() = Numbers::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Numbers> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}
