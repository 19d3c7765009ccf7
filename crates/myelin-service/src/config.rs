//! The options the use cases read (the binary maps its TOML config onto this).

use ruma::{OwnedServerName, RoomVersionId};

use crate::appservices::Appservice;
use crate::context::mail::SmtpConfig;
use crate::context::RateLimits;
use crate::media::MediaConfig;
use crate::resources::ResourceLimits;
use crate::users::TurnConfig;
use myelin_federation::EgressPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    /// Anyone may register (UIA with `m.login.dummy`).
    Open,
    /// Registration needs one of the configured tokens (`m.login.registration_token`).
    Token,
    /// Only `myelin user create` makes accounts.
    Closed,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub server_name: OwnedServerName,
    pub registration: RegistrationMode,
    pub registration_tokens: Vec<String>,
    /// Whether `register?kind=guest` makes guest accounts.
    pub allow_guests: bool,
    pub default_room_version: RoomVersionId,
    /// Lifetime of access tokens issued with a refresh token.
    pub refreshable_token_lifetime_ms: u64,
    /// Longest `/sync` long-poll honoured.
    pub max_sync_timeout_ms: u64,
    /// Longest typing notification honoured.
    pub max_typing_timeout_ms: u64,
    /// Client rate limits.
    pub rate_limits: RateLimits,
    /// The TURN server handed to VoIP clients.
    pub turn: TurnConfig,
    /// Bounds on fan-out and cached rooms.
    pub resources: ResourceLimits,
    /// The media repository: where files live, upload limits.
    pub media: MediaConfig,
    /// Where outgoing requests other than federation (push gateways, application services, URL
    /// previews) may go.
    pub egress: EgressPolicy,
    /// Outgoing e-mail.
    pub smtp: SmtpConfig,
    /// Whether registration needs a validated e-mail address (`m.login.email.identity`).
    pub require_email: bool,
    /// Application services, from their registration files.
    pub appservices: Vec<Appservice>,
    /// SSO login (OpenID Connect providers).
    pub sso: crate::sso::SsoConfig,
}

impl ServiceConfig {
    pub fn new(server_name: OwnedServerName) -> Self {
        ServiceConfig {
            server_name,
            registration: RegistrationMode::Open,
            registration_tokens: Vec::new(),
            allow_guests: false,
            default_room_version: RoomVersionId::V10,
            refreshable_token_lifetime_ms: 5 * 60 * 1000,
            max_sync_timeout_ms: 60_000,
            max_typing_timeout_ms: 120_000,
            rate_limits: RateLimits::default(),
            turn: TurnConfig::default(),
            resources: ResourceLimits::default(),
            media: MediaConfig::default(),
            egress: EgressPolicy::default(),
            smtp: SmtpConfig::default(),
            require_email: false,
            appservices: Vec::new(),
            sso: crate::sso::SsoConfig::default(),
        }
    }
}
