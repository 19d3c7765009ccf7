//! Push rules (spec: client-server "Push notifications", `/pushrules`).

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use myelin_service::users::push_rules::{NewRuleBody, Placement};
use ruma::push::Action;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    extract::{Auth, JsonBody, Query},
    SharedState,
};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/_matrix/client/v3/pushrules/", get(all_rules))
        .route("/_matrix/client/v3/pushrules", get(all_rules))
        .route("/_matrix/client/v3/pushrules/global/", get(global_rules))
        .route("/_matrix/client/v3/pushrules/global", get(global_rules))
        .route(
            "/_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .route(
            "/_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}/enabled",
            get(get_enabled).put(put_enabled),
        )
        .route(
            "/_matrix/client/v3/pushrules/{scope}/{kind}/{rule_id}/actions",
            get(get_actions).put(put_actions),
        )
}

type RulePath = Path<(String, String, String)>;

/// Only the `global` scope exists.
fn global_scope(scope: &str) -> ApiResult<()> {
    if scope == "global" {
        Ok(())
    } else {
        Err(ApiError::invalid_param(format!(
            "Unknown push rule scope {scope:?}"
        )))
    }
}

/// GET /_matrix/client/v3/pushrules/.
async fn all_rules(State(state): State<SharedState>, Auth(authed): Auth) -> ApiResult<Json<Value>> {
    let rules = state
        .services
        .users
        .push_rules_json(&authed.user_id)
        .await?;
    Ok(Json(json!({ "global": rules })))
}

/// GET /_matrix/client/v3/pushrules/global/.
async fn global_rules(
    State(state): State<SharedState>,
    Auth(authed): Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        state
            .services
            .users
            .push_rules_json(&authed.user_id)
            .await?,
    ))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
async fn get_rule(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    Ok(Json(
        state
            .services
            .users
            .push_rule(&authed.user_id, &kind, &rule_id)
            .await?,
    ))
}

#[derive(Deserialize, Default)]
struct PlacementParams {
    before: Option<String>,
    after: Option<String>,
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
async fn put_rule(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
    Query(placement): Query<PlacementParams>,
    JsonBody(body): JsonBody<NewRuleBody>,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    let placement = Placement {
        before: placement.before,
        after: placement.after,
    };
    state
        .services
        .users
        .set_push_rule(&authed.user_id, &kind, &rule_id, body, placement)
        .await?;
    Ok(Json(json!({})))
}

/// DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
async fn delete_rule(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    state
        .services
        .users
        .delete_push_rule(&authed.user_id, &kind, &rule_id)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.
async fn get_enabled(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    let rule = state
        .services
        .users
        .push_rule(&authed.user_id, &kind, &rule_id)
        .await?;
    Ok(Json(json!({ "enabled": rule["enabled"] })))
}

#[derive(Deserialize)]
struct EnabledBody {
    enabled: bool,
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.
async fn put_enabled(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
    JsonBody(body): JsonBody<EnabledBody>,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    state
        .services
        .users
        .set_push_rule_enabled(&authed.user_id, &kind, &rule_id, body.enabled)
        .await?;
    Ok(Json(json!({})))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.
async fn get_actions(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    let rule = state
        .services
        .users
        .push_rule(&authed.user_id, &kind, &rule_id)
        .await?;
    Ok(Json(json!({ "actions": rule["actions"] })))
}

#[derive(Deserialize)]
struct ActionsBody {
    actions: Vec<Action>,
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.
async fn put_actions(
    State(state): State<SharedState>,
    Auth(authed): Auth,
    Path((scope, kind, rule_id)): RulePath,
    JsonBody(body): JsonBody<ActionsBody>,
) -> ApiResult<Json<Value>> {
    global_scope(&scope)?;
    state
        .services
        .users
        .set_push_rule_actions(&authed.user_id, &kind, &rule_id, body.actions)
        .await?;
    Ok(Json(json!({})))
}
