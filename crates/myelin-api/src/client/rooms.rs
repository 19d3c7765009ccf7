//! Rooms: creation, membership, aliases.

use axum::{
    extract::{Path, State},
    routing::{get, post, put},
    Json, Router,
};
use myelin_service::membership::{CreateRoomRequest, InitialStateEvent};
use myelin_service::third_party_invites::ThreepidInvite;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{parse_id, Auth, JsonBody, MaybeAuth, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/createRoom", post(create_room))
        .route("/_matrix/client/v3/join/{room}", post(join))
        .route("/_matrix/client/v3/rooms/{room}/join", post(join))
        .route("/_matrix/client/v3/rooms/{room}/leave", post(leave))
        .route(
            "/_matrix/client/v3/rooms/{room}/invite",
            post(on_target(TargetAction::Invite)),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/kick",
            post(on_target(TargetAction::Kick)),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/ban",
            post(on_target(TargetAction::Ban)),
        )
        .route(
            "/_matrix/client/v3/rooms/{room}/unban",
            post(on_target(TargetAction::Unban)),
        )
        .route("/_matrix/client/v3/rooms/{room}/forget", post(forget))
        .route("/_matrix/client/v3/joined_rooms", get(joined_rooms))
        .route(
            "/_matrix/client/v3/directory/room/{alias}",
            put(put_alias).get(get_alias).delete(delete_alias),
        )
        .route("/_matrix/client/v3/rooms/{room}/aliases", get(room_aliases))
        .route(
            "/_matrix/client/v3/rooms/{room}/upgrade",
            post(upgrade_room),
        )
        .route("/_matrix/client/v3/knock/{room_or_alias}", post(knock))
        .route(
            "/_matrix/client/v1/room_summary/{room_or_alias}",
            get(room_summary),
        )
        .route("/_matrix/client/v1/mutual_rooms", get(mutual_rooms))
}

#[derive(Deserialize)]
struct InitialState {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    content: Map<String, Value>,
}

#[derive(Deserialize)]
struct CreateRoomBody {
    visibility: Option<String>,
    room_alias_name: Option<String>,
    name: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    invite: Vec<OwnedUserId>,
    room_version: Option<String>,
    creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    initial_state: Vec<InitialState>,
    preset: Option<String>,
    #[serde(default)]
    is_direct: bool,
    power_level_content_override: Option<Map<String, Value>>,
}

/// POST /_matrix/client/v3/createRoom — client-server-api/#post_matrixclientv3createroom.
async fn create_room(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    JsonBody(body): JsonBody<CreateRoomBody>,
) -> ApiResult<Json<Value>> {
    if let Some(name) = &body.room_alias_name {
        let alias = format!("#{name}:{}", state.services.ctx.server_name());
        if let Ok(alias) = OwnedRoomAliasId::try_from(alias) {
            let appservice = authed.appservice.as_deref();
            state
                .services
                .rooms
                .check_alias_namespace(&alias, appservice)?;
        }
    }
    let req = CreateRoomRequest {
        visibility: body.visibility,
        room_alias_name: body.room_alias_name,
        name: body.name,
        topic: body.topic,
        invite: body.invite,
        room_version: body.room_version,
        creation_content: body.creation_content,
        initial_state: body
            .initial_state
            .into_iter()
            .map(|s| InitialStateEvent {
                kind: s.kind,
                state_key: s.state_key,
                content: Value::Object(s.content),
            })
            .collect(),
        preset: body.preset,
        is_direct: body.is_direct,
        power_level_content_override: body.power_level_content_override,
    };
    let room_id = state
        .services
        .membership
        .create_room(&authed.user_id, req)
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    reason: Option<String>,
}

/// `via` (v1.12+) and the older `server_name`: servers to join or knock through.
fn via_servers(query: &crate::extract::QueryPairs) -> ApiResult<Vec<ruma::OwnedServerName>> {
    query
        .all("via")
        .into_iter()
        .chain(query.all("server_name"))
        .map(|s| parse_id(s, "server name in via"))
        .collect()
}

