//! The connection store: per `(user, device, conn_id)`, what each room was last sent with and
//! up to which stream position, in memory and bounded (connections per device and in total,
//! least recently used out), and the opaque `pos` that names one version of it.
//!
//! A response records a new version and hands out its `pos`; a request names the version it
//! continues from. Versions older than the one named are dropped (the client has seen a later
//! one), but the named one stays: a request whose response got lost is simply sent again with
//! the same `pos`, and the rooms of the lost response count as not sent. Nothing survives a
//! restart: every `pos` names a boot of the server, and one from another boot is unknown.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use myelin_core::StreamPos;
use rand::{distributions::Alphanumeric, Rng};
use ruma::{OwnedDeviceId, OwnedRoomId, OwnedUserId};

use super::{lru::Lru, required_state::RequiredState};
use crate::{rooms::Membership, ServiceError, ServiceResult};

/// What one room was last sent with on a connection. Kept small: a connection holds one per
/// room it ever sent.
#[derive(Debug, Clone)]
pub(super) struct RoomSent {
    /// Every update of the room up to here was sent.
    pub pos: StreamPos,
    /// The user's membership then: a join after anything else sends the room afresh.
    pub membership: Membership,
    /// The timeline the client holds of the room, at least.
    pub timeline_limit: u64,
    /// Which `required_state` it was sent with (its plan's fingerprint).
    pub required_state: u64,
    /// That `required_state` itself (shared by the rooms of a plan): when a request asks for
    /// another, only the entries it adds are sent.
    pub state_spec: Arc<RequiredState>,
    /// Members whose `m.room.member` event went out for `$LAZY` and has not changed since.
    pub lazy_members: HashSet<OwnedUserId>,
}

/// How far an extension's data of a room was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Up to the stream position of the version holding this state: rooms in scope every
    /// time stay `Live` without the state changing.
    Live,
    /// Up to here only (the room went out of scope while it had news).
    Since(StreamPos),
}

/// Everything a connection remembers about what it sent.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnState {
    pub rooms: HashMap<OwnedRoomId, RoomSent>,
    /// Per room: how far its receipts were sent.
    pub receipts: HashMap<OwnedRoomId, Sent>,
    /// Per room: how far its account data was sent.
    pub account_data: HashMap<OwnedRoomId, Sent>,
}

/// A connection's state while a response is built: the version's, copied on the first change
/// only, so that the many responses that change nothing share one state.
pub(super) struct StateEdit {
    base: Arc<ConnState>,
    edited: Option<ConnState>,
}

impl StateEdit {
    pub(super) fn new(base: Arc<ConnState>) -> Self {
        StateEdit { base, edited: None }
    }

    pub(super) fn get(&self) -> &ConnState {
        self.edited.as_ref().unwrap_or(&self.base)
    }

    pub(super) fn edit(&mut self) -> &mut ConnState {
        let base = &self.base;
        self.edited.get_or_insert_with(|| ConnState::clone(base))
    }

    pub(super) fn finish(self) -> Arc<ConnState> {
        self.edited.map(Arc::new).unwrap_or(self.base)
    }
}

/// One version of a connection: the positions a response reached, and what it had sent.
#[derive(Debug, Clone)]
pub(super) struct Version {
    id: u64,
    /// The global stream position the response covered.
    pub stream: StreamPos,
    /// The typing serial it covered.
    pub typing: u64,
    pub state: Arc<ConnState>,
}

impl Version {
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

/// Bounds of the store.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreLimits {
    pub per_device: usize,
    pub total: usize,
    /// Versions kept per connection (the one a request named and those made since).
    pub versions: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            per_device: 10,
            total: 10_000,
            versions: 4,
        }
    }
}

type DeviceKey = (OwnedUserId, OwnedDeviceId);

pub(super) struct ConnectionStore {
    /// Names this run of the server in every `pos`.
    boot: String,
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

struct Inner {
    devices: Lru<DeviceKey, Lru<String, Connection>>,
    /// Connections over all devices.
    total: usize,
    /// Version IDs are unique over the store, so that a `pos` of a dropped connection never
    /// names a version of a later one.
    next_id: u64,
}

#[derive(Default)]
struct Connection {
    versions: VecDeque<Version>,
}

impl ConnectionStore {
    pub(super) fn new(limits: StoreLimits) -> Self {
        let boot: String = rand::thread_rng()
            .sample_iter(Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        ConnectionStore {
            boot,
            limits,
            inner: Mutex::new(Inner {
                devices: Lru::new(limits.total),
                total: 0,
                next_id: 1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version `pos` names on this connection (`None` without `pos`: a new connection);
    /// `UnknownPos` if it names none (expired, evicted, another connection, another boot).
    pub(super) fn resume(
        &self,
        device: &DeviceKey,
        conn_id: &str,
        pos: Option<&str>,
    ) -> ServiceResult<Option<Version>> {
        let Some(pos) = pos else {
            return Ok(None);
        };
        let id = self.parse_pos(pos).ok_or(ServiceError::UnknownPos)?;
        let mut inner = self.lock();
        let connection = inner
            .devices
            .get_mut(device)
            .and_then(|conns| conns.get_mut(conn_id))
            .ok_or(ServiceError::UnknownPos)?;
        let index = connection
            .versions
            .iter()
            .position(|v| v.id == id)
            .ok_or(ServiceError::UnknownPos)?;
        // The client has this version: the ones before it will not be asked for again.
        connection.versions.drain(..index);
        Ok(connection.versions.front().cloned())
    }

    /// Records the version a response reached, after `base` (the version the request named,
    /// `None` for a new connection, which replaces any of the same name); returns its `pos`.
    pub(super) fn record(
        &self,
        device: &DeviceKey,
        conn_id: &str,
        base: Option<u64>,
        stream: StreamPos,
        typing: u64,
        state: Arc<ConnState>,
    ) -> String {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let id = inner.next_id;
        inner.next_id += 1;
        let version = Version {
            id,
            stream,
            typing,
            state,
        };
        if inner.devices.get_mut(device).is_none() {
            let evicted = inner
                .devices
                .insert(device.clone(), Lru::new(self.limits.per_device));
            inner.total -= evicted.iter().map(|(_, c)| c.len()).sum::<usize>();
        }
        let Some(conns) = inner.devices.get_mut(device) else {
            return self.pos(id);
        };
        // A request without `pos` starts the connection afresh.
        let exists = conns.get_mut(conn_id).is_some();
        if !exists || base.is_none() {
            let evicted = conns.insert(conn_id.to_owned(), Connection::default());
            if !exists {
                inner.total += 1;
            }
            inner.total -= evicted.len();
        }
        if let Some(connection) = conns.get_mut(conn_id) {
            connection.versions.push_back(version);
            while connection.versions.len() > self.limits.versions {
                connection.versions.pop_front();
            }
        }
        while inner.total > self.limits.total {
            match inner.devices.pop_oldest() {
                Some((_, conns)) => inner.total -= conns.len(),
                None => break,
            }
        }
        self.pos(id)
    }

    fn pos(&self, id: u64) -> String {
        format!("{}_{id}", self.boot)
    }

    fn parse_pos(&self, pos: &str) -> Option<u64> {
        let (boot, id) = pos.split_once('_')?;
        (boot == self.boot).then_some(())?;
        id.parse().ok()
    }

    /// Connections held, over all devices.
    #[cfg(test)]
    pub(super) fn total(&self) -> usize {
        self.lock().total
    }
}
