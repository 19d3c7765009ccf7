//! `PUT /_matrix/federation/v1/send/{txnId}`: a transaction of PDUs and EDUs from another
//! server. Each PDU gets its own result (one bad PDU never poisons the others); the response is
//! stored, so a retried transaction is answered the same without being processed again.

use std::collections::BTreeMap;

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, ServerName, UserId,
};
use serde::Deserialize;
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use crate::federation::{EduKind, IngestOutcome};
use crate::rooms::{Membership, RoomState};
use crate::{Inbound, ServiceError, ServiceResult};

/// The body of an incoming transaction.
#[derive(Debug, Deserialize)]
pub struct IncomingTransaction {
    pub origin: String,
    #[serde(default)]
    pub origin_server_ts: u64,
    #[serde(default)]
    pub pdus: Vec<Box<RawJsonValue>>,
    #[serde(default)]
    pub edus: Vec<Edu>,
}

#[derive(Debug, Deserialize)]
pub struct Edu {
    pub edu_type: String,
    #[serde(default)]
    pub content: Value,
}

/// Just enough of a PDU to route it.
#[derive(Deserialize)]
struct PduHead {
    room_id: Option<OwnedRoomId>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl Inbound {
    /// Processes a transaction from `origin` and returns its response body.
    pub async fn federation_receive_transaction(
        &self,
        origin: &ServerName,
        txn_id: &str,
        txn: IncomingTransaction,
    ) -> ServiceResult<Value> {
        self.ctx.refuse_blocked(origin)?;
        if txn.origin != origin.as_str() {
            return Err(ServiceError::Forbidden(format!(
                "the transaction says it is from {}, but {origin} signed it",
                txn.origin
            )));
        }
        let config = &self.ctx.federation.config;
        if txn.pdus.len() > config.max_pdus_per_txn || txn.edus.len() > config.max_edus_per_txn {
            return Err(ServiceError::BadJson(format!(
                "a transaction carries at most {} PDUs and {} EDUs",
                config.max_pdus_per_txn, config.max_edus_per_txn
            )));
        }
        self.outbox.destination_back_online(origin);
        if let Some(stored) = self
            .ctx
            .storage
            .received_txn(origin.as_str(), txn_id)
            .await?
        {
            if let Ok(answer) = serde_json::from_str(&stored) {
                return Ok(answer);
            }
        }
        // Keys before messages: to-device messages (room keys) and device-list changes are
        // applied before the PDUs they may be needed to decrypt, the other EDUs (receipts of
        // events in this transaction) after them.
        let (keys_first, edus): (Vec<Edu>, Vec<Edu>) = txn
            .edus
            .into_iter()
            .partition(|e| EduKind::parse(&e.edu_type).is_some_and(EduKind::goes_before_pdus));
        for edu in keys_first {
            self.receive_edu_logged(origin, &edu).await;
        }
        let mut results = BTreeMap::new();
        for raw in &txn.pdus {
            let (event_id, result) = self.receive_pdu(origin, raw).await;
            if let Some(event_id) = event_id {
                results.insert(event_id.to_string(), result);
            }
        }
        for edu in edus {
            self.receive_edu_logged(origin, &edu).await;
        }
        let answer = json!({ "pdus": results });
        self.ctx
            .storage
            .record_received_txn(
                origin.as_str(),
                txn_id,
                answer.to_string(),
                self.ctx.now_ms(),
            )
            .await?;
        Ok(answer)
    }

    /// One PDU of a transaction: its event ID (if it can be told) and its result.
    async fn receive_pdu(
        &self,
        origin: &ServerName,
        raw: &RawJsonValue,
    ) -> (Option<OwnedEventId>, Value) {
        let head: PduHead = match serde_json::from_str(raw.get()) {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(%origin, error = %e, "unreadable PDU in a transaction");
                return (None, Value::Null);
            }
        };
        let Some(room_id) = head.room_id else {
            tracing::info!(%origin, kind = ?head.kind, "PDU without a room ID in a transaction");
            return (None, Value::Null);
        };
        // The room first: one lookup gives its existence, ACL, rules and membership. PDUs of
        // rooms we are not in get no result, as they have no event ID we could compute.
        let current = match self.rooms.known_room_state(&room_id).await {
            Ok(current) => current,
            Err(e) => {
                tracing::info!(%origin, %room_id, error = %e, "PDU refused");
                return (None, Value::Null);
            }
        };
        // Parsed whole even when over the size limit, so that the refusal names the event.
        let object = match myelin_room::parse_received(raw) {
            Ok(object) => object,
            Err(e) => return (None, json!({ "error": e.to_string() })),
        };
        let event_id = myelin_room::received_event_id(&object, &current.rules).ok();
        let outcome = match crate::context::check_pdu_size(raw) {
            Ok(()) => self.receive_room_pdu(origin, current, object).await,
            Err(e) => Err(e),
        };
        let result = match outcome {
            Ok(IngestOutcome::Accepted | IngestOutcome::AlreadyKnown) => json!({}),
            // A soft-failed event is not an error for the sender.
            Ok(IngestOutcome::SoftFailed(_)) => json!({}),
            // Rejected by the auth rules is still processed (kept as rejected, as Synapse answers);
            // only a PDU we could not process carries an error.
            Ok(IngestOutcome::Rejected(why)) => {
                tracing::info!(%origin, %room_id, %why, "PDU rejected by the auth rules");
                json!({})
            }
            Err(e) => {
                tracing::info!(%origin, %room_id, error = %e, "PDU refused");
                json!({ "error": e.to_string() })
            }
        };
        (event_id, result)
    }

