//! Questions the homeserver asks application services: the ping (MSC2659, spec: "Pinging the
//! appservice"), whether an unknown user or alias in an exclusive namespace should exist (the
//! appservice then creates the puppet or the portal room before answering), and third-party
//! protocol lookups forwarded to the appservices that declare the protocol (their protocol
//! instances given the `instance_id` of their network).

use std::time::Instant;

use ruma::{RoomAliasId, UserId};
use serde_json::{json, Value};

use super::Appservices;
use crate::accounts::Authed;
use crate::rooms::instance_id;
use crate::{ServiceError, ServiceResult};

/// Why a ping did not reach the appservice, for the errcodes of the ping endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingFailure {
    /// The registration has no URL.
    UrlNotSet,
    /// The appservice answered with an error status.
    BadStatus {
        status: u16,
        body: String,
    },
    ConnectionFailed(String),
    Timeout,
}

/// Largest answer read from an appservice query.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

impl Appservices {
    /// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: only the appservice itself may
    /// ping itself; answers the round trip in milliseconds.
    pub async fn ping(
        &self,
        authed: &Authed,
        appservice_id: &str,
        transaction_id: Option<String>,
    ) -> ServiceResult<u64> {
        let a = authed
            .appservice
            .as_deref()
            .and_then(|id| self.ctx.appservices.by_id(id))
            .filter(|a| a.id == appservice_id)
            .ok_or_else(|| {
                ServiceError::Forbidden("You may only ping your own appservice".into())
            })?;
        if a.url.is_none() {
            return Err(ServiceError::AppservicePing(PingFailure::UrlNotSet));
        }
        let mut body = json!({});
        if let Some(txn) = transaction_id {
            body["transaction_id"] = json!(txn);
        }
        let started = Instant::now();
        // A URL the egress filter refuses is an appservice that cannot be reached.
        let request = self
            .request(&a, reqwest::Method::POST, "_matrix/app/v1/ping", &[])
            .await
            .map_err(|e| {
                ServiceError::AppservicePing(PingFailure::ConnectionFailed(e.to_string()))
            })?;
        let response = request.json(&body).send().await.map_err(|e| {
            ServiceError::AppservicePing(if e.is_timeout() {
                PingFailure::Timeout
            } else {
                PingFailure::ConnectionFailed(e.to_string())
            })
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ServiceError::AppservicePing(PingFailure::BadStatus {
                status: status.as_u16(),
                body: body.chars().take(1000).collect(),
            }));
        }
        Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Before a local user is looked up: if none exists and an appservice claims the ID, asks
    /// it (`GET /_matrix/app/v1/users/{userId}`) so it can create its puppet. Failures only
    /// mean the user stays unknown.
    pub async fn ensure_user(&self, user_id: &UserId) -> ServiceResult<()> {
        if user_id.server_name() != self.ctx.server_name()
            || self.ctx.storage.get_user(user_id).await?.is_some()
        {
            return Ok(());
        }
        for a in &self.ctx.appservices.all().list {
            if a.url.is_none() || !a.is_user_in_namespace(user_id) {
                continue;
            }
            let path = format!(
                "_matrix/app/v1/users/{}",
                myelin_federation::path::encode_segment(user_id.as_str())
            );
            if self.ask(a, &path).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Before a local alias is resolved: if it names no room and an appservice claims it, asks
    /// it (`GET /_matrix/app/v1/rooms/{alias}`) so it can create the portal room.
    pub async fn ensure_alias(&self, alias: &RoomAliasId) -> ServiceResult<()> {
        if alias.server_name() != self.ctx.server_name()
            || self.ctx.storage.resolve_alias(alias).await?.is_some()
        {
            return Ok(());
        }
        for a in &self.ctx.appservices.all().list {
            if a.url.is_none() || !a.is_alias_in_namespace(alias) {
                continue;
            }
            let path = format!(
                "_matrix/app/v1/rooms/{}",
                myelin_federation::path::encode_segment(alias.as_str())
            );
            if self.ask(a, &path).await {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A yes/no query: a 2xx answer is yes.
    async fn ask(&self, a: &super::Appservice, path: &str) -> bool {
        let sent = match self.request(a, reqwest::Method::GET, path, &[]).await {
            Ok(request) => request.send().await,
            Err(e) => {
                tracing::warn!(appservice = %a.id, error = %e, "appservice query refused");
                return false;
            }
        };
        match sent {
            Ok(response) => response.status().is_success(),
            Err(e) => {
                tracing::warn!(appservice = %a.id, error = %e, "appservice query failed");
                false
            }
        }
    }

    /// A JSON answer of an appservice, `None` on any failure.
    async fn fetch(
        &self,
        a: &super::Appservice,
        path: &str,
        query: &[(String, String)],
    ) -> Option<Value> {
        let request = self
            .request(a, reqwest::Method::GET, path, query)
            .await
            .ok()?;
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// `GET /thirdparty/protocols`: each declared protocol's description, from its appservices
    /// (the first one's fields, every one's instances; as Synapse merges them).
    pub async fn thirdparty_protocols(&self) -> ServiceResult<Value> {
        let mut out = serde_json::Map::new();
        for a in &self.ctx.appservices.all().list {
            for protocol in &a.protocols {
                let Some(answer) = self.protocol_of(a, protocol).await else {
                    continue;
                };
                match out.get_mut(protocol) {
                    Some(known) => merge_instances(known, answer),
                    None => {
                        out.insert(protocol.clone(), answer);
                    }
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// `GET /thirdparty/protocol/{protocol}`: merged over the appservices declaring it.
    pub async fn thirdparty_protocol(&self, protocol: &str) -> ServiceResult<Value> {
        let mut merged: Option<Value> = None;
        for a in self.declaring(protocol) {
            let Some(answer) = self.protocol_of(&a, protocol).await else {
                continue;
            };
            match &mut merged {
                Some(known) => merge_instances(known, answer),
                None => merged = Some(answer),
            }
        }
        merged.ok_or_else(|| ServiceError::NotFound(format!("Unknown protocol {protocol}")))
    }

    /// One appservice's description of a protocol, each instance that names its `network_id`
    /// given the `instance_id` clients pass to `/publicRooms` as `third_party_instance_id`.
    async fn protocol_of(&self, a: &super::Appservice, protocol: &str) -> Option<Value> {
        let path = format!(
            "_matrix/app/v1/thirdparty/protocol/{}",
            myelin_federation::path::encode_segment(protocol)
        );
        let mut answer = self.fetch(a, &path, &[]).await.filter(Value::is_object)?;
        if let Some(instances) = answer.get_mut("instances").and_then(Value::as_array_mut) {
            for instance in instances.iter_mut().filter_map(Value::as_object_mut) {
                let network_id = instance.get("network_id").and_then(Value::as_str);
                if let Some(id) = network_id.map(|network| instance_id(&a.id, network)) {
                    instance.insert("instance_id".to_owned(), Value::String(id));
                }
            }
        }
        Some(answer)
    }

    /// `GET /thirdparty/location/{protocol}` or `/thirdparty/user/{protocol}` (`kind`): the
    /// answers of every appservice declaring the protocol, concatenated.
    pub async fn thirdparty_lookup(
        &self,
        kind: &str,
        protocol: &str,
        query: &[(String, String)],
    ) -> ServiceResult<Value> {
        let declaring = self.declaring(protocol);
        if declaring.is_empty() {
            return Err(ServiceError::NotFound(format!(
                "Unknown protocol {protocol}"
            )));
        }
        let path = format!(
            "_matrix/app/v1/thirdparty/{kind}/{}",
            myelin_federation::path::encode_segment(protocol)
        );
        let mut out = Vec::new();
        for a in declaring {
            if let Some(Value::Array(items)) = self.fetch(&a, &path, query).await {
                out.extend(items);
            }
        }
        Ok(Value::Array(out))
    }

    /// `GET /thirdparty/location?alias=` or `/thirdparty/user?userid=` (`kind`): asked of every
    /// appservice with a protocol (the query names none), the answers concatenated; an
    /// appservice that fails or finds nothing adds nothing (as Synapse, an empty list then).
    pub async fn thirdparty_reverse(
        &self,
        kind: &str,
        query: &[(String, String)],
    ) -> ServiceResult<Value> {
        let path = format!("_matrix/app/v1/thirdparty/{kind}");
        let mut out = Vec::new();
        for a in &self.ctx.appservices.all().list {
            if a.url.is_none() || a.protocols.is_empty() {
                continue;
            }
            if let Some(Value::Array(items)) = self.fetch(a, &path, query).await {
                out.extend(items.into_iter().filter(Value::is_object));
            }
        }
        Ok(Value::Array(out))
    }

    fn declaring(&self, protocol: &str) -> Vec<std::sync::Arc<super::Appservice>> {
        self.ctx
            .appservices
            .all()
            .list
            .iter()
            .filter(|a| a.url.is_some() && a.protocols.iter().any(|p| p == protocol))
            .cloned()
            .collect()
    }
}

/// Adds the `instances` of another appservice's description of a protocol to `known`.
fn merge_instances(known: &mut Value, other: Value) {
    let Some(more) = other
        .get("instances")
        .and_then(Value::as_array)
        .filter(|more| !more.is_empty())
    else {
        return;
    };
    match known.get_mut("instances").and_then(Value::as_array_mut) {
        Some(instances) => instances.extend(more.iter().cloned()),
        None => {
            if let Some(known) = known.as_object_mut() {
                known.insert("instances".to_owned(), Value::Array(more.clone()));
            }
        }
    }
}