/// POST /_matrix/client/v3/join/{roomIdOrAlias} and /rooms/{roomId}/join.
async fn join(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    query: crate::extract::QueryPairs,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult<Json<Value>> {
    let via = via_servers(&query)?;
    if let Ok(alias) = OwnedRoomAliasId::try_from(room.as_str()) {
        state.services.appservices.ensure_alias(&alias).await?;
    }
    let membership = &state.services.membership;
    let reason = body.reason.as_deref();
    let room_id = if authed.is_guest {
        membership
            .join_room_as_guest(&authed.user_id, &room, reason)
            .await?
    } else {
        membership
            .join_room(&authed.user_id, &room, reason, &via)
            .await?
    };
    Ok(Json(json!({ "room_id": room_id })))
}

/// POST /_matrix/client/v3/rooms/{roomId}/leave.
async fn leave(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .membership
        .leave_room(&authed.user_id, &room_id, body.reason.as_deref())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: Option<OwnedUserId>,
    reason: Option<String>,
    /// The third-party form of an invite (spec: "Third-party invites"): all four or none.
    id_server: Option<String>,
    id_access_token: Option<String>,
    medium: Option<String>,
    address: Option<String>,
}

impl TargetBody {
    fn user_id(&self) -> ApiResult<&OwnedUserId> {
        self.user_id
            .as_ref()
            // As serde would answer when the field was required (it is, without an address).
            .ok_or_else(|| ApiError::bad_json("Invalid body: missing field `user_id`"))
    }

    /// The third-party invite asked for, if the body names an address instead of a user.
    fn threepid_invite(&self) -> ApiResult<Option<ThreepidInvite>> {
        if self.user_id.is_some()
            || (self.address.is_none() && self.medium.is_none() && self.id_server.is_none())
        {
            return Ok(None);
        }
        let field = |value: &Option<String>, name: &str| {
            value
                .clone()
                .ok_or_else(|| ApiError::missing_param(format!("{name} is required")))
        };
        Ok(Some(ThreepidInvite {
            id_server: field(&self.id_server, "id_server")?,
            id_access_token: field(&self.id_access_token, "id_access_token")?,
            medium: field(&self.medium, "medium")?,
            address: field(&self.address, "address")?,
        }))
    }
}

/// What a room member does to another user (`POST /rooms/{roomId}/{invite,kick,ban,unban}`);
/// an invite may name an e-mail address instead (spec: "Third-party invites").
#[derive(Clone, Copy)]
enum TargetAction {
    Invite,
    Kick,
    Ban,
    Unban,
}

/// The handler of one [`TargetAction`]: the four endpoints take the same body and answer `{}`.
#[allow(clippy::type_complexity)] // the handler type axum needs, spelled out once
fn on_target(
    action: TargetAction,
) -> impl Fn(
    State<SharedState>,
    Auth,
    Path<String>,
    JsonBody<TargetBody>,
) -> futures_util::future::BoxFuture<'static, ApiResult<Json<Value>>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |State(state), Auth(authed), Path(room), JsonBody(body)| {
        Box::pin(async move {
            let room_id: OwnedRoomId = parse_id(room, "room ID")?;
            let (services, user) = (&state.services, &authed.user_id);
            if let (TargetAction::Invite, Some(invite)) = (action, body.threepid_invite()?) {
                services
                    .third_party_invites
                    .invite(user, &room_id, invite)
                    .await?;
                return Ok(Json(json!({})));
            }
            let target = body.user_id()?;
            let reason = body.reason.as_deref();
            match action {
                TargetAction::Invite => {
                    services
                        .membership
                        .invite(user, &room_id, target, reason)
                        .await?
                }
                TargetAction::Kick => {
                    services
                        .membership
                        .kick(user, &room_id, target, reason)
                        .await?
                }
                TargetAction::Ban => {
                    services
                        .membership
                        .ban(user, &room_id, target, reason)
                        .await?
                }
                TargetAction::Unban => {
                    services
                        .membership
                        .unban(user, &room_id, target, reason)
                        .await?
                }
            }
            Ok(Json(json!({})))
        })
    }
}

/// POST /_matrix/client/v3/rooms/{roomId}/forget.
async fn forget(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    state
        .services
        .membership
        .forget_room(&authed.user_id, &room_id)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/joined_rooms.
async fn joined_rooms(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "joined_rooms": state.services.rooms.joined_rooms(&authed.user_id).await? }),
    ))
}

