//! The keyring: remote servers' signing keys, looked up by `(server, key ID)` at a point in time,
//! fetched directly from the server or through notaries when missing or expired, and kept after
//! they expire so old events stay verifiable.
//!
//! Storage sits behind [`KeyStore`] (in memory for now); the network behind [`KeySource`] (the
//! federation client in production, fakes in tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use myelin_core::Clock;
use ruma::{CanonicalJsonObject, OwnedServerName, ServerName};

use crate::client::RequestError;
use crate::keys::{self, KeyError, ServerKeys, MAX_KEY_VALIDITY_MS};

/// After a failed fetch, the server is not asked again for this long (bounded work per origin).
pub const FETCH_RETRY_MS: u64 = 30_000;

/// How many key responses are kept per server (each rotation adds one).
const RESPONSES_PER_SERVER: usize = 8;

/// How many servers' keys the in-memory store keeps; past it, the server whose keys expire first
/// makes room (it is fetched again if it is needed).
pub const MAX_STORED_SERVERS: usize = 10_000;

/// How many recent fetch failures are remembered. Entries older than [`FETCH_RETRY_MS`] mean
/// nothing and are pruned as new ones come; past the bound the oldest goes.
pub const MAX_REMEMBERED_FAILURES: usize = 10_000;

/// Key fetches the notary endpoint may have under way at once, over all requests.
///
/// `/_matrix/key/v2/query` is unauthenticated and names any servers it likes. Like Synapse we
/// answer from the cache and fetch what is missing or stale, but bounded: each request may cause
/// at most [`NOTARY_FETCHES_PER_REQUEST`] fetches (the API also caps the servers per request),
/// at most this many run at once over all requests (a request that finds none free is answered
/// from the cache alone rather than waiting), and a server that failed is not asked again for
/// [`FETCH_RETRY_MS`]. So a flood of queries costs a bounded number of outbound connections,
/// and keys of servers we already talk to are served from the cache throughout.
pub const MAX_CONCURRENT_NOTARY_FETCHES: usize = 8;

/// Key fetches one notary request may cause; the rest of its servers are answered from the cache.
pub const NOTARY_FETCHES_PER_REQUEST: usize = 5;

/// Why a key could not be found.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{server} has no key {key_id} valid at {valid_at_ts}")]
    NotFound {
        server: String,
        key_id: String,
        valid_at_ts: u64,
    },
    #[error("fetching keys of {server} failed recently; not retrying yet")]
    RecentlyFailed { server: String },
    #[error("cannot fetch keys of {server}: {source}")]
    Fetch {
        server: String,
        source: RequestError,
    },
    #[error("invalid keys from {server}: {source}")]
    Invalid { server: String, source: KeyError },
}

/// A verified key response and until when we trust it.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    pub keys: ServerKeys,
    /// `valid_until_ts`, capped at fetch time + 7 days.
    pub trusted_until_ts: u64,
}

impl StoredKeys {
    /// The public key `key_id` if it may check a signature made at `ts`.
    fn key_valid_at(&self, key_id: &str, ts: u64) -> Option<&str> {
        if let Some(key) = self.keys.verify_keys.get(key_id) {
            if self.trusted_until_ts >= ts {
                return Some(key);
            }
        }
        match self.keys.old_verify_keys.get(key_id) {
            Some(old) if old.expired_ts >= ts => Some(&old.key),
            _ => None,
        }
    }
}

/// Where fetched keys are kept.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored response of `server`, newest first.
    async fn get(&self, server: &ServerName) -> Vec<StoredKeys>;
    /// Stores a verified response, replacing an older one with the same verify keys.
    async fn put(&self, keys: StoredKeys);
}

/// The keys in memory; lost on restart (a persistent store can come later behind [`KeyStore`]).
#[derive(Default)]
pub struct MemoryKeyStore {
    servers: Mutex<HashMap<OwnedServerName, Vec<StoredKeys>>>,
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn get(&self, server: &ServerName) -> Vec<StoredKeys> {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.get(server).cloned().unwrap_or_default()
    }

    async fn put(&self, keys: StoredKeys) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if servers.len() >= MAX_STORED_SERVERS && !servers.contains_key(&keys.keys.server_name) {
            let expires_first = servers
                .iter()
                .min_by_key(|(_, list)| list.iter().map(|k| k.trusted_until_ts).max())
                .map(|(server, _)| server.clone());
            if let Some(server) = expires_first {
                servers.remove(&server);
            }
        }
        let list = servers.entry(keys.keys.server_name.clone()).or_default();
        list.retain(|k| k.keys.verify_keys.keys().ne(keys.keys.verify_keys.keys()));
        list.insert(0, keys);
        list.sort_by_key(|k| std::cmp::Reverse(k.keys.valid_until_ts));
        list.truncate(RESPONSES_PER_SERVER);
    }
}

