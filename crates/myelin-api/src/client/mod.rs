//! Client-Server API routes (`/_matrix/client/...`), one module per spec area.

mod account;
mod admin;
mod appservice;
mod directory;
mod discovery;
mod events;
mod key_backup;
mod keys;
mod legacy;
pub(crate) mod media;
mod push;
mod pushers;
mod relations;
mod reports;
mod rooms;
mod search;
mod sso;
mod sync;
mod threepids;
mod user_data;

use axum::Router;

use crate::{error::ApiError, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .merge(discovery::routes())
        .merge(account::routes())
        .merge(sso::routes())
        .merge(appservice::routes())
        .merge(admin::routes())
        .merge(rooms::routes())
        .merge(events::routes())
        .merge(relations::routes())
        .merge(reports::routes())
        .merge(sync::routes())
        .merge(legacy::routes())
        .merge(search::routes())
        .merge(threepids::routes())
        .merge(user_data::routes())
        .merge(push::routes())
        .merge(pushers::routes())
        .merge(directory::routes())
        .merge(keys::routes())
        .merge(key_backup::routes())
        .merge(media::routes())
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
