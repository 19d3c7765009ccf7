//! The use cases of the homeserver. Each public method is one client intent (register, send,
//! sync...): it loads what it needs, authorises through `myelin-room`, writes through one storage
//! call (one transaction) and, after the commit, wakes the notifier.
//!
//! Dependencies come in through [`Services::new`]; nothing here is global.

pub mod accounts;
pub mod config;
pub mod e2ee;
pub mod ephemeral;
pub mod error;
pub mod federation;
pub mod filter;
pub mod format;
pub mod openid;
pub mod push_rules;
pub mod ratelimit;
pub mod resources;
pub mod rooms;
pub mod sync;
mod token;
pub mod uia;
pub mod user_data;
pub mod user_directory;
pub mod voip;

use std::sync::Arc;

use myelin_core::Clock;
use myelin_notify::Notifier;
use myelin_room::SigningKey;
use myelin_storage::Storage;

pub use config::{RegistrationMode, ServiceConfig};
pub use e2ee::SignatureFailures;
pub use error::{ServiceError, ServiceResult};
pub use myelin_federation::FederationConfig;
pub use ratelimit::{Rate, RateAction, RateLimits};
pub use resources::ResourceLimits;
pub use voip::TurnConfig;

/// The server context: every use case hangs off this, shared as an `Arc`.
pub struct Services {
    pub config: ServiceConfig,
    pub storage: Arc<dyn Storage>,
    pub notifier: Notifier,
    pub key: SigningKey,
    pub clock: Arc<dyn Clock>,
    pub(crate) rooms: rooms::RoomCache,
    pub(crate) uia: uia::UiaSessions,
    pub(crate) openid: openid::OpenIdTokens,
    pub(crate) typing: ephemeral::Typing,
    pub(crate) rate_limiter: ratelimit::RateLimiter,
    /// Bounds concurrent argon2 work (see `accounts::hash_password`).
    pub(crate) password_permits: tokio::sync::Semaphore,
    /// Federation: keyring, outgoing client, server-server configuration.
    pub federation: Arc<myelin_federation::Federation>,
    /// The per-destination federation senders.
    pub(crate) senders: federation::sender::Senders,
}

/// How many password hashes or verifications run at once.
pub const PASSWORD_HASHES_AT_ONCE: usize = 2;

impl Services {
    pub fn new(
        config: ServiceConfig,
        storage: Arc<dyn Storage>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Self::new_with_federation(
            config,
            myelin_federation::FederationConfig::default(),
            storage,
            key,
            clock,
        )
    }

    /// [`Services::new`] with the `[federation]` configuration.
    pub fn new_with_federation(
        config: ServiceConfig,
        federation: myelin_federation::FederationConfig,
        storage: Arc<dyn Storage>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let federation = Arc::new(myelin_federation::Federation::new(
            federation,
            config.server_name.clone(),
            &key.key_pair,
            clock.clone(),
        ));
        let typing = ephemeral::Typing::new(clock.now_ms());
        let rate_limiter = ratelimit::RateLimiter::new(config.rate_limits.clone());
        let rooms = rooms::RoomCache::new(config.resources.room_cache_capacity);
        Arc::new_cyclic(|this| Services {
            config,
            storage,
            notifier: Notifier::new(),
            key,
            clock,
            rooms,
            uia: uia::UiaSessions::default(),
            openid: openid::OpenIdTokens::default(),
            typing,
            rate_limiter,
            password_permits: tokio::sync::Semaphore::new(PASSWORD_HASHES_AT_ONCE),
            federation,
            senders: federation::sender::Senders::new(this.clone()),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.config.server_name
    }
}
