//! The use cases of the homeserver, as subsystems. Each subsystem is one type in one folder
//! (accounts, rooms, membership, history, sync, sliding sync, ephemeral, e2ee, key backup,
//! media, reports, users, push, application services, and federation's outbox, ingest, handshakes, inbound and read side),
//! built once in
//! [`Services::new`] with the subsystems it needs, so the construction order below *is* the
//! dependency graph: nothing calls back into a subsystem built after it, and nothing holds the
//! whole.
//!
//! Every subsystem gets the shared infrastructure as an `Arc<Context>` (storage, notifier, key,
//! clock, federation client, rate limiter); nothing here is global.

pub mod accounts;
pub mod appservices;
pub mod backup;
pub mod config;
pub mod context;
pub mod e2ee;
pub mod ephemeral;
pub mod error;
pub mod federation;
pub mod filter;
pub mod format;
pub mod history;
pub mod legacy;
pub mod media;
pub mod membership;
pub mod push;
pub mod reports;
pub mod resources;
pub mod rooms;
pub mod search;
pub mod sliding_sync;
pub mod sso;
pub mod sync;
pub mod third_party_invites;
pub mod threepids;
pub mod users;

#[cfg(test)]
mod test_support;

use std::sync::Arc;

use myelin_core::Clock;
use myelin_room::SigningKey;
use myelin_storage::Storage;

pub use accounts::Accounts;
pub use appservices::Appservices;
pub use backup::KeyBackup;
pub use config::{RegistrationMode, ServiceConfig};
pub use context::{Context, Rate, RateAction, RateLimits};
pub use e2ee::{E2ee, SignatureFailures};
pub use ephemeral::Ephemeral;
pub use error::{ServiceError, ServiceResult};
pub use federation::{FederationReads, Handshakes, Inbound, Ingest, Outbox};
pub use history::History;
pub use legacy::Legacy;
pub use media::{Media, MediaConfig};
pub use membership::Memberships;
pub use myelin_federation::FederationConfig;
pub use push::Push;
pub use reports::Reports;
pub use resources::ResourceLimits;
pub use rooms::Rooms;
pub use search::Search;
pub use sliding_sync::SlidingSync;
pub use sync::Syncer;
pub use third_party_invites::ThirdPartyInvites;
pub use threepids::Threepids;
pub use users::{TurnConfig, Users};

/// The composition root: one handle per subsystem, built in dependency order.
pub struct Services {
    pub ctx: Arc<Context>,
    /// Durable per-destination federation queues and their workers.
    pub outbox: Arc<Outbox>,
    /// Push rules evaluated at write time, unread counts, pushers and push gateway delivery.
    pub push: Arc<Push>,
    /// Room state and the one append path (lock → build/check → commit → publish).
    pub rooms: Arc<Rooms>,
    /// PDUs from other servers: checks, state resolution, backfill.
    pub ingest: Arc<Ingest>,
    /// What remote servers may read of our rooms.
    pub federation_reads: Arc<FederationReads>,
    /// make_/send_ join, knock, leave and invite, both directions.
    pub handshakes: Arc<Handshakes>,
    /// Joining, leaving, inviting, creating and upgrading rooms.
    pub membership: Arc<Memberships>,
    /// Reading a room's history through the visibility check.
    pub history: Arc<History>,
    /// Account data, profiles, filters, push rules, user directory, TURN.
    pub users: Arc<Users>,
    /// Keys, device lists and to-device messages.
    pub e2ee: Arc<E2ee>,
    /// Server-side key backups.
    pub backup: Arc<KeyBackup>,
    /// The media repository: uploads, downloads, thumbnails.
    pub media: Arc<Media>,
    /// Typing, receipts, read markers and presence.
    pub ephemeral: Arc<Ephemeral>,
    /// Incoming federation transactions.
    pub inbound: Arc<Inbound>,
    /// Registration, login, sessions, devices, UIA.
    pub accounts: Arc<Accounts>,
    /// `/sync`.
    pub sync: Arc<Syncer>,
    /// The deprecated `/initialSync` and `/events`.
    pub legacy: Arc<Legacy>,
    /// Reports of content to the administrators.
    pub reports: Arc<Reports>,
    /// Server-side search.
    pub search: Arc<Search>,
    /// E-mail addresses: validation by mail, binding to accounts and on identity servers.
    pub threepids: Arc<Threepids>,
    /// Inviting addresses through identity servers, and claiming those invites.
    pub third_party_invites: Arc<ThirdPartyInvites>,
    /// Simplified sliding sync (MSC4186).
    pub sliding_sync: Arc<SlidingSync>,
    /// Application services: transactions pushed to them, queries, pings.
    pub appservices: Arc<Appservices>,
    /// SSO login through OpenID Connect providers.
    pub sso: Arc<sso::Sso>,
}