    async fn receive_room_pdu(
        &self,
        origin: &ServerName,
        current: Arc<RoomState>,
        object: CanonicalJsonObject,
    ) -> ServiceResult<IngestOutcome> {
        crate::rooms::acl_allows(&current, origin)?;
        if !origin_may_send(&current, origin, &object) {
            return Err(ServiceError::Forbidden(format!(
                "{origin} has no member in {}",
                current.room_id
            )));
        }
        self.ingest.ingest_pdu(origin, current, object).await
    }

    async fn receive_edu_logged(&self, origin: &ServerName, edu: &Edu) {
        if let Err(e) = self.receive_edu(origin, edu).await {
            tracing::info!(%origin, edu_type = %edu.edu_type, error = %e, "EDU ignored");
        }
    }

    /// An EDU about the origin's users: typing, receipts, presence, device lists, to-device.
    async fn receive_edu(&self, origin: &ServerName, edu: &Edu) -> ServiceResult<()> {
        let Some(kind) = EduKind::parse(&edu.edu_type) else {
            tracing::debug!(%origin, edu_type = %edu.edu_type, "EDU type not handled");
            return Ok(());
        };
        let content = &edu.content;
        match kind {
            EduKind::Typing => self.ephemeral.receive_typing(origin, content).await,
            EduKind::Receipt => self.ephemeral.receive_receipts(origin, content).await,
            EduKind::Presence => self.ephemeral.receive_presence(origin, content).await,
            EduKind::DeviceListUpdate => {
                self.e2ee.receive_device_list_update(origin, content).await
            }
            EduKind::SigningKeyUpdate => {
                self.e2ee.receive_signing_key_update(origin, content).await
            }
            EduKind::DirectToDevice => self.e2ee.receive_direct_to_device(origin, content).await,
        }
    }
}

/// Whether `origin` may hand us this PDU of the room: it has a joined member there (a server in
/// the room sends its events and relays the joins and leaves it accepted), or the PDU is the
/// membership of one of its own users by that user (its join, knock or leave reaching us
/// before we have seen it in the room). Any other server has no business in the room's DAG,
/// and answering it would make us fetch state and events from it.
fn origin_may_send(current: &RoomState, origin: &ServerName, pdu: &CanonicalJsonObject) -> bool {
    if current
        .member_entries()
        .any(|(u, e)| u.server_name() == origin && e.membership() == Some(Membership::Join))
    {
        return true;
    }
    let text = |field: &str| match pdu.get(field) {
        Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let sender = text("sender").and_then(|s| <&UserId>::try_from(s).ok());
    text("type") == Some("m.room.member")
        && sender
            .is_some_and(|s| s.server_name() == origin && text("state_key") == Some(s.as_str()))
}
