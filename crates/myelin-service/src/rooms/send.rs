//! Sending: messages, state events and redactions from clients.

use myelin_room::EventTemplate;
use ruma::{EventId, OwnedEventId, RoomId};
use serde_json::{json, Value};

use super::txn::TxnEndpoint;
use super::Append;
use crate::{accounts::Authed, RateAction, Rooms, ServiceError, ServiceResult};

impl Rooms {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`: idempotent per device and txnId.
    pub async fn send_message(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        kind: &str,
        txn_id: &str,
        content: Value,
    ) -> ServiceResult<OwnedEventId> {
        self.send_message_at(authed, room_id, kind, txn_id, content, None)
            .await
    }

    /// [`Rooms::send_message`] with an `origin_server_ts` of the sender's choice (an application
    /// service's `?ts=`; ignored for anyone else).
    pub async fn send_message_at(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        kind: &str,
        txn_id: &str,
        content: Value,
        ts: Option<u64>,
    ) -> ServiceResult<OwnedEventId> {
        let txn_key = TxnEndpoint::Send.key(txn_id);
        if let Some(id) = self
            .ctx
            .storage
            .event_for_txn(&authed.user_id, authed.device_id.as_str(), &txn_key)
            .await?
        {
            return Ok(id);
        }
        self.check_send_rate(authed)?;
        if kind == "m.room.redaction" {
            let target = content
                .get("redacts")
                .and_then(Value::as_str)
                .ok_or_else(|| ServiceError::BadJson("redaction needs content.redacts".into()))?;
            let target =
                OwnedEventId::try_from(target).map_err(|e| ServiceError::BadJson(e.to_string()))?;
            return self
                .redact_with_txn(
                    authed,
                    room_id,
                    &target,
                    &txn_key,
                    content.get("reason").and_then(Value::as_str),
                )
                .await;
        }
        let template = EventTemplate {
            kind: kind.into(),
            state_key: None,
            content,
            redacts: None,
        };
        let ts = ts.filter(|_| authed.appservice.is_some());
        self.append_with_txn(authed, room_id, template, &txn_key, ts)
            .await
    }

    /// The per-user send budget, except for appservices registered with `rate_limited: false`.
    fn check_send_rate(&self, authed: &Authed) -> ServiceResult<()> {
        let exempt = authed
            .appservice
            .as_deref()
            .and_then(|id| self.ctx.appservices.by_id(id))
            .is_some_and(|a| !a.rate_limited);
        if exempt {
            return Ok(());
        }
        self.ctx
            .check_rate(RateAction::Message, authed.user_id.as_str())
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: Value,
    ) -> ServiceResult<OwnedEventId> {
        self.send_state_at(authed, room_id, kind, state_key, content, None)
            .await
    }

    /// [`Rooms::send_state`] with an application service's `?ts=`.
    pub async fn send_state_at(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: Value,
        ts: Option<u64>,
    ) -> ServiceResult<OwnedEventId> {
        if kind == "m.room.create" {
            return Err(ServiceError::Forbidden(
                "m.room.create cannot be changed".into(),
            ));
        }
        self.check_send_rate(authed)?;
        let closes_to_guests = Rooms::closes_to_guests(kind, &content);
        let template = EventTemplate {
            kind: kind.into(),
            state_key: Some(state_key.into()),
            content,
            redacts: None,
        };
        let append = Append {
            sender: authed.user_id.clone(),
            template,
            txn: None,
            prebuilt: None,
            ts: ts.filter(|_| authed.appservice.is_some()),
        };
        let event_id = self.append_event(room_id, append).await?.0.event_id.clone();
        if closes_to_guests {
            // The change is made; a failure to remove a guest must not report it as failed.
            if let Err(e) = self.remove_guests(room_id).await {
                tracing::warn!(%room_id, error = %e, "removing guests failed");
            }
        }
        Ok(event_id)
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: own events, or any with the `redact` level.
    pub async fn redact(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        target: &EventId,
        txn_id: &str,
        reason: Option<&str>,
    ) -> ServiceResult<OwnedEventId> {
        let txn_key = TxnEndpoint::Redact.key(txn_id);
        if let Some(id) = self
            .ctx
            .storage
            .event_for_txn(&authed.user_id, authed.device_id.as_str(), &txn_key)
            .await?
        {
            return Ok(id);
        }
        self.check_send_rate(authed)?;
        self.redact_with_txn(authed, room_id, target, &txn_key, reason)
            .await
    }

    /// A redaction under an already scoped transaction key (from `/redact` or `/send`).
    async fn redact_with_txn(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        target: &EventId,
        txn_key: &str,
        reason: Option<&str>,
    ) -> ServiceResult<OwnedEventId> {
        if let Some(id) = self
            .ctx
            .storage
            .event_for_txn(&authed.user_id, authed.device_id.as_str(), txn_key)
            .await?
        {
            return Ok(id);
        }
        let state = self.room_state(room_id).await?;
        let record = self
            .ctx
            .storage
            .get_event(target)
            .await?
            .filter(|r| r.pdu.room_id == room_id);
        let Some(record) = record else {
            return Err(ServiceError::NotFound("Event not found".into()));
        };
        if record.pdu.sender != authed.user_id
            && state.user_power(&authed.user_id) < state.action_level("redact")
        {
            return Err(ServiceError::Forbidden(
                "You may not redact other users' events".into(),
            ));
        }
        let mut content = json!({});
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if state.rules.redaction.content_field_redacts {
            content["redacts"] = json!(target);
        }
        let template = EventTemplate {
            kind: "m.room.redaction".into(),
            state_key: None,
            content,
            redacts: Some(target.to_owned()),
        };
        self.append_with_txn(authed, room_id, template, txn_key, None)
            .await
    }

    /// Appends a client's event under its scoped transaction key ([`TxnEndpoint::key`]).
    async fn append_with_txn(
        &self,
        authed: &Authed,
        room_id: &RoomId,
        template: EventTemplate,
        txn_key: &str,
        ts: Option<u64>,
    ) -> ServiceResult<OwnedEventId> {
        let append = Append {
            sender: authed.user_id.clone(),
            template,
            txn: Some((authed.device_id.clone(), txn_key.to_owned())),
            prebuilt: None,
            ts,
        };
        match self.append_event(room_id, append).await {
            Ok((pdu, _)) => Ok(pdu.event_id.clone()),
            Err(e @ ServiceError::Storage(_)) => {
                // A concurrent request with the same txnId may have won the unique constraint.
                match self
                    .ctx
                    .storage
                    .event_for_txn(&authed.user_id, authed.device_id.as_str(), txn_key)
                    .await?
                {
                    Some(id) => Ok(id),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
