//! To-device messages: `PUT /sendToDevice/{type}/{txnId}`, delivery in `/sync` until the
//! client acknowledges them, and the `m.direct_to_device` EDU both ways.

use crate::federation::EduKind;
use std::collections::BTreeMap;

use myelin_core::StreamPos;
use myelin_storage::{QueuedToDevice, ToDeviceMessage, ToDeviceTxn};
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use crate::{accounts::Authed, E2ee, ServiceError, ServiceResult};

/// How many to-device messages one `/sync` response carries at most.
pub const TO_DEVICE_PER_SYNC: usize = 100;

/// user → device ID (or `*`) → content.
pub type ToDeviceMessages = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;

impl E2ee {
    /// `PUT /sendToDevice/{eventType}/{txnId}`: local recipients get the messages queued,
    /// remote ones through one `m.direct_to_device` EDU per server, all in one transaction that
    /// also records the txnId, so a retried request delivers nothing twice.
    ///
    /// Remote recipients on servers that share no room with the sender are dropped (and logged)
    /// rather than failing the request: the answer has no per-recipient errors, and refusing the
    /// whole batch would make the client retry it forever, its local and reachable recipients
    /// never getting theirs. A request naming more servers than configured is refused whole.
    pub async fn send_to_device(
        &self,
        authed: &Authed,
        event_type: &str,
        txn_id: &str,
        messages: ToDeviceMessages,
    ) -> ServiceResult<()> {
        self.check_fan_out(&authed.user_id, messages.keys().map(|u| u.server_name()))?;
        let own = self.ctx.server_name().to_owned();
        let mut remote: BTreeMap<OwnedServerName, ToDeviceMessages> = BTreeMap::new();
        let mut local = ToDeviceMessages::new();
        for (user, devices) in messages {
            if user.server_name() == own {
                local.insert(user, devices);
            } else {
                remote
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .insert(user, devices);
            }
        }
        let queued = self
            .expand_to_device(&authed.user_id, event_type, &local)
            .await?;
        let edus = self
            .direct_to_device_edus(authed, event_type, txn_id, remote)
            .await?;
        let txn = ToDeviceTxn {
            user_id: authed.user_id.clone(),
            device_id: authed.device_id.clone(),
            event_type: event_type.to_owned(),
            txn_id: txn_id.to_owned(),
        };
        if !self
            .ctx
            .storage
            .queue_to_device_once(&txn, &queued, &edus)
            .await?
        {
            return Ok(());
        }
        self.to_device_to_appservices(&authed.user_id, event_type, &local);
        if !queued.is_empty() {
            self.ctx.notifier.notify(local.keys().map(|u| &**u));
        }
        let destinations: Vec<OwnedServerName> =
            edus.into_iter().map(|(server, _)| server).collect();
        self.outbox.wake_senders(&destinations);
        Ok(())
    }

    /// To-device messages for users of appservices that receive them (MSC2409), in the
    /// transaction format (`to_user_id`, `to_device_id`).
    fn to_device_to_appservices(
        &self,
        sender: &ruma::UserId,
        event_type: &str,
        local: &ToDeviceMessages,
    ) {
        if self.ctx.appservices.is_empty() {
            return;
        }
        let mut taken = false;
        for (user, devices) in local {
            for (device, content) in devices {
                let message = json!({
                    "type": event_type,
                    "sender": sender,
                    "to_user_id": user,
                    "to_device_id": device,
                    "content": content,
                });
                taken |= self.ctx.appservices.push_to_device(user, &message);
            }
        }
        // Wakes the push workers even when no device of the recipients queued anything.
        if taken {
            self.ctx.notifier.notify(local.keys().map(|u| &**u));
        }
    }

    /// One `(destination, EDU JSON)` per remote server that may hear from the sender.
    async fn direct_to_device_edus(
        &self,
        authed: &Authed,
        event_type: &str,
        txn_id: &str,
        remote: BTreeMap<OwnedServerName, ToDeviceMessages>,
    ) -> ServiceResult<Vec<(OwnedServerName, String)>> {
        if remote.is_empty() || !self.ctx.federation.config.enabled {
            return Ok(Vec::new());
        }
        let sharing = self.servers_sharing_rooms(&authed.user_id).await?;
        let mut edus = Vec::new();
        for (server, messages) in remote {
            if !sharing.contains(&server) {
                tracing::info!(
                    sender = %authed.user_id,
                    %server,
                    "dropping to-device messages for a server that shares no room with the sender"
                );
                continue;
            }
            // The message ID lets the receiver drop a retried EDU; the sender's device and
            // transaction ID make it unique per client request.
            let content = json!({
                "sender": authed.user_id,
                "type": event_type,
                "message_id": format!("{}/{}", authed.device_id, txn_id),
                "messages": messages,
            });
            edus.push((server.clone(), EduKind::DirectToDevice.wire(content)));
        }
        Ok(edus)
    }

