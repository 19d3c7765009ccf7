//! What other subsystems hand the application services between transactions, in memory:
//! ephemeral events (MSC2409: typing, receipts, presence, to-device) and, for MSC3202 appservices, whose
//! devices or keys changed. Events are not here: they are read from the event stream, durably.
//! A buffer is drained into the next transaction, which is stored before it is sent; what is
//! still buffered at a crash is lost, as ephemeral data is everywhere.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use ruma::{OwnedDeviceId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use super::registration::{Appservice, Registry};

/// Most ephemeral events or to-device messages held per appservice: past it the oldest go.
const MAX_BUFFERED: usize = 1000;

/// One appservice's buffered items.
#[derive(Debug, Default)]
pub struct Buffered {
    pub ephemeral: Vec<Value>,
    pub to_device: Vec<Value>,
    /// Users whose device list changed (MSC3202).
    pub device_changes: BTreeSet<OwnedUserId>,
    /// Devices whose one-time or fallback keys changed (MSC3202).
    pub key_changes: BTreeSet<(OwnedUserId, OwnedDeviceId)>,
}

impl Buffered {
    pub fn is_empty(&self) -> bool {
        self.ephemeral.is_empty()
            && self.to_device.is_empty()
            && self.device_changes.is_empty()
            && self.key_changes.is_empty()
    }
}

/// The buffers of every appservice, by ID.
#[derive(Debug, Default)]
pub struct Buffers(Mutex<HashMap<String, Buffered>>);

fn push_bounded(list: &mut Vec<Value>, item: Value) {
    if list.len() >= MAX_BUFFERED {
        list.remove(0);
    }
    list.push(item);
}

impl Buffers {
    fn with(&self, id: &str, f: impl FnOnce(&mut Buffered)) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(id.to_owned()).or_default());
    }

    /// Everything buffered for the appservice, leaving it empty.
    pub fn take(&self, id: &str) -> Buffered {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(id).unwrap_or_default()
    }
}

/// Whether the appservice wants this room's ephemeral events: one of its users is a member, or
/// the room is in its namespace.
fn wants_room(a: &Appservice, room_id: &RoomId, members: &[OwnedUserId]) -> bool {
    a.is_room_in_namespace(room_id) || members.iter().any(|m| a.is_user_in_namespace(m))
}

impl Registry {
    /// A typing or receipt event (client format, with `room_id`) for the appservices that
    /// receive ephemeral events and have a user among `members`.
    pub fn push_room_ephemeral(&self, room_id: &RoomId, members: &[OwnedUserId], event: &Value) {
        for a in &self.all().list {
            if a.receive_ephemeral && wants_room(a, room_id, members) {
                self.buffers
                    .with(&a.id, |b| push_bounded(&mut b.ephemeral, event.clone()));
            }
        }
    }

    /// A user's presence (an `m.presence` event) for the appservices that receive ephemeral
    /// events and are interested in the user: the user is theirs, or shares a room with one of
    /// their users (`sharers`), as Synapse decides.
    pub fn push_presence(&self, user: &UserId, sharers: &[OwnedUserId], event: &Value) {
        for a in &self.all().list {
            if a.receive_ephemeral
                && (a.is_user_in_namespace(user)
                    || sharers.iter().any(|s| a.is_user_in_namespace(s)))
            {
                self.buffers
                    .with(&a.id, |b| push_bounded(&mut b.ephemeral, event.clone()));
            }
        }
    }

    /// A to-device message for a user of an appservice that receives ephemeral events; `true`
    /// if an appservice took it.
    pub fn push_to_device(&self, recipient: &UserId, message: &Value) -> bool {
        let mut taken = false;
        for a in &self.all().list {
            if a.receive_ephemeral && a.is_user_in_namespace(recipient) {
                self.buffers
                    .with(&a.id, |b| push_bounded(&mut b.to_device, message.clone()));
                taken = true;
            }
        }
        taken
    }

    /// A user's devices changed: MSC3202 appservices with a user in a room with them learn it.
    /// `sharers` are the users who share a room with them.
    pub fn note_device_change(&self, user: &UserId, sharers: &[OwnedUserId]) {
        for a in &self.all().list {
            if a.msc3202
                && (a.is_user_in_namespace(user)
                    || sharers.iter().any(|s| a.is_user_in_namespace(s)))
            {
                self.buffers.with(&a.id, |b| {
                    b.device_changes.insert(user.to_owned());
                });
            }
        }
    }

    /// A device's one-time or fallback keys changed: its counts go to MSC3202 appservices
    /// owning the user.
    pub fn note_key_change(&self, user: &UserId, device: &ruma::DeviceId) {
        for a in &self.all().list {
            if a.msc3202 && a.is_user_in_namespace(user) {
                self.buffers.with(&a.id, |b| {
                    b.key_changes.insert((user.to_owned(), device.to_owned()));
                });
            }
        }
    }

    /// Everything buffered for one appservice, leaving it empty.
    pub fn take_buffered(&self, id: &str) -> Buffered {
        self.buffers.take(id)
    }
}