/// Where keys come from over the network.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// `GET /_matrix/key/v2/server` on `server`.
    async fn server_keys(&self, server: &ServerName) -> Result<CanonicalJsonObject, RequestError>;
    /// `POST /_matrix/key/v2/query` on `notary`, asking for every key of `server`.
    async fn notary_keys(
        &self,
        notary: &ServerName,
        server: &ServerName,
        minimum_valid_until_ts: u64,
    ) -> Result<Vec<CanonicalJsonObject>, RequestError>;
}

/// Our own public keys, which are never fetched.
#[derive(Debug, Clone)]
pub struct OwnKeys {
    pub server_name: OwnedServerName,
    /// Key ID to unpadded base64 public key.
    pub keys: std::collections::BTreeMap<String, String>,
}

/// Remote server keys: cache, fetch, verify.
pub struct Keyring {
    own: OwnKeys,
    store: Arc<dyn KeyStore>,
    source: Arc<dyn KeySource>,
    notaries: Vec<OwnedServerName>,
    clock: Arc<dyn Clock>,
    /// When fetching each server's keys last failed (recent failures only, bounded).
    failures: Mutex<HashMap<OwnedServerName, u64>>,
    /// One fetch per server at a time: concurrent lookups wait for it, then read the cache.
    in_flight: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
    /// Permits for fetches on behalf of the notary endpoint.
    notary_fetches: Arc<tokio::sync::Semaphore>,
}

/// What one notary request may still cost: see [`MAX_CONCURRENT_NOTARY_FETCHES`].
#[derive(Debug)]
pub struct NotaryBudget {
    fetches_left: usize,
}

impl Default for NotaryBudget {
    fn default() -> Self {
        NotaryBudget {
            fetches_left: NOTARY_FETCHES_PER_REQUEST,
        }
    }
}

