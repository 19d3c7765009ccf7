//! Delivery to push gateways (spec: Push Gateway API, `POST /_matrix/push/v1/notify`): one worker
//! per HTTP pusher drains its durable queue in order, woken by a `Notify` when a commit queued
//! something for it. A queued row is deleted only after the gateway's 200, so a crash between
//! the request and the deletion sends that one notification again (what the protocol allows);
//! nothing queued is lost. Failures back off exponentially; a pushkey the gateway names in
//! `rejected` deletes the pusher.

use std::sync::{Arc, Weak};
use std::time::Duration;

use myelin_federation::ClientOptions;
use myelin_storage::{EventRecord, PusherRecord, QueuedPush};
use ruma::push::{Action, Tweak};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::Push;
use crate::ServiceResult;

/// Notifications read from the queue at a time.
const BATCH: usize = 20;
/// The first retry delay after a failure, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How long one request to a gateway may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the gateway made of one notification.
enum Outcome {
    /// 200, and our pushkey not rejected: done.
    Delivered,
    /// The gateway rejected the pushkey: the pusher goes.
    Rejected,
    /// The notification can never be delivered (a 4xx other than 429, or a URL refused by the
    /// egress filter): dropped with a warning.
    Dropped(String),
    /// Retry later.
    Failed(String),
}

