//! The federation outbox: everything we send to other servers goes through a durable queue per
//! destination (rows written in the same transaction as the event, or queued EDUs), drained by
//! one worker per destination (`worker.rs`). This module decides the destinations of a room's
//! events and EDUs and wakes the workers; it never calls back into the rooms that use it.

mod worker;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use ruma::{OwnedServerName, ServerName};

pub use worker::{MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN};

use crate::{federation::EduKind, rooms::RoomState, Context, ServiceResult};

pub struct Outbox {
    pub(crate) ctx: Arc<Context>,
    /// The per-destination workers, started on first use and ended once idle.
    workers: Mutex<HashMap<OwnedServerName, Arc<worker::Worker>>>,
    /// Handed to workers, so that they end with the server.
    this: Weak<Outbox>,
}

impl Outbox {
    pub fn new(ctx: Arc<Context>) -> Arc<Outbox> {
        Arc::new_cyclic(|this| Outbox {
            ctx,
            workers: Mutex::new(HashMap::new()),
            this: this.clone(),
        })
    }

    /// Starts sending: wakes a worker for every destination with queued rows (events queued
    /// before a restart are sent now).
    pub async fn start_federation_sender(&self) -> ServiceResult<()> {
        let pending = self.ctx.storage.outbox_destinations().await?;
        self.wake_senders(&pending);
        Ok(())
    }

    /// The remote servers a new event of the room goes to: those with joined members, and the
    /// server of a member event's target (a kicked or banned user's server hears of it).
    pub(crate) fn destinations_of(
        &self,
        state: &RoomState,
        pdu: &myelin_core::Pdu,
    ) -> Vec<OwnedServerName> {
        if !self.ctx.federation.config.enabled {
            return Vec::new();
        }
        let mut servers = self.other_servers_in(state);
        if pdu.kind.to_string() == "m.room.member" {
            if let Some(target) = pdu
                .state_key
                .as_deref()
                .and_then(|k| <&ruma::UserId>::try_from(k).ok())
                .map(|u| u.server_name())
                .filter(|s| *s != self.ctx.server_name() && !self.ctx.is_blocked_server(s.as_str()))
            {
                servers.insert(target.to_owned());
            }
        }
        servers.into_iter().collect()
    }

    /// The other servers with joined members in the room, blocked ones left out, in order.
    pub(crate) fn other_servers_in(
        &self,
        state: &RoomState,
    ) -> std::collections::BTreeSet<ruma::OwnedServerName> {
        let own = self.ctx.server_name();
        state
            .joined_members()
            .iter()
            .map(|u| u.server_name())
            .filter(|s| *s != own && !self.ctx.is_blocked_server(s.as_str()))
            .map(ToOwned::to_owned)
            .collect()
    }

    /// Wakes (starting if needed) the workers of `destinations`.
    pub(crate) fn wake_senders(&self, destinations: &[OwnedServerName]) {
        if destinations.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        // Woken under the lock, so that an idle worker deciding to end (under the same lock)
        // either sees this wake-up or is already gone and a new worker starts.
        for destination in destinations {
            self.worker(&mut workers, destination).wake.notify_one();
        }
    }

    /// A request from `origin` arrived: it is reachable, so stop waiting out its backoff.
    pub(crate) fn destination_back_online(&self, origin: &ServerName) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(worker) = workers.get(origin) {
            worker.back_online.notify_one();
        }
    }

    /// Queues one EDU for each server and wakes their senders.
    pub(crate) async fn queue_edu_for(
        &self,
        servers: impl IntoIterator<Item = OwnedServerName>,
        kind: EduKind,
        content: serde_json::Value,
    ) -> ServiceResult<()> {
        let servers: Vec<OwnedServerName> = servers.into_iter().collect();
        if servers.is_empty() {
            return Ok(());
        }
        self.ctx
            .storage
            .queue_edu(&servers, kind.wire(content))
            .await?;
        self.wake_senders(&servers);
        Ok(())
    }

    /// Queues an EDU for the other servers in a room (its state as the caller has it).
    pub(crate) async fn send_edu_to_room(
        &self,
        state: &RoomState,
        kind: EduKind,
        content: serde_json::Value,
    ) -> ServiceResult<()> {
        if !self.ctx.federation.config.enabled {
            return Ok(());
        }
        self.queue_edu_for(self.other_servers_in(state), kind, content)
            .await
    }
}

#[cfg(test)]
mod tests;
