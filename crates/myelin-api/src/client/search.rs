//! `POST /search`: server-side search of room events.

use axum::{extract::State, routing::post, Json, Router};
use myelin_service::search::RoomEventsCriteria;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::ApiResult,
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new().route("/_matrix/client/v3/search", post(search))
}

#[derive(Deserialize)]
struct SearchBody {
    search_categories: Categories,
}

#[derive(Deserialize)]
struct Categories {
    room_events: Option<RoomEventsCriteria>,
}

#[derive(Deserialize, Default)]
struct SearchParams {
    next_batch: Option<String>,
}

/// POST /_matrix/client/v3/search — client-server-api/#post_matrixclientv3search.
async fn search(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<SearchParams>,
    JsonBody(body): JsonBody<SearchBody>,
) -> ApiResult<Json<Value>> {
    let Some(criteria) = body.search_categories.room_events else {
        return Ok(Json(json!({ "search_categories": {} })));
    };
    Ok(Json(
        state
            .services
            .search
            .search_room_events(&authed, criteria, q.next_batch.as_deref())
            .await?,
    ))
}