/// The worker of one pusher: runs until the pusher is gone or the server stops.
pub(super) async fn run_worker(push: Weak<Push>, pusher_id: i64, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(this) = push.upgrade() else {
            return;
        };
        match this.drain(pusher_id).await {
            Ok(Drained::Empty) => {
                backoff = FIRST_BACKOFF;
                drop(this);
                wake.notified().await;
            }
            Ok(Drained::Later(wait)) => {
                backoff = FIRST_BACKOFF;
                drop(this);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = wake.notified() => {}
                }
            }
            Ok(Drained::PusherGone) => {
                this.worker_ended(pusher_id);
                return;
            }
            Err(e) => {
                tracing::info!(pusher_id, error = %e, retry_in = ?backoff, "push delivery failed");
                drop(this);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

pub(super) enum Drained {
    Empty,
    PusherGone,
    /// Something is queued that is not due yet (an e-mail digest waits for its delay).
    Later(Duration),
}

impl Push {
    /// Sends the pusher's queue in order until it is empty; an error leaves the rest queued.
    async fn drain(&self, pusher_id: i64) -> Result<Drained, String> {
        let storage = &self.ctx.storage;
        loop {
            let Some(pusher) = storage.pusher(pusher_id).await.map_err(|e| e.to_string())? else {
                return Ok(Drained::PusherGone);
            };
            if pusher.kind == "email" {
                return self.drain_email(&pusher).await;
            }
            let queued = storage
                .queued_pushes(pusher_id, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if queued.is_empty() {
                return Ok(Drained::Empty);
            }
            for item in queued {
                match self.deliver(&pusher, &item).await {
                    Outcome::Delivered => {}
                    Outcome::Dropped(why) => {
                        tracing::warn!(pusher_id, event_id = %item.event_id, why, "push dropped");
                    }
                    Outcome::Rejected => {
                        tracing::info!(pusher_id, "push gateway rejected the pushkey");
                        storage
                            .delete_pusher_by_id(pusher_id)
                            .await
                            .map_err(|e| e.to_string())?;
                        self.forget_pushers(&pusher.user_id);
                        return Ok(Drained::PusherGone);
                    }
                    Outcome::Failed(why) => return Err(why),
                }
                storage
                    .delete_queued_push(pusher_id, item.stream_pos)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }

    /// One `POST /_matrix/push/v1/notify`.
    async fn deliver(&self, pusher: &PusherRecord, item: &QueuedPush) -> Outcome {
        let data: Map<String, Value> = serde_json::from_str(&pusher.data).unwrap_or_default();
        let Some(url) = data.get("url").and_then(Value::as_str) else {
            return Outcome::Dropped("the pusher has no URL".into());
        };
        let url = match reqwest::Url::parse(url) {
            Ok(url) => url,
            Err(e) => return Outcome::Dropped(e.to_string()),
        };
        if let Err(e) = self.ctx.egress.check_url(&url) {
            return Outcome::Dropped(e.to_string());
        }
        let body = match self.notify_body(pusher, &data, item).await {
            Ok(Some(body)) => body,
            Ok(None) => return Outcome::Dropped("the event is gone".into()),
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return Outcome::Failed(e),
        };
        let response = match client.post(url).json(&body).send().await {
            Ok(response) => response,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let status = response.status();
        if status.is_client_error() && status.as_u16() != 429 {
            return Outcome::Dropped(format!("the gateway answered {status}"));
        }
        if !status.is_success() {
            return Outcome::Failed(format!("the gateway answered {status}"));
        }
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let rejected = answer
            .get("rejected")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .any(|k| k.as_str() == Some(pusher.pushkey.as_str()))
            });
        if rejected {
            Outcome::Rejected
        } else {
            Outcome::Delivered
        }
    }

    /// The client every delivery shares, built once through the egress filter.
    fn client(&self) -> Result<&reqwest::Client, String> {
        let options = ClientOptions {
            timeout: REQUEST_TIMEOUT,
            ..ClientOptions::default()
        };
        self.ctx
            .egress
            .shared_client(&self.client, &options)
            .map_err(|e| e.to_string())
    }

    /// The notification as the pusher's `format` wants it; `None` if the event is gone.
    async fn notify_body(
        &self,
        pusher: &PusherRecord,
        data: &Map<String, Value>,
        item: &QueuedPush,
    ) -> ServiceResult<Option<Value>> {
        let Some(record) = self.ctx.storage.get_event(&item.event_id).await? else {
            return Ok(None);
        };
        let unread = self
            .ctx
            .storage
            .rooms_with_unread_notifications(&pusher.user_id)
            .await?;
        let actions: Vec<Action> = serde_json::from_str(&item.actions).unwrap_or_default();
        let mut device_data = data.clone();
        device_data.remove("url");
        let mut notification = json!({
            "event_id": item.event_id,
            "room_id": item.room_id,
            "counts": {"unread": unread},
            "prio": priority(&record),
            "devices": [{
                "app_id": pusher.app_id,
                "pushkey": pusher.pushkey,
                "pushkey_ts": pusher.created_ms / 1000,
                "data": device_data,
                "tweaks": tweaks(&actions),
            }],
        });
        if data.get("format").and_then(Value::as_str) != Some("event_id_only") {
            self.add_event_fields(&mut notification, pusher, &record)
                .await?;
        }
        Ok(Some(json!({ "notification": notification })))
    }

    /// The event-related fields of the full format: type, sender (and their display name),
    /// content, the room's name and alias, whether the user is the target of a member event.
    async fn add_event_fields(
        &self,
        notification: &mut Value,
        pusher: &PusherRecord,
        record: &EventRecord,
    ) -> ServiceResult<()> {
        let pdu = &record.pdu;
        notification["type"] = json!(pdu.kind.to_string());
        notification["sender"] = json!(pdu.sender);
        notification["content"] = pdu.content_value();
        if pdu.kind.to_string() == "m.room.member" {
            notification["user_is_target"] =
                json!(pdu.state_key.as_deref() == Some(pusher.user_id.as_str()));
        }
        let names = self.event_names(record).await?;
        for (field, value) in [
            ("sender_display_name", names.sender_display_name),
            ("room_name", names.room_name),
            ("room_alias", names.room_alias),
        ] {
            if let Some(value) = value {
                notification[field] = json!(value);
            }
        }
        Ok(())
    }

    /// The sender's display name and the room's name and alias, as of the event.
    pub(super) async fn event_names(&self, record: &EventRecord) -> ServiceResult<EventNames> {
        let pdu = &record.pdu;
        let keys = vec![
            ("m.room.member".to_owned(), pdu.sender.to_string()),
            ("m.room.name".to_owned(), String::new()),
            ("m.room.canonical_alias".to_owned(), String::new()),
        ];
        let state = self
            .ctx
            .storage
            .state_entries_at(record.state_snapshot, &keys)
            .await?;
        let ids: Vec<_> = state.values().cloned().collect();
        let mut names = EventNames::default();
        for event in self.ctx.storage.get_events(&ids).await? {
            let content = event.pdu.content_value();
            let (slot, value) = match event.pdu.kind.to_string().as_str() {
                "m.room.member" => (&mut names.sender_display_name, content.get("displayname")),
                "m.room.name" => (&mut names.room_name, content.get("name")),
                _ => (&mut names.room_alias, content.get("alias")),
            };
            if let Some(Value::String(value)) = value {
                *slot = Some(value.clone());
            }
        }
        Ok(names)
    }
}

/// What a notification says about who sent it and where.
#[derive(Debug, Default)]
pub(super) struct EventNames {
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
}

/// `high` for messages (plain or encrypted), `low` for the rest.
fn priority(record: &EventRecord) -> &'static str {
    match record.pdu.kind.to_string().as_str() {
        "m.room.message" | "m.room.encrypted" => "high",
        _ => "low",
    }
}

/// The `set_tweak` actions as the `tweaks` object (`highlight` without a value means true).
fn tweaks(actions: &[Action]) -> Value {
    let mut tweaks = Map::new();
    for action in actions {
        if let Action::SetTweak(tweak) = action {
            if let Ok(Value::Object(o)) = serde_json::to_value(tweak) {
                let name = o
                    .get("set_tweak")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let value = o.get("value").cloned().unwrap_or(match tweak {
                    Tweak::Highlight(_) => Value::Bool(true),
                    _ => Value::Null,
                });
                if !name.is_empty() {
                    tweaks.insert(name.to_owned(), value);
                }
            }
        }
    }
    Value::Object(tweaks)
}
