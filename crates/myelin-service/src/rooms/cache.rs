//! The rooms' in-memory current state: a cache bounded by count (least recently used out) that
//! holds only rooms known to exist, and the per-room slots carrying each room's write lock.
//!
//! Eviction must never give one room two write locks. A slot is therefore shared through a map
//! of weak references: while anyone holds a slot (a writer, a waiting writer, or the cache), every
//! lookup of the room finds that same slot; only once nobody holds it does the next lookup make
//! a fresh one, which reloads the state from storage. The cache keeps strong references to at
//! most `capacity` slots, and evicting one merely drops that reference.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, RwLock, Weak},
};

use ruma::{OwnedRoomId, RoomId};

use super::RoomState;

/// One room's write lock and published current state.
#[derive(Default)]
pub(crate) struct RoomSlot {
    /// Serialises event creation in the room: prev_events and depth come from the state it guards.
    pub(super) write: Arc<tokio::sync::Mutex<()>>,
    pub(super) current: RwLock<Option<Arc<RoomState>>>,
}

/// The live slots and the cached ones.
pub(crate) struct RoomCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

/// `live` is swept of dead entries once it has this many (and then at twice what remains).
const FIRST_SWEEP: usize = 1_024;

struct Inner {
    /// Every slot someone holds, cached or not.
    live: HashMap<OwnedRoomId, Weak<RoomSlot>>,
    /// Rooms known to exist, with the tick of their last use.
    cached: HashMap<OwnedRoomId, (Arc<RoomSlot>, u64)>,
    /// Last use → room, oldest first.
    by_use: BTreeMap<u64, OwnedRoomId>,
    tick: u64,
    sweep_at: usize,
}

impl RoomCache {
    pub(crate) fn new(capacity: usize) -> RoomCache {
        RoomCache {
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                cached: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: 0,
                sweep_at: FIRST_SWEEP,
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's slot: the cached one, or the one someone else holds, or a new empty one. A
    /// room that does not exist costs nothing once its caller drops the slot.
    pub(crate) fn slot(&self, room_id: &RoomId) -> Arc<RoomSlot> {
        let mut inner = self.lock();
        if let Some(slot) = inner.touch(room_id) {
            return slot;
        }
        if let Some(slot) = inner.live.get(room_id).and_then(Weak::upgrade) {
            return slot;
        }
        let slot = Arc::new(RoomSlot::default());
        inner.live.insert(room_id.to_owned(), Arc::downgrade(&slot));
        if inner.live.len() >= inner.sweep_at {
            inner.live.retain(|_, slot| slot.strong_count() > 0);
            inner.sweep_at = (inner.live.len() * 2).max(FIRST_SWEEP);
        }
        slot
    }

    /// Caches the room's live slot: called once its state is loaded or published, that is once
    /// the room is known to exist. Evicts the least recently used rooms beyond the capacity.
    pub(crate) fn keep(&self, room_id: &RoomId) {
        let mut inner = self.lock();
        if inner.touch(room_id).is_some() {
            return;
        }
        let Some(slot) = inner.live.get(room_id).and_then(Weak::upgrade) else {
            return;
        };
        let tick = inner.next_tick();
        inner.cached.insert(room_id.to_owned(), (slot, tick));
        inner.by_use.insert(tick, room_id.to_owned());
        while inner.cached.len() > self.capacity {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            inner.cached.remove(&oldest);
        }
    }

    /// How many rooms' state is cached.
    pub(crate) fn cached_len(&self) -> usize {
        self.lock().cached.len()
    }

    /// How many slots are tracked (cached, held by a request, or dead and not yet swept).
    #[cfg(test)]
    fn tracked_len(&self) -> usize {
        self.lock().live.len()
    }
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The cached slot of the room, marked as just used.
    fn touch(&mut self, room_id: &RoomId) -> Option<Arc<RoomSlot>> {
        let tick = self.next_tick();
        let (slot, used) = self.cached.get_mut(room_id)?;
        let previous = std::mem::replace(used, tick);
        let slot = slot.clone();
        self.by_use.remove(&previous);
        self.by_use.insert(tick, room_id.to_owned());
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: usize) -> OwnedRoomId {
        OwnedRoomId::try_from(format!("!r{n}:example.org")).unwrap()
    }

    #[test]
    fn unknown_rooms_leave_nothing_behind() {
        let cache = RoomCache::new(10);
        for n in 0..10_000 {
            drop(cache.slot(&room(n)));
        }
        assert_eq!(cache.cached_len(), 0);
        assert!(
            cache.tracked_len() <= FIRST_SWEEP,
            "{}",
            cache.tracked_len()
        );
    }

    #[test]
    fn capacity_evicts_the_least_recently_used() {
        let cache = RoomCache::new(2);
        for n in 0..3 {
            let _slot = cache.slot(&room(n));
            cache.keep(&room(n));
            if n == 1 {
                // Room 0 is used again, so room 1 is now the oldest.
                let _again = cache.slot(&room(0));
            }
        }
        assert_eq!(cache.cached_len(), 2);
        let inner = cache.lock();
        assert!(inner.cached.contains_key(&room(0)));
        assert!(!inner.cached.contains_key(&room(1)));
        assert!(inner.cached.contains_key(&room(2)));
    }

    #[test]
    fn an_evicted_room_in_use_keeps_its_one_slot() {
        let cache = RoomCache::new(1);
        let held = cache.slot(&room(0));
        cache.keep(&room(0));
        let _other = cache.slot(&room(1));
        cache.keep(&room(1));
        assert_eq!(cache.cached_len(), 1);
        // Room 0 was evicted while held: a lookup finds the same slot (the same write lock).
        assert!(Arc::ptr_eq(&held, &cache.slot(&room(0))));
        drop(held);
        // Once nobody holds it, a lookup makes a fresh slot.
        let fresh = cache.slot(&room(0));
        assert!(fresh.current.read().unwrap().is_none());
    }
}