#[derive(Deserialize)]
struct AliasBody {
    room_id: OwnedRoomId,
}

/// PUT /_matrix/client/v3/directory/room/{roomAlias}.
async fn put_alias(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(alias): Path<String>,
    JsonBody(body): JsonBody<AliasBody>,
) -> ApiResult<Json<Value>> {
    let alias: OwnedRoomAliasId = parse_id(alias, "room alias")?;
    let rooms = &state.services.rooms;
    rooms.check_alias_namespace(&alias, authed.appservice.as_deref())?;
    rooms
        .put_alias(&authed.user_id, &alias, &body.room_id)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/directory/room/{roomAlias}.
async fn get_alias(
    State(state): State<SharedState>,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    let alias: OwnedRoomAliasId = parse_id(alias, "room alias")?;
    // An appservice may create the portal room for an alias of its namespace first.
    state.services.appservices.ensure_alias(&alias).await?;
    let (room_id, servers) = state.services.rooms.get_alias_with_servers(&alias).await?;
    Ok(Json(json!({ "room_id": room_id, "servers": servers })))
}

/// DELETE /_matrix/client/v3/directory/room/{roomAlias}.
async fn delete_alias(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    let alias: OwnedRoomAliasId = parse_id(alias, "room alias")?;
    state
        .services
        .rooms
        .delete_alias(&authed.user_id, &alias)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/rooms/{roomId}/aliases.
async fn room_aliases(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    Ok(Json(
        json!({ "aliases": state.services.rooms.room_aliases(&authed.user_id, &room_id).await? }),
    ))
}

#[derive(Deserialize)]
struct UpgradeBody {
    new_version: String,
}

/// POST /_matrix/client/v3/rooms/{roomId}/upgrade (spec: client-server "Room upgrades").
async fn upgrade_room(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> ApiResult<Json<Value>> {
    let room_id: OwnedRoomId = parse_id(room, "room ID")?;
    let replacement = state
        .services
        .membership
        .upgrade_room(&authed.user_id, &room_id, &body.new_version)
        .await?;
    Ok(Json(json!({ "replacement_room": replacement })))
}

#[derive(Deserialize, Default)]
struct KnockBody {
    reason: Option<String>,
}

/// POST /_matrix/client/v3/knock/{roomIdOrAlias} (spec: client-server "Knocking on rooms").
async fn knock(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path(room): Path<String>,
    query: crate::extract::QueryPairs,
    JsonBody(body): JsonBody<KnockBody>,
) -> ApiResult<Json<Value>> {
    let via = via_servers(&query)?;
    let room_id = state
        .services
        .membership
        .knock_room(&authed.user_id, &room, body.reason.as_deref(), &via)
        .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// GET /_matrix/client/v1/room_summary/{roomIdOrAlias} (spec: client-server "Room summary";
/// authentication optional).
async fn room_summary(
    State(state): State<SharedState>,
    MaybeAuth(authed): MaybeAuth,
    Path(room): Path<String>,
) -> ApiResult<Json<Value>> {
    let viewer = authed.as_ref().map(|a| a.user_id.as_ref());
    Ok(Json(
        state.services.rooms.room_summary(viewer, &room).await?,
    ))
}

#[derive(Deserialize)]
struct MutualRoomsParams {
    user_id: Option<String>,
    from: Option<String>,
}

/// GET /_matrix/client/v1/mutual_rooms (spec: client-server "Mutual rooms"). Every shared room
/// fits one batch, so no `next_batch` is ever issued and any `from` is invalid.
async fn mutual_rooms(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Query(q): Query<MutualRoomsParams>,
) -> ApiResult<Json<Value>> {
    if q.from.is_some() {
        return Err(ApiError::invalid_param("Unknown pagination token"));
    }
    let other = q
        .user_id
        .ok_or_else(|| ApiError::invalid_param("user_id is required"))?;
    let other: OwnedUserId = OwnedUserId::try_from(other)
        .map_err(|e| ApiError::invalid_param(format!("Invalid user ID: {e}")))?;
    let joined = state
        .services
        .rooms
        .mutual_rooms(&authed.user_id, &other)
        .await?;
    Ok(Json(json!({ "joined": joined, "count": joined.len() })))
}
