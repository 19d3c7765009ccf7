//! Transactions (spec: Server-Server API, "Transactions"): `PUT /send/{txnId}`, answered by
//! the `Inbound` subsystem.

use axum::{
    extract::{Path, State},
    routing::put,
    Json, Router,
};
use myelin_service::federation::IncomingTransaction;
use serde_json::Value;

use super::FederationJson;
use crate::{error::ApiResult, SharedState};

pub fn routes() -> Router<SharedState> {
    Router::new().route(
        "/_matrix/federation/v1/send/{txn_id}",
        put(send_transaction),
    )
}

/// PUT /_matrix/federation/v1/send/{txnId}: the PDUs and EDUs of one transaction.
async fn send_transaction(
    State(state): State<SharedState>,
    Path(txn_id): Path<String>,
    FederationJson { origin, body }: FederationJson<IncomingTransaction>,
) -> ApiResult<Json<Value>> {
    let answer = state
        .services
        .inbound
        .federation_receive_transaction(&origin, &txn_id, body)
        .await?;
    Ok(Json(answer))
}
