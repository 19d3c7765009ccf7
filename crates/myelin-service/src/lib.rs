//! The use cases of the homeserver. Each public method is one client intent (register, send,
//! sync...): it loads what it needs, authorises through `myelin-room`, writes through one storage
//! call (one transaction) and, after the commit, wakes the notifier.
//!
//! Dependencies come in through [`Services::new`]; nothing here is global.

pub mod accounts;
pub mod config;
pub mod error;
pub mod ephemeral;
pub mod filter;
pub mod format;
pub mod rooms;
pub mod sync;
mod token;
pub mod uia;
pub mod user_data;

use std::sync::Arc;

use myelin_core::Clock;
use myelin_notify::Notifier;
use myelin_room::SigningKey;
use myelin_storage::Storage;

pub use config::{RegistrationMode, ServiceConfig};
pub use error::{ServiceError, ServiceResult};

/// The server context: every use case hangs off this, shared as an `Arc`.
pub struct Services {
    pub config: ServiceConfig,
    pub storage: Arc<dyn Storage>,
    pub notifier: Notifier,
    pub key: SigningKey,
    pub clock: Arc<dyn Clock>,
    pub(crate) rooms: rooms::RoomCache,
    pub(crate) uia: uia::UiaSessions,
    pub(crate) typing: ephemeral::Typing,
}

impl Services {
    pub fn new(config: ServiceConfig, storage: Arc<dyn Storage>, key: SigningKey, clock: Arc<dyn Clock>) -> Arc<Self> {
        let typing = ephemeral::Typing::new(clock.now_ms());
        Arc::new(Services {
            config,
            storage,
            notifier: Notifier::new(),
            key,
            clock,
            rooms: rooms::RoomCache::default(),
            uia: uia::UiaSessions::default(),
            typing,
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.config.server_name
    }
}