impl Keyring {
    pub fn new(
        own: OwnKeys,
        store: Arc<dyn KeyStore>,
        source: Arc<dyn KeySource>,
        notaries: Vec<OwnedServerName>,
        clock: Arc<dyn Clock>,
    ) -> Keyring {
        Keyring {
            own,
            store,
            source,
            notaries,
            clock,
            failures: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            notary_fetches: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_NOTARY_FETCHES)),
        }
    }

    pub fn own_keys(&self) -> &OwnKeys {
        &self.own
    }

    /// The public key (unpadded base64) `key_id` of `server`, valid for a signature made at
    /// `valid_at_ts`: from the cache, else fetched directly, else through the trusted notaries.
    pub async fn public_key(
        &self,
        server: &ServerName,
        key_id: &str,
        valid_at_ts: u64,
    ) -> Result<String, KeyringError> {
        let not_found = || KeyringError::NotFound {
            server: server.to_string(),
            key_id: key_id.to_owned(),
            valid_at_ts,
        };
        if server == self.own.server_name {
            return self.own.keys.get(key_id).cloned().ok_or_else(not_found);
        }
        if let Some(key) = self.cached(server, key_id, valid_at_ts).await {
            return Ok(key);
        }
        let lock = self.fetch_lock(server);
        let _guard = lock.lock().await;
        // Another lookup may have fetched while this one waited.
        if let Some(key) = self.cached(server, key_id, valid_at_ts).await {
            return Ok(key);
        }
        let now = self.clock.now_ms();
        if self.failed_recently(server) {
            return Err(KeyringError::RecentlyFailed {
                server: server.to_string(),
            });
        }
        let direct = self.fetch_direct(server).await;
        if let Some(key) = self.cached(server, key_id, valid_at_ts).await {
            return Ok(key);
        }
        let mut last_error = direct.err();
        for notary in &self.notaries {
            if notary == server {
                continue;
            }
            match self.fetch_via_notary(notary, server, valid_at_ts).await {
                Ok(()) => {
                    if let Some(key) = self.cached(server, key_id, valid_at_ts).await {
                        return Ok(key);
                    }
                }
                Err(e) => {
                    tracing::debug!(%server, %notary, error = %e, "notary key query failed");
                    last_error = Some(e);
                }
            }
        }
        self.record_failure(server, now);
        Err(last_error.unwrap_or_else(not_found))
    }

    /// Whether fetching `server`'s keys failed less than [`FETCH_RETRY_MS`] ago.
    fn failed_recently(&self, server: &ServerName) -> bool {
        let now = self.clock.now_ms();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(server)
            .is_some_and(|at| now.saturating_sub(*at) < FETCH_RETRY_MS)
    }

    /// Remembers a failed fetch. When the map is full, those too old to matter are forgotten,
    /// and if it still is, the oldest.
    fn record_failure(&self, server: &ServerName, now: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_REMEMBERED_FAILURES {
            failures.retain(|_, at| now.saturating_sub(*at) < FETCH_RETRY_MS);
        }
        if failures.len() >= MAX_REMEMBERED_FAILURES {
            let oldest = failures
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(s, _)| s.clone());
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        failures.insert(server.to_owned(), now);
    }

    /// How many fetch failures are remembered.
    #[cfg(test)]
    fn remembered_failures(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Responses to relay as a notary for `server` (self-signed by it; the caller adds our
    /// signature). Cached ones are used if they are valid until `minimum_valid_until_ts`; else the
    /// server is asked, within `budget` and the global cap (see
    /// [`MAX_CONCURRENT_NOTARY_FETCHES`]), and whatever is cached is returned when it is not
    /// asked or cannot be reached.
    pub async fn notary_responses(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: u64,
        budget: &mut NotaryBudget,
    ) -> Vec<CanonicalJsonObject> {
        let fresh = |list: &[StoredKeys]| {
            list.iter()
                .any(|k| k.keys.valid_until_ts >= minimum_valid_until_ts)
        };
        let raw = |list: Vec<StoredKeys>| list.into_iter().map(|k| k.keys.raw).collect();
        let stored = self.store.get(server).await;
        if fresh(&stored) || budget.fetches_left == 0 || self.failed_recently(server) {
            return raw(stored);
        }
        let Ok(_permit) = self.notary_fetches.clone().try_acquire_owned() else {
            tracing::debug!(%server, "notary: too many key fetches under way; answering from the cache");
            return raw(stored);
        };
        budget.fetches_left -= 1;
        let lock = self.fetch_lock(server);
        let _guard = lock.lock().await;
        let stored = self.store.get(server).await;
        if fresh(&stored) || self.failed_recently(server) {
            return raw(stored);
        }
        if let Err(e) = self.fetch_direct(server).await {
            tracing::debug!(%server, error = %e, "notary: cannot fetch keys");
            self.record_failure(server, self.clock.now_ms());
        }
        raw(self.store.get(server).await)
    }

    fn fetch_lock(&self, server: &ServerName) -> Arc<tokio::sync::Mutex<()>> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays small.
        in_flight.retain(|_, lock| Arc::strong_count(lock) > 1);
        in_flight.entry(server.to_owned()).or_default().clone()
    }

    async fn cached(&self, server: &ServerName, key_id: &str, valid_at_ts: u64) -> Option<String> {
        self.store
            .get(server)
            .await
            .iter()
            .find_map(|k| k.key_valid_at(key_id, valid_at_ts).map(str::to_owned))
    }

    async fn fetch_direct(&self, server: &ServerName) -> Result<(), KeyringError> {
        let raw = self
            .source
            .server_keys(server)
            .await
            .map_err(|source| KeyringError::Fetch {
                server: server.to_string(),
                source,
            })?;
        let keys =
            keys::verify_server_keys(server, raw).map_err(|source| KeyringError::Invalid {
                server: server.to_string(),
                source,
            })?;
        self.store(keys).await;
        Ok(())
    }

    async fn fetch_via_notary(
        &self,
        notary: &ServerName,
        server: &ServerName,
        valid_at_ts: u64,
    ) -> Result<(), KeyringError> {
        let responses = self
            .source
            .notary_keys(notary, server, valid_at_ts)
            .await
            .map_err(|source| KeyringError::Fetch {
                server: notary.to_string(),
                source,
            })?;
        // The notary's own keys, fetched directly (never through another notary).
        let notary_keys: Vec<(String, String)> =
            match self.store.get(notary).await.into_iter().next() {
                Some(k) if k.trusted_until_ts >= self.clock.now_ms() => {
                    k.keys.verify_keys.into_iter().collect()
                }
                _ => {
                    self.fetch_direct(notary).await?;
                    self.store
                        .get(notary)
                        .await
                        .into_iter()
                        .next()
                        .map(|k| k.keys.verify_keys.into_iter().collect())
                        .unwrap_or_default()
                }
            };
        let mut stored_any = false;
        for raw in responses {
            let signed_by_notary = notary_keys
                .iter()
                .any(|(id, key)| keys::verify_signature(&raw, notary.as_str(), id, key).is_ok());
            if !signed_by_notary {
                tracing::debug!(%server, %notary, "notary response not signed by the notary; ignored");
                continue;
            }
            match keys::verify_server_keys(server, raw) {
                Ok(keys) => {
                    self.store(keys).await;
                    stored_any = true;
                }
                Err(e) => {
                    tracing::debug!(%server, %notary, error = %e, "invalid key response from notary")
                }
            }
        }
        if stored_any {
            Ok(())
        } else {
            Err(KeyringError::NotFound {
                server: server.to_string(),
                key_id: "*".into(),
                valid_at_ts,
            })
        }
    }

    async fn store(&self, keys: ServerKeys) {
        let cap = self.clock.now_ms().saturating_add(MAX_KEY_VALIDITY_MS);
        let trusted_until_ts = keys.valid_until_ts.min(cap);
        self.store
            .put(StoredKeys {
                keys,
                trusted_until_ts,
            })
            .await;
    }
}

#[cfg(test)]
mod tests;
