//! Federation groundwork: our signing keys on the wire, the keyring of remote keys, `X-Matrix`
//! request authentication, server name resolution and the outgoing HTTP client.
//!
//! [`Federation`] ties them together for one server; it holds no signing key (the key stays in
//! `Services`), so every operation that signs takes the key pair as an argument.

pub mod auth;
pub mod client;
pub mod config;
pub mod egress;
pub mod keyring;
pub mod keys;
pub mod path;
pub mod resolve;

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::signatures::Ed25519KeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName};

/// Re-exported so that users of this crate name Matrix types the same way.
pub use ruma;

pub use myelin_core::{Clock, SystemClock};

pub use auth::{AuthError, XMatrix};
pub use client::{FederationClient, RequestError, Signer};
pub use config::FederationConfig;
pub use egress::{ClientOptions, Egress, EgressError, EgressPolicy};
pub use keyring::{KeyStore, Keyring, KeyringError, MemoryKeyStore, NotaryBudget};
pub use keys::{KeyError, ServerKeys};
pub use path::encode_segment;
pub use reqwest::Method;
pub use resolve::{Destination, Lookup, ResolveError, Resolver};

/// One server's federation context: configuration, outgoing client and keyring.
pub struct Federation {
    pub config: FederationConfig,
    pub server_name: OwnedServerName,
    pub client: Arc<FederationClient>,
    pub keyring: Keyring,
    clock: Arc<dyn Clock>,
}

impl Federation {
    /// The production wiring: system DNS, HTTPS client, keys kept in memory.
    pub fn new(
        config: FederationConfig,
        server_name: OwnedServerName,
        key: &Ed25519KeyPair,
        clock: Arc<dyn Clock>,
    ) -> Federation {
        let lookup = Arc::new(client::SystemLookup::new(&config));
        Self::with_parts(
            config,
            server_name,
            key,
            clock,
            lookup,
            Arc::new(MemoryKeyStore::default()),
        )
    }

    /// Wiring with the lookups and key store given (tests, later a persistent store).
    pub fn with_parts(
        config: FederationConfig,
        server_name: OwnedServerName,
        key: &Ed25519KeyPair,
        clock: Arc<dyn Clock>,
        lookup: Arc<dyn Lookup>,
        store: Arc<dyn KeyStore>,
    ) -> Federation {
        let client = Arc::new(FederationClient::new(&config, lookup, clock.clone()));
        let own = keyring::OwnKeys {
            server_name: server_name.clone(),
            keys: BTreeMap::from([(keys::key_id(key), keys::public_key_base64(key))]),
        };
        let notaries = client::server_names(&config.trusted_key_servers);
        let keyring = Keyring::new(own, store, client.clone(), notaries, clock.clone());
        Federation {
            config,
            server_name,
            client,
            keyring,
            clock,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Our signed `/_matrix/key/v2/server` response, valid for the configured period.
    pub fn own_server_keys(&self, key: &Ed25519KeyPair) -> CanonicalJsonObject {
        let valid_until = self.now_ms().saturating_add(self.config.key_validity_ms);
        keys::own_server_keys(&self.server_name, key, &BTreeMap::new(), valid_until)
    }

    /// The key responses we vouch for as a notary: ours, or the remote server's (cached or
    /// fetched), each with our signature added.
    pub async fn notary_server_keys(
        &self,
        key: &Ed25519KeyPair,
        server: &ServerName,
        minimum_valid_until_ts: u64,
        budget: &mut keyring::NotaryBudget,
    ) -> Vec<CanonicalJsonObject> {
        if server == self.server_name {
            return vec![self.own_server_keys(key)];
        }
        let mut responses = self
            .keyring
            .notary_responses(server, minimum_valid_until_ts, budget)
            .await;
        for response in &mut responses {
            keys::add_signature(response, &self.server_name, key);
        }
        responses
    }

    /// Authenticates an incoming request from its Authorization header and returns its origin.
    ///
    /// `uri` is the path and query as received; `content` the parsed JSON body, if any.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        method: &str,
        uri: &str,
        content: Option<&CanonicalJsonValue>,
    ) -> Result<OwnedServerName, AuthError> {
        let header = XMatrix::parse(authorization.ok_or(AuthError::Missing)?)?;
        auth::check_destination(&header, &self.server_name)?;
        let public_key = self
            .keyring
            .public_key(&header.origin, &header.key, self.now_ms())
            .await
            .map_err(|e| AuthError::UnknownKey {
                origin: header.origin.to_string(),
                key_id: header.key.clone(),
                reason: e.to_string(),
            })?;
        auth::verify_request(
            &header,
            method,
            uri,
            &self.server_name,
            content,
            &public_key,
        )?;
        Ok(header.origin)
    }
}
