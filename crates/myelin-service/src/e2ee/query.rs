//! `POST /keys/query` and `POST /keys/claim`: local users are answered from storage, remote
//! users by asking their servers (`/user/keys/query`, `/user/keys/claim`), all servers at once
//! and each within the client's timeout. A server that fails is listed under `failures`.
//! Remote users whose device lists are cached (`remote_cache.rs`) are answered from the cache
//! (`cached.rs`).

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use futures_util::future::join_all;
use myelin_federation::Method;
use myelin_storage::KeyClaim;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use crate::{accounts::Authed, E2ee, ServiceError, ServiceResult};

/// The body of `POST /keys/query`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KeysQuery {
    pub device_keys: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    /// Milliseconds to wait for remote servers.
    pub timeout: Option<u64>,
}

/// The body of `POST /keys/claim`: user → device → algorithm.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ClaimRequest {
    pub one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    pub timeout: Option<u64>,
}

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// A client cannot make us wait on other servers for longer than this.
const MAX_TIMEOUT_MS: u64 = 30_000;

fn remote_timeout(requested: Option<u64>) -> Duration {
    Duration::from_millis(requested.unwrap_or(DEFAULT_TIMEOUT_MS).min(MAX_TIMEOUT_MS))
}

/// Splits a per-user map into this server's part and each remote server's part.
fn by_server<T>(
    own: &ruma::ServerName,
    map: BTreeMap<OwnedUserId, T>,
) -> (
    BTreeMap<OwnedUserId, T>,
    BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>,
) {
    let mut local = BTreeMap::new();
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user, value) in map {
        if user.server_name() == own {
            local.insert(user, value);
        } else {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user, value);
        }
    }
    (local, remote)
}

