//! The shared infrastructure every subsystem is handed: configuration, storage, the notifier,
//! the signing key, the clock, the federation client and the rate limiter, with the few
//! questions they answer alone (the time, our name, whether a server is blocked, remote calls).
//! It knows no use case and calls no subsystem.

pub mod mail;
mod ratelimit;
mod remote;
mod workers;

pub(crate) use remote::check_pdu_size;

use std::sync::Arc;

use myelin_core::Clock;
use myelin_federation::{Egress, Federation, FederationConfig};
use myelin_notify::Notifier;
use myelin_room::SigningKey;
use myelin_storage::Storage;
use ruma::ServerName;

pub use ratelimit::{Rate, RateAction, RateLimiter, RateLimits};
pub use workers::Workers;

use crate::appservices::Registry;
use crate::{ServiceConfig, ServiceError, ServiceResult};

pub struct Context {
    pub config: ServiceConfig,
    pub storage: Arc<dyn Storage>,
    /// Wakes `/sync` waiters after a commit.
    pub notifier: Notifier,
    pub key: SigningKey,
    pub clock: Arc<dyn Clock>,
    /// Federation: keyring, outgoing client, server-server configuration.
    pub federation: Arc<Federation>,
    pub rate_limiter: RateLimiter,
    /// The one private-address filter for outgoing requests other than federation (push
    /// gateways, application services, URL previews): build HTTP clients from it.
    pub egress: Egress,
    /// SMTP, when `[smtp]` names a host.
    pub mailer: Option<mail::Mailer>,
    /// The application services registered now (replaced whole on reload).
    pub appservices: Registry,
    /// The background workers, which end when the server stops.
    pub workers: Workers,
}

impl Context {
    pub fn new(
        config: ServiceConfig,
        federation: FederationConfig,
        storage: Arc<dyn Storage>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Context {
        let federation = Arc::new(Federation::new(
            federation,
            config.server_name.clone(),
            &key.key_pair,
            clock.clone(),
        ));
        let rate_limiter = RateLimiter::new(config.rate_limits.clone());
        let egress = Egress::new(config.egress.clone());
        let mailer = mail::Mailer::from_config(&config.smtp).unwrap_or_else(|e| {
            // `Config::validate` checks the same fields first; a relay that cannot be set up
            // leaves e-mail off rather than the server down.
            tracing::error!(error = %e, "SMTP is configured but unusable; e-mail is off");
            None
        });
        let appservices = Registry::new(config.appservices.clone());
        Context {
            config,
            storage,
            notifier: Notifier::new(),
            key,
            clock,
            federation,
            rate_limiter,
            egress,
            mailer,
            appservices,
            workers: Workers::default(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn server_name(&self) -> &ServerName {
        &self.config.server_name
    }

    /// Whether the configuration refuses this server.
    pub fn is_blocked_server(&self, server: &str) -> bool {
        <&ServerName>::try_from(server).is_ok_and(|s| {
            myelin_federation::client::listed(&self.federation.config.blocked_servers, s)
        })
    }

    /// Refuses servers on the configured block list.
    pub(crate) fn refuse_blocked(&self, origin: &ServerName) -> ServiceResult<()> {
        if self.is_blocked_server(origin.as_str()) {
            tracing::info!(%origin, "request from a blocked server refused");
            return Err(ServiceError::Forbidden(format!("{origin} is blocked here")));
        }
        Ok(())
    }
}
