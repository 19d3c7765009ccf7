//! Server-Server API routes (`/_matrix/key/...`, `/_matrix/federation/...`), one module per spec
//! area, and the `X-Matrix` extractors every authenticated federation endpoint uses.

mod devices;
mod directory;
mod events;
mod extract;
mod history;
mod keys;
mod media;
mod membership;
mod query;
mod third_party;
mod transactions;
mod version;
mod well_known;

use axum::Router;

use crate::SharedState;

pub use extract::{FederationJson, FederationOrigin};

/// The federation routes; empty when `federation.enabled` is off.
pub fn routes(enabled: bool) -> Router<SharedState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .merge(keys::routes())
        .merge(version::routes())
        .merge(query::routes())
        .merge(events::routes())
        .merge(history::routes())
        .merge(membership::routes())
        .merge(transactions::routes())
        .merge(well_known::routes())
        .merge(directory::routes())
        .merge(devices::routes())
        .merge(media::routes())
        .merge(third_party::routes())
}
