//! Third-party invites over federation (spec: Server-Server API, "Third-party invites"): the
//! identity server's `3pid/onbind` and `exchange_third_party_invite` between servers, answered
//! by `ThirdPartyInvites`.

use axum::{
    extract::{Path, State},
    routing::put,
    Json, Router,
};
use myelin_service::third_party_invites::{OnBind, OnBindInvite};
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::FederationJson;
use crate::{
    error::ApiResult,
    extract::{parse_id, JsonBody},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/_matrix/federation/v1/exchange_third_party_invite/{room_id}",
            put(exchange),
        )
        // The spec says PUT; identity servers (Sydent) have long sent POST.
        .route(
            "/_matrix/federation/v1/3pid/onbind",
            put(onbind).post(onbind),
        )
}

/// PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}: the invitee's server asks
/// us, the inviter's, to issue the invite a bound address has claimed.
async fn exchange(
    State(state): State<SharedState>,
    Path(room_id): Path<String>,
    FederationJson { origin, body }: FederationJson<Value>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room_id, "room ID")?;
    state
        .services
        .third_party_invites
        .federation_exchange(&origin, &room_id, &body)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct OnBindBody {
    mxid: OwnedUserId,
    invites: Vec<InviteBody>,
}

#[derive(Deserialize)]
struct InviteBody {
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    mxid: OwnedUserId,
    signed: Value,
}

/// PUT /_matrix/federation/v1/3pid/onbind: an identity server says an address is bound to one
/// of our users, with the invites waiting for it (unauthenticated: each invite carries the
/// identity server's signature, which the auth rules check).
async fn onbind(
    State(state): State<SharedState>,
    JsonBody(body): JsonBody<OnBindBody>,
) -> ApiResult<Json<Value>> {
    let onbind = OnBind {
        mxid: body.mxid,
        invites: body
            .invites
            .into_iter()
            .map(|i| OnBindInvite {
                room_id: i.room_id,
                sender: i.sender,
                mxid: i.mxid,
                signed: i.signed,
            })
            .collect(),
    };
    state.services.third_party_invites.on_bind(onbind).await?;
    Ok(Json(json!({})))
}