impl Services {
    pub fn new(
        config: ServiceConfig,
        storage: Arc<dyn Storage>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Self::new_with_federation(config, FederationConfig::default(), storage, key, clock)
    }

    /// [`Services::new`] with the `[federation]` configuration.
    pub fn new_with_federation(
        config: ServiceConfig,
        federation: FederationConfig,
        storage: Arc<dyn Storage>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let ctx = Arc::new(Context::new(config, federation, storage, key, clock));
        let outbox = Outbox::new(ctx.clone());
        let push = Push::new(ctx.clone());
        let rooms = Arc::new(Rooms::new(ctx.clone(), outbox.clone(), push.clone()));
        let ingest = Arc::new(Ingest::new(ctx.clone(), rooms.clone(), outbox.clone()));
        let federation_reads = Arc::new(FederationReads::new(ctx.clone(), rooms.clone()));
        let handshakes = Arc::new(Handshakes::new(
            ctx.clone(),
            rooms.clone(),
            ingest.clone(),
            federation_reads.clone(),
        ));
        let membership = Arc::new(Memberships::new(
            ctx.clone(),
            rooms.clone(),
            handshakes.clone(),
        ));
        let users = Arc::new(Users::new(ctx.clone(), rooms.clone(), push.clone()));
        let history = Arc::new(History::new(
            ctx.clone(),
            rooms.clone(),
            ingest.clone(),
            outbox.clone(),
            users.clone(),
        ));
        let e2ee = Arc::new(E2ee::new(ctx.clone(), rooms.clone(), outbox.clone()));
        let backup = Arc::new(KeyBackup::new(ctx.clone()));
        let media = Arc::new(Media::new(ctx.clone()));
        let ephemeral = Arc::new(Ephemeral::new(
            ctx.clone(),
            rooms.clone(),
            outbox.clone(),
            users.clone(),
        ));
        let inbound = Arc::new(Inbound::new(
            ctx.clone(),
            rooms.clone(),
            ingest.clone(),
            outbox.clone(),
            e2ee.clone(),
            ephemeral.clone(),
        ));
        let accounts = Arc::new(Accounts::new(
            ctx.clone(),
            e2ee.clone(),
            membership.clone(),
            push.clone(),
        ));
        let sync = Arc::new(Syncer::new(
            ctx.clone(),
            rooms.clone(),
            history.clone(),
            e2ee.clone(),
            ephemeral.clone(),
            users.clone(),
            push.clone(),
        ));
        let legacy = Arc::new(Legacy::new(
            ctx.clone(),
            rooms.clone(),
            history.clone(),
            users.clone(),
            ephemeral.clone(),
        ));
        let threepids = Arc::new(Threepids::new(ctx.clone()));
        let third_party_invites = Arc::new(ThirdPartyInvites::new(
            ctx.clone(),
            rooms.clone(),
            membership.clone(),
            handshakes.clone(),
            threepids.clone(),
        ));
        let search = Arc::new(Search::new(ctx.clone(), rooms.clone(), history.clone()));
        let reports = Arc::new(Reports::new(ctx.clone(), rooms.clone(), history.clone()));
        let sliding_sync = Arc::new(SlidingSync::new(
            ctx.clone(),
            rooms.clone(),
            history.clone(),
            e2ee.clone(),
            ephemeral.clone(),
            users.clone(),
            push.clone(),
        ));
        let appservices = Arc::new(Appservices::new(ctx.clone(), rooms.clone()));
        let sso = Arc::new(sso::Sso::new(ctx.clone(), accounts.clone()));
        Arc::new(Services {
            ctx,
            outbox,
            push,
            rooms,
            ingest,
            federation_reads,
            handshakes,
            membership,
            history,
            users,
            e2ee,
            backup,
            media,
            ephemeral,
            inbound,
            accounts,
            sync,
            legacy,
            reports,
            search,
            threepids,
            third_party_invites,
            sliding_sync,
            appservices,
            sso,
        })
    }
}