    /// Queues messages for local users (`*` meaning every device) and wakes their `/sync`.
    pub(crate) async fn deliver_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        messages: ToDeviceMessages,
    ) -> ServiceResult<()> {
        let queued = self.expand_to_device(sender, event_type, &messages).await?;
        if queued.is_empty() {
            return Ok(());
        }
        self.ctx.storage.queue_to_device(&queued).await?;
        self.ctx.notifier.notify(messages.keys().map(|u| &**u));
        Ok(())
    }

    /// One message per recipient device, `*` expanded to every device of the user.
    async fn expand_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        messages: &ToDeviceMessages,
    ) -> ServiceResult<Vec<ToDeviceMessage>> {
        let mut queued = Vec::new();
        for (recipient, devices) in messages {
            for (device, content) in devices {
                if !content.is_object() {
                    return Err(ServiceError::BadJson(
                        "to-device message content must be an object".into(),
                    ));
                }
                let device_ids = if device == "*" {
                    self.ctx
                        .storage
                        .list_devices(recipient)
                        .await?
                        .into_iter()
                        .map(|d| d.device_id)
                        .collect()
                } else {
                    vec![device.as_str().into()]
                };
                for device_id in device_ids {
                    queued.push(ToDeviceMessage {
                        recipient: recipient.clone(),
                        device_id,
                        sender: sender.to_owned(),
                        event_type: event_type.to_owned(),
                        content_json: content.to_string(),
                    });
                }
            }
        }
        Ok(queued)
    }

    /// The to-device part of a `/sync`: drops what the client acknowledged (everything up to
    /// `acked`, when this is an incremental sync), then returns the next messages up to `up_to`
    /// (about `limit` of them: messages queued at one position go out together, so a position's
    /// messages are never split) and the position the next token must carry.
    pub(crate) async fn to_device_for_sync(
        &self,
        authed: &Authed,
        acked: Option<StreamPos>,
        up_to: StreamPos,
        limit: usize,
    ) -> ServiceResult<(Vec<Value>, StreamPos)> {
        let limit = limit.max(1);
        let (user, device) = (&authed.user_id, authed.device_id.as_str());
        let storage = &self.ctx.storage;
        // One read in the common case; the acknowledging delete (a write) only when the client
        // did acknowledge something. One message past the limit tells whether the last
        // position's messages are all in.
        let mut batch = storage
            .to_device_messages(user, device, StreamPos::ZERO, up_to, limit + 1)
            .await?;
        let after = acked.unwrap_or(StreamPos::ZERO);
        if acked.is_some() && batch.first().is_some_and(|m| m.stream_pos <= after) {
            storage.delete_to_device(user, device, after).await?;
            batch = storage
                .to_device_messages(user, device, after, up_to, limit + 1)
                .await?;
        }
        let delivered_up_to = if batch.len() <= limit {
            up_to
        } else {
            let storage = self.ctx.storage.as_ref();
            complete_last_position(storage, authed, after, &mut batch, limit).await?
        };
        let events = batch
            .into_iter()
            .map(|m| {
                let content: Value =
                    serde_json::from_str(&m.message.content_json).unwrap_or_else(|_| json!({}));
                json!({ "sender": m.message.sender, "type": m.message.event_type, "content": content })
            })
            .collect();
        Ok((events, delivered_up_to))
    }

    /// `m.direct_to_device` from `origin`: the sender must be one of its users, recipients ours.
    pub(crate) async fn receive_direct_to_device(
        &self,
        origin: &ruma::ServerName,
        content: &Value,
    ) -> ServiceResult<()> {
        #[derive(serde::Deserialize)]
        struct DirectToDevice {
            sender: OwnedUserId,
            #[serde(rename = "type")]
            event_type: String,
            messages: BTreeMap<OwnedUserId, Map<String, Value>>,
        }
        let edu: DirectToDevice = serde_json::from_value(content.clone())
            .map_err(|e| ServiceError::BadJson(format!("m.direct_to_device: {e}")))?;
        if edu.sender.server_name() != origin {
            return Err(ServiceError::Forbidden(format!(
                "{origin} cannot send for {}",
                edu.sender
            )));
        }
        let own = self.ctx.server_name();
        let local: ToDeviceMessages = edu
            .messages
            .into_iter()
            .filter(|(user, _)| user.server_name() == own)
            .map(|(user, devices)| (user, devices.into_iter().collect()))
            .collect();
        // Appservices hear of remote senders' messages as of local ones (MSC2409).
        self.to_device_to_appservices(&edu.sender, &edu.event_type, &local);
        self.deliver_to_device(&edu.sender, &edu.event_type, local)
            .await
    }
}

/// A batch read one past `limit` is cut to `limit`, which may stop in the middle of the
/// messages queued at its last position (one request queues them all at one position). The
/// token can only say "up to a position", so unless the message past the limit is of a later
/// position, either the batch drops that last position's messages (they come next time) or,
/// when the batch is that one position alone, it takes all of them.
async fn complete_last_position(
    storage: &dyn myelin_storage::Storage,
    authed: &Authed,
    after: StreamPos,
    batch: &mut Vec<QueuedToDevice>,
    limit: usize,
) -> ServiceResult<StreamPos> {
    let beyond = batch.get(limit).map(|m| m.stream_pos);
    batch.truncate(limit);
    let last = batch.last().map(|m| m.stream_pos).unwrap_or(after);
    if beyond.is_some_and(|b| b > last) {
        return Ok(last);
    }
    let first = batch.first().map(|m| m.stream_pos).unwrap_or(after);
    if first == last {
        *batch = storage
            .to_device_messages(
                &authed.user_id,
                authed.device_id.as_str(),
                after,
                last,
                10_000,
            )
            .await?;
        return Ok(last);
    }
    batch.retain(|m| m.stream_pos < last);
    Ok(StreamPos(last.0 - 1))
}
