//! Bump stamps: the stream position of a room's latest event of a type that moves the room up
//! a client's list (a message, not a reaction, receipt or state change). Found for all the
//! rooms of a request at once, by one storage call that walks each room back (bounded) from its
//! newest event, and kept per room in memory (bounded, least recently used out), so that a
//! later request walks back only over the events that came since.

use std::sync::Mutex;

use myelin_core::StreamPos;
use myelin_storage::{Storage, TimelineSpan};
use ruma::{OwnedRoomId, RoomId};

use super::lru::Lru;
use crate::ServiceResult;

/// The event types that bump a room (Synapse's list: creation, messages, encrypted messages,
/// stickers, call invites, poll starts, live location shares), stable and unstable names.
const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "org.matrix.msc3381.poll.start",
    "m.beacon_info",
    "org.matrix.msc3672.beacon_info",
];

/// Events walked at most for one room; a room whose last bump lies further back has none
/// (the caller falls back to the user's membership position).
const MAX_WALK: usize = 1_000;

#[derive(Debug, Clone, Copy)]
struct Known {
    /// Every event up to here was looked at.
    checked_up_to: StreamPos,
    stamp: Option<StreamPos>,
}

pub(super) struct BumpStamps {
    known: Mutex<Lru<OwnedRoomId, Known>>,
}

impl BumpStamps {
    pub(super) fn new(capacity: usize) -> Self {
        BumpStamps {
            known: Mutex::new(Lru::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<OwnedRoomId, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bump stamp of each room given its newest event's position, in the order given, if
    /// a bump event is found: from memory, else by one storage call for all the others.
    pub(super) async fn of_many(
        &self,
        storage: &dyn Storage,
        rooms: &[(&RoomId, StreamPos)],
    ) -> ServiceResult<Vec<Option<StreamPos>>> {
        let mut out = Vec::with_capacity(rooms.len());
        // Rooms to walk: their index in `out`, and what was known of them.
        let mut missing: Vec<(usize, Option<Known>)> = Vec::new();
        let mut spans = Vec::new();
        {
            let mut known = self.lock();
            for (i, &(room_id, newest)) in rooms.iter().enumerate() {
                let k = known.get_mut(room_id).copied();
                match k.filter(|k| k.checked_up_to >= newest) {
                    Some(k) => out.push(k.stamp),
                    None => {
                        out.push(None);
                        missing.push((i, k));
                        spans.push(TimelineSpan {
                            room_id: room_id.to_owned(),
                            from: newest,
                            floor: k.map(|k| k.checked_up_to),
                        });
                    }
                }
            }
        }
        if spans.is_empty() {
            return Ok(out);
        }
        let found = storage
            .latest_of_types(&spans, BUMP_TYPES, MAX_WALK)
            .await?;
        let mut known = self.lock();
        for (((i, k), span), found) in missing.into_iter().zip(spans).zip(found) {
            let stamp = found.or(k.and_then(|k| k.stamp));
            out[i] = stamp;
            known.insert(
                span.room_id,
                Known {
                    checked_up_to: span.from,
                    stamp,
                },
            );
        }
        Ok(out)
    }
}
