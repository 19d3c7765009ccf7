//! Talking to other servers on behalf of a use case: signed requests, and the verification of
//! PDUs they send us (format, signatures with keys from the keyring, content hash).

use std::collections::BTreeMap;

use myelin_federation::Method;
use myelin_federation::RequestError;
use myelin_room::{parse_received, signing_servers, verify_received, Received};
use ruma::{
    room_version_rules::RoomVersionRules, serde::Base64, signatures::PublicKeyMap,
    CanonicalJsonObject, CanonicalJsonValue, RoomId, ServerName,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{Context, ServiceError, ServiceResult};

impl From<RequestError> for ServiceError {
    fn from(e: RequestError) -> Self {
        ServiceError::Remote(e.to_string())
    }
}

impl Context {
    /// A signed request to `server`, answered with a JSON object.
    pub(crate) async fn federation_request(
        &self,
        method: Method,
        server: &ServerName,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ServiceResult<CanonicalJsonObject> {
        if server == self.server_name() {
            return Err(ServiceError::Internal(format!(
                "refusing a federation request to ourselves ({path})"
            )));
        }
        let body = body
            .map(CanonicalJsonValue::try_from)
            .transpose()
            .map_err(|e| ServiceError::Internal(format!("request body: {e}")))?;
        let signer = myelin_federation::Signer {
            origin: self.server_name(),
            key: &self.key.key_pair,
        };
        Ok(self
            .federation
            .client
            .request_json(method, server, path, body.as_ref(), Some(signer))
            .await?)
    }

    /// A `GET` to `server` (signed unless `signed` is false) whose 2xx answer the caller reads
    /// as it streams (media).
    pub(crate) async fn federation_get_response(
        &self,
        server: &ServerName,
        path: &str,
        signed: bool,
    ) -> Result<reqwest::Response, RequestError> {
        let signer = signed.then(|| myelin_federation::Signer {
            origin: self.server_name(),
            key: &self.key.key_pair,
        });
        self.federation
            .client
            .send(Method::GET, server, path, None, signer)
            .await
    }

    /// Like [`Context::federation_request`], deserialising the answer.
    pub(crate) async fn federation_call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        server: &ServerName,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> ServiceResult<T> {
        let object = self.federation_request(method, server, path, body).await?;
        serde_json::from_value(serde_json::Value::Object(
            object.into_iter().map(|(k, v)| (k, v.into())).collect(),
        ))
        .map_err(|e| ServiceError::Remote(format!("{server} answered {path} unexpectedly: {e}")))
    }

    /// Steps 1–3 of the checks on receipt (format, signatures, content hash) for a PDU of
    /// `room_id`, fetching the signing servers' keys as needed.
    pub(crate) async fn verify_remote_pdu(
        &self,
        raw: &RawJsonValue,
        room_id: &RoomId,
        rules: &RoomVersionRules,
    ) -> ServiceResult<Received> {
        check_pdu_size(raw)?;
        let object = parse_received(raw)?;
        self.verify_parsed_pdu(object, room_id, rules).await
    }

    /// [`Context::verify_remote_pdu`] for a PDU already parsed with [`parse_remote_pdu`].
    pub(crate) async fn verify_parsed_pdu(
        &self,
        object: CanonicalJsonObject,
        room_id: &RoomId,
        rules: &RoomVersionRules,
    ) -> ServiceResult<Received> {
        let keys = self.signing_keys_for(&object, rules).await?;
        Ok(verify_received(object, room_id, rules, &keys)?)
    }

    /// The public keys of every server that must have signed `object`, valid at its timestamp.
    async fn signing_keys_for(
        &self,
        object: &CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> ServiceResult<PublicKeyMap> {
        let servers = signing_servers(object, rules)?;
        let ts = match object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
            _ => 0,
        };
        let signatures = match object.get("signatures") {
            Some(CanonicalJsonValue::Object(s)) => s,
            _ => return Err(ServiceError::Forbidden("the event is not signed".into())),
        };
        let mut map = PublicKeyMap::new();
        for server in servers {
            let Some(CanonicalJsonValue::Object(by_key)) = signatures.get(server.as_str()) else {
                return Err(ServiceError::Forbidden(format!(
                    "the event lacks a signature by {server}"
                )));
            };
            let mut set = BTreeMap::new();
            for key_id in by_key.keys().filter(|k| k.starts_with("ed25519:")) {
                match self
                    .federation
                    .keyring
                    .public_key(&server, key_id, ts)
                    .await
                {
                    Ok(key) => {
                        if let Ok(key) = Base64::parse(key.trim_end_matches('=')) {
                            set.insert(key_id.clone(), key);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%server, key_id, error = %e, "signing key not found")
                    }
                }
            }
            if set.is_empty() {
                return Err(ServiceError::Forbidden(format!(
                    "no usable signing key of {server} for the event"
                )));
            }
            map.insert(server.to_string(), set);
        }
        Ok(map)
    }
}

/// Refuses a PDU above the spec's size limit (65,536 bytes).
pub(crate) fn check_pdu_size(raw: &RawJsonValue) -> ServiceResult<()> {
    if raw.get().len() > myelin_room::MAX_PDU_BYTES {
        return Err(ServiceError::TooLarge("PDU larger than 65536 bytes".into()));
    }
    Ok(())
}