/// Keeps only the entries of `answer[field]` about users of `server`: a server speaks for its
/// own users only.
fn own_users_only(answer: &Value, field: &str, server: &ruma::ServerName) -> Map<String, Value> {
    answer
        .get(field)
        .and_then(Value::as_object)
        .map(|users| {
            users
                .iter()
                .filter(|(user, _)| {
                    UserId::parse(user.as_str()).is_ok_and(|u| u.server_name() == server)
                })
                .map(|(u, v)| (u.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn merge_into(target: &mut Value, field: &str, entries: Map<String, Value>) {
    if let Some(map) = target[field].as_object_mut() {
        map.extend(entries);
    }
}

impl E2ee {
    /// `POST /keys/query`.
    pub async fn query_keys(&self, authed: &Authed, query: KeysQuery) -> ServiceResult<Value> {
        let timeout = remote_timeout(query.timeout);
        let (local, remote) = by_server(self.ctx.server_name(), query.device_keys);
        let remote = self.reachable_only(&authed.user_id, remote).await?;
        let deadline = Instant::now() + timeout;
        let mut answer = self.local_keys_answer(local, Some(&authed.user_id)).await?;
        answer["failures"] = remote.failures;
        let servers = self
            .answer_from_cache(&authed.user_id, remote.servers, &mut answer, timeout)
            .await?;
        let bodies = servers
            .into_iter()
            .map(|(server, users)| (server, json!({ "device_keys": users })));
        let left = deadline.saturating_duration_since(Instant::now());
        let answers = self
            .ask_servers(bodies, myelin_federation::path::USER_KEYS_QUERY, left)
            .await;
        for (server, result) in answers {
            match result {
                Ok(remote_answer) => {
                    for field in ["device_keys", "master_keys", "self_signing_keys"] {
                        merge_into(
                            &mut answer,
                            field,
                            own_users_only(&remote_answer, field, &server),
                        );
                    }
                }
                Err(e) => {
                    tracing::info!(%server, error = %e, "remote key query failed");
                    answer["failures"][server.as_str()] = json!({ "error": e.to_string() });
                }
            }
        }
        Ok(answer)
    }

    /// The answer to a key query about local users (a client's or another server's):
    /// `device_keys`, `master_keys`, `self_signing_keys`, and `user_signing_keys` of
    /// `requester` when they ask about themselves. An empty device list means every device.
    pub(crate) async fn local_keys_answer(
        &self,
        wanted: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
        requester: Option<&UserId>,
    ) -> ServiceResult<Value> {
        let users: Vec<OwnedUserId> = wanted.keys().cloned().collect();
        let mut devices = self.local_device_keys(&users).await?;
        let mut device_keys = Map::new();
        for (user, wanted_devices) in &wanted {
            let mut of_user = devices.remove(user).unwrap_or_default();
            if !wanted_devices.is_empty() {
                of_user.retain(|d, _| wanted_devices.contains(d));
            }
            let map: Map<String, Value> = of_user
                .into_iter()
                .map(|(d, k)| (d.to_string(), k))
                .collect();
            device_keys.insert(user.to_string(), Value::Object(map));
        }
        let mut answer = json!({
            "device_keys": device_keys,
            "master_keys": {},
            "self_signing_keys": {},
        });
        if requester.is_some() {
            answer["user_signing_keys"] = json!({});
        }
        for key in self.ctx.storage.cross_signing_keys(&users).await? {
            let field = match key.kind {
                myelin_storage::CrossSigningKind::Master => "master_keys",
                myelin_storage::CrossSigningKind::SelfSigning => "self_signing_keys",
                // Only the owner ever sees their user-signing key.
                myelin_storage::CrossSigningKind::UserSigning
                    if requester == Some(key.user_id.as_ref()) =>
                {
                    "user_signing_keys"
                }
                myelin_storage::CrossSigningKind::UserSigning => continue,
            };
            if let Ok(value) = serde_json::from_str::<Value>(&key.key_json) {
                answer[field][key.user_id.as_str()] = value;
            }
        }
        Ok(answer)
    }

    /// `POST /keys/claim`.
    pub async fn claim_keys(&self, authed: &Authed, request: ClaimRequest) -> ServiceResult<Value> {
        let timeout = remote_timeout(request.timeout);
        let (local, remote) = by_server(self.ctx.server_name(), request.one_time_keys);
        let remote = self.reachable_only(&authed.user_id, remote).await?;
        let mut answer = json!({
            "one_time_keys": self.claim_local_keys(local).await?,
            "failures": remote.failures,
        });
        let bodies = remote
            .servers
            .into_iter()
            .map(|(server, users)| (server, json!({ "one_time_keys": users })));
        let answers = self
            .ask_servers(bodies, myelin_federation::path::USER_KEYS_CLAIM, timeout)
            .await;
        for (server, result) in answers {
            match result {
                Ok(remote_answer) => merge_into(
                    &mut answer,
                    "one_time_keys",
                    own_users_only(&remote_answer, "one_time_keys", &server),
                ),
                Err(e) => {
                    tracing::info!(%server, error = %e, "remote key claim failed");
                    answer["failures"][server.as_str()] = json!({ "error": e.to_string() });
                }
            }
        }
        Ok(answer)
    }

    /// Claims keys of local devices: user → device → `{key_id: key}`.
    pub(crate) async fn claim_local_keys(
        &self,
        wanted: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> ServiceResult<Value> {
        let claims: Vec<KeyClaim> = wanted
            .into_iter()
            .flat_map(|(user_id, devices)| {
                devices
                    .into_iter()
                    .map(move |(device_id, algorithm)| KeyClaim {
                        user_id: user_id.clone(),
                        device_id,
                        algorithm,
                    })
            })
            .collect();
        let mut out = json!({});
        for key in self.ctx.storage.claim_keys(&claims).await? {
            self.keys_to_appservices(&key.user_id, &key.device_id);
            let value = serde_json::from_str::<Value>(&key.key_json)
                .map_err(|e| ServiceError::Internal(format!("stored key: {e}")))?;
            out[key.user_id.as_str()][key.device_id.as_str()][key.key_id] = value;
        }
        Ok(out)
    }
}

/// The remote part of a key request after [`E2ee::reachable_only`].
struct Reachable<T> {
    servers: BTreeMap<OwnedServerName, T>,
    /// `failures` entries for the servers left out.
    failures: Value,
}

impl E2ee {
    /// Checks the number of servers a key request names and keeps those sharing a room with the
    /// requester; the others are answered as failures without being contacted. With federation
    /// off, every remote server is such a failure.
    async fn reachable_only<T>(
        &self,
        requester: &UserId,
        remote: BTreeMap<OwnedServerName, T>,
    ) -> ServiceResult<Reachable<T>> {
        self.check_fan_out(requester, remote.keys().map(|s| &**s))?;
        let mut failures = json!({});
        if remote.is_empty() {
            return Ok(Reachable {
                servers: remote,
                failures,
            });
        }
        let sharing = if self.ctx.federation.config.enabled {
            self.servers_sharing_rooms(requester).await?
        } else {
            Default::default()
        };
        let mut servers = BTreeMap::new();
        for (server, users) in remote {
            if sharing.contains(&server) {
                servers.insert(server, users);
            } else {
                let error = if self.ctx.federation.config.enabled {
                    super::fan_out::no_shared_room(&server)
                } else {
                    format!("{server} was not contacted: federation is disabled")
                };
                failures[server.as_str()] = json!({ "error": error });
            }
        }
        Ok(Reachable { servers, failures })
    }

    /// POSTs each body to its server, all at once, each bounded by `timeout`.
    async fn ask_servers(
        &self,
        bodies: impl Iterator<Item = (OwnedServerName, Value)>,
        path: &str,
        timeout: Duration,
    ) -> Vec<(OwnedServerName, ServiceResult<Value>)> {
        let asks = bodies.map(|(server, body)| async move {
            let call = self
                .ctx
                .federation_request(Method::POST, &server, path, Some(body));
            let answer = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(object)) => Ok(Value::Object(
                    object.into_iter().map(|(k, v)| (k, v.into())).collect(),
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ServiceError::Remote(format!(
                    "{server} did not answer in time"
                ))),
            };
            (server, answer)
        });
        join_all(asks).await
    }
}
