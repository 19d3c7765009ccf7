//! Bump stamps: the stream position of a room's latest event of a type that moves the room up
//! a client's list (a message, not a reaction, receipt or state change). Found by a bounded
//! walk back from the room's newest event and kept per room in memory (bounded, least recently
//! used out), so that a later request walks back only over the events that came since.

use std::sync::Mutex;

use myelin_core::StreamPos;
use myelin_storage::{Direction, Storage};
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

/// Events read by the walk's first storage call: a room's newest event is most often a bump
/// (a message), and a small read spares decoding dozens of events per room on a first request.
const FIRST_BATCH: usize = 4;
/// Events read per later storage call of the walk.
const BATCH: usize = 50;
/// Events walked at most for one room; a room whose last bump lies further back has none
/// (the caller falls back to the user's membership position).
const MAX_WALK: usize = 1_000;

pub(super) fn is_bump_type(kind: &str) -> bool {
    BUMP_TYPES.contains(&kind)
}

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

    /// The room's bump stamp given its newest event's position, if a bump event is found.
    pub(super) async fn of(
        &self,
        storage: &dyn Storage,
        room_id: &RoomId,
        newest: StreamPos,
    ) -> ServiceResult<Option<StreamPos>> {
        let known = self.lock().get_mut(room_id).copied();
        if let Some(k) = known.filter(|k| k.checked_up_to >= newest) {
            return Ok(k.stamp);
        }
        let floor = known.map(|k| k.checked_up_to);
        let found = latest_bump(storage, room_id, newest, floor).await?;
        let stamp = found.or(known.and_then(|k| k.stamp));
        self.lock().insert(
            room_id.to_owned(),
            Known {
                checked_up_to: newest,
                stamp,
            },
        );
        Ok(stamp)
    }
}

/// The newest bump event's position in `(floor, from]`, walking back at most [`MAX_WALK`]
/// events. Backfilled history (negative positions) and events outside the timeline never count.
async fn latest_bump(
    storage: &dyn Storage,
    room_id: &RoomId,
    from: StreamPos,
    floor: Option<StreamPos>,
) -> ServiceResult<Option<StreamPos>> {
    let mut upper = from;
    let mut walked = 0;
    loop {
        let size = if walked == 0 { FIRST_BATCH } else { BATCH }.min(MAX_WALK - walked);
        let batch = storage
            .room_events(room_id, upper, floor, Direction::Backward, size)
            .await?;
        let bump = batch.iter().find(|r| {
            r.outlier.is_none()
                && r.stream_pos > StreamPos::ZERO
                && is_bump_type(&r.pdu.kind.to_string())
        });
        if let Some(r) = bump {
            return Ok(Some(r.stream_pos));
        }
        walked += batch.len();
        match batch.last() {
            Some(last)
                if batch.len() == size
                    && walked < MAX_WALK
                    && last.stream_pos > StreamPos::ZERO =>
            {
                upper = StreamPos(last.stream_pos.0 - 1);
            }
            _ => return Ok(None),
        }
    }
}
