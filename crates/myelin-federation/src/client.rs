//! The outgoing HTTP client: resolves a server name, refuses non-public addresses unless
//! configured, pins the connection to the resolved addresses, signs requests with `X-Matrix` and
//! reads bounded responses. Also the production [`Lookup`] (system DNS, `.well-known` over HTTPS)
//! and [`KeySource`] (`/_matrix/key/v2/server` and `/query`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use myelin_core::Clock;
use reqwest::{header, Method};
use ruma::signatures::Ed25519KeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName};

use crate::auth::{sign_request, RequestToSign};
pub use crate::egress::is_public;
use crate::egress::{error_chain, lookup_ips, ClientOptions, Egress, EgressPolicy};
use crate::keyring::KeySource;
use crate::resolve::{Destination, Lookup, ResolveError, Resolver, SrvRecord, WellKnown};
use crate::FederationConfig;

/// The largest response body read from a remote server.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The largest `.well-known/matrix/server` body read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
/// How long a pinned per-destination HTTP client is reused before resolving again.
const CLIENT_TTL_MS: u64 = 10 * 60 * 1000;
const MAX_CACHED_CLIENTS: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an outgoing request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("refusing to contact {server}: it resolves only to non-public addresses ({addrs})")]
    ForbiddenDestination { server: String, addrs: String },
    #[error("HTTP request failed: {0}")]
    Http(String),
    #[error("remote answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("cannot sign the request: {0}")]
    Signing(String),
}

/// The outgoing federation HTTP client.
pub struct FederationClient {
    resolver: Resolver,
    clock: Arc<dyn Clock>,
    allow_private: bool,
    trusted_self_signed: Vec<String>,
    plain_http: Vec<String>,
    timeout: Duration,
    clients: Mutex<HashMap<Destination, (reqwest::Client, u64)>>,
}

/// A signed request's origin and key.
pub struct Signer<'a> {
    pub origin: &'a ServerName,
    pub key: &'a Ed25519KeyPair,
}

impl FederationClient {
    pub fn new(
        config: &FederationConfig,
        lookup: Arc<dyn Lookup>,
        clock: Arc<dyn Clock>,
    ) -> FederationClient {
        FederationClient {
            resolver: Resolver::new(lookup, clock.clone()),
            clock,
            allow_private: config.allow_private_destinations,
            trusted_self_signed: config.trusted_self_signed.clone(),
            plain_http: config.plain_http_servers.clone(),
            timeout: Duration::from_millis(config.request_timeout_ms),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a request to `server` and returns the body of a 2xx answer.
    ///
    /// `path_and_query` is sent (and signed) verbatim; with `signer` the request carries an
    /// `X-Matrix` Authorization header.
    pub async fn request(
        &self,
        method: Method,
        server: &ServerName,
        path_and_query: &str,
        body: Option<&CanonicalJsonValue>,
        signer: Option<Signer<'_>>,
    ) -> Result<Vec<u8>, RequestError> {
        let response = self
            .send(method, server, path_and_query, body, signer)
            .await?;
        read_limited(response, MAX_RESPONSE_BYTES).await
    }

    /// Like [`FederationClient::request`], but hands back a 2xx response unread, for bodies
    /// the caller streams (media) under its own limit.
    pub async fn send(
        &self,
        method: Method,
        server: &ServerName,
        path_and_query: &str,
        body: Option<&CanonicalJsonValue>,
        signer: Option<Signer<'_>>,
    ) -> Result<reqwest::Response, RequestError> {
        let dest = self.resolver.resolve(server).await?;
        let dest = self.check_destination(dest)?;
        let scheme = if listed(&self.plain_http, server) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}:{}{path_and_query}",
            dest.url_host(),
            dest.port
        );
        let client = self.client_for(&dest)?;
        let mut request = client
            .request(method.clone(), &url)
            .header(header::HOST, &dest.host_header);
        if let Some(signer) = signer {
            let signed = sign_request(
                &RequestToSign {
                    method: method.as_str(),
                    uri: path_and_query,
                    origin: signer.origin,
                    destination: server,
                    content: body,
                },
                signer.key,
            )
            .map_err(|e| RequestError::Signing(e.to_string()))?;
            request = request.header(header::AUTHORIZATION, signed.to_string());
        }
        if let Some(body) = body {
            let bytes =
                serde_json::to_vec(body).map_err(|e| RequestError::Signing(e.to_string()))?;
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RequestError::Http(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = read_limited(response, MAX_RESPONSE_BYTES).await?;
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            return Err(RequestError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(response)
    }

    /// Like [`FederationClient::request`], parsing the answer as a JSON object.
    pub async fn request_json(
        &self,
        method: Method,
        server: &ServerName,
        path_and_query: &str,
        body: Option<&CanonicalJsonValue>,
        signer: Option<Signer<'_>>,
    ) -> Result<CanonicalJsonObject, RequestError> {
        let bytes = self
            .request(method, server, path_and_query, body, signer)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| RequestError::InvalidResponse(e.to_string()))
    }

    /// Drops non-public addresses (unless allowed); none left is an error.
    fn check_destination(&self, mut dest: Destination) -> Result<Destination, RequestError> {
        if self.allow_private {
            return Ok(dest);
        }
        let all = dest
            .addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        dest.addrs.retain(|a| is_public(a.ip()));
        if dest.addrs.is_empty() {
            return Err(RequestError::ForbiddenDestination {
                server: dest.server_name.to_string(),
                addrs: all,
            });
        }
        Ok(dest)
    }

    /// A client that connects only to `dest.addrs`, whatever DNS says later.
    fn client_for(&self, dest: &Destination) -> Result<reqwest::Client, RequestError> {
        let now = self.clock.now_ms();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((client, created)) = clients.get(dest) {
            if now.saturating_sub(*created) < CLIENT_TTL_MS {
                return Ok(client.clone());
            }
        }
        let insecure = listed(&self.trusted_self_signed, &dest.server_name);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(insecure)
            .resolve_to_addrs(&dest.tls_name, &dest.addrs)
            .build()
            .map_err(|e| RequestError::Http(error_chain(&e)))?;
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.retain(|_, (_, created)| now.saturating_sub(*created) < CLIENT_TTL_MS);
            if clients.len() >= MAX_CACHED_CLIENTS {
                clients.clear();
            }
        }
        clients.insert(dest.clone(), (client.clone(), now));
        Ok(client)
    }
}

#[async_trait]
impl KeySource for FederationClient {
    async fn server_keys(&self, server: &ServerName) -> Result<CanonicalJsonObject, RequestError> {
        self.request_json(Method::GET, server, "/_matrix/key/v2/server", None, None)
            .await
    }

    async fn notary_keys(
        &self,
        notary: &ServerName,
        server: &ServerName,
        minimum_valid_until_ts: u64,
    ) -> Result<Vec<CanonicalJsonObject>, RequestError> {
        let body: CanonicalJsonValue =
            serde_json::from_value(serde_json::json!({ "server_keys": { server.as_str(): {} } }))
                .map_err(|e| RequestError::Signing(e.to_string()))?;
        let path = format!("/_matrix/key/v2/query?minimum_valid_until_ts={minimum_valid_until_ts}");
        let mut response = self
            .request_json(Method::POST, notary, &path, Some(&body), None)
            .await?;
        match response.remove("server_keys") {
            Some(CanonicalJsonValue::Array(list)) => Ok(list
                .into_iter()
                .filter_map(|v| match v {
                    CanonicalJsonValue::Object(o) => Some(o),
                    _ => None,
                })
                .collect()),
            _ => Err(RequestError::InvalidResponse("no server_keys array".into())),
        }
    }
}

/// The production lookups: hickory with the system's DNS configuration (and `/etc/hosts`) for
/// addresses and SRV records, `.well-known` over HTTPS.
///
/// Lookups are asynchronous: `getaddrinfo` would run on tokio's blocking pool, where a flood of
/// slow lookups of invented names would queue every other blocking task behind it.
pub struct SystemLookup {
    /// `.well-known` fetches go through the one private-address filter.
    egress: Egress,
    trusted_self_signed: Vec<String>,
    timeout: Duration,
    /// `None` when the system DNS configuration cannot be read; SRV lookups then find nothing
    /// and addresses come from `getaddrinfo`.
    dns: Option<Arc<hickory_resolver::TokioResolver>>,
}

impl SystemLookup {
    pub fn new(config: &FederationConfig) -> SystemLookup {
        let dns = crate::egress::system_dns();
        let policy = EgressPolicy {
            allow_private: config.allow_private_destinations,
            allow: Vec::new(),
        };
        SystemLookup {
            egress: Egress::with_dns(policy, dns.clone()),
            trusted_self_signed: config.trusted_self_signed.clone(),
            timeout: Duration::from_millis(config.request_timeout_ms),
            dns,
        }
    }
}

#[async_trait]
impl Lookup for SystemLookup {
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        lookup_ips(self.dns.as_deref(), host)
            .await
            .map_err(|reason| ResolveError::Dns {
                name: host.to_owned(),
                reason,
            })
    }

    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, ResolveError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let Some(dns) = &self.dns else {
            return Ok(Vec::new());
        };
        // Fully qualified, so that search domains are not tried.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = match dns.lookup(fqdn.as_str(), RecordType::SRV).await {
            Ok(lookup) => lookup,
            Err(e) => {
                // NXDOMAIN and "no records" land here too: both mean no SRV record.
                tracing::debug!(%name, error = %e, "no SRV records");
                return Ok(Vec::new());
            }
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn well_known(&self, host: &str) -> Result<WellKnown, ResolveError> {
        let fail = |reason: String| ResolveError::WellKnown {
            host: host.to_owned(),
            reason,
        };
        let url = reqwest::Url::parse(&format!("https://{host}/.well-known/matrix/server"))
            .map_err(|e| fail(e.to_string()))?;
        self.egress
            .check_url(&url)
            .map_err(|e| fail(e.to_string()))?;
        let accept_invalid_certs =
            <&ServerName>::try_from(host).is_ok_and(|n| listed(&self.trusted_self_signed, n));
        let client = self
            .egress
            .client(&ClientOptions {
                timeout: self.timeout,
                max_redirects: 5,
                https_only: true,
                accept_invalid_certs,
            })
            .map_err(|e| fail(e.to_string()))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let max_age_ms = response
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age_ms);
        let bytes = read_limited(response, MAX_WELL_KNOWN_BYTES)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        let server = json
            .get("m.server")
            .and_then(|s| s.as_str())
            .ok_or_else(|| fail("no m.server string".into()))?;
        Ok(WellKnown {
            server: server.to_owned(),
            max_age_ms,
        })
    }
}

/// `max-age=N` of a Cache-Control header, in milliseconds.
fn parse_max_age_ms(value: &str) -> Option<u64> {
    value.split(',').find_map(|directive| {
        let (name, secs) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        secs.trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(|s| s.saturating_mul(1000))
    })
}

/// Reads a response body, failing past `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, RequestError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(RequestError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RequestError::Http(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(RequestError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether `server` is in a configured list: an entry is a server name, or a host without a port
/// that stands for that host on every port (`"127.0.0.1"` matches `127.0.0.1:8448`).
pub fn listed(list: &[String], server: &ServerName) -> bool {
    let host = crate::resolve::split_host_port(server.as_str())
        .map(|(h, _)| h)
        .unwrap_or(server.as_str());
    list.iter().any(|entry| {
        entry == server.as_str()
            || (crate::resolve::split_host_port(entry).is_ok_and(|(h, p)| {
                p.is_none() && h.trim_matches(|c| c == '[' || c == ']') == host
            }))
    })
}

/// The server names as typed IDs, skipping invalid ones (config validation reports those).
pub(crate) fn server_names(list: &[String]) -> Vec<OwnedServerName> {
    list.iter()
        .filter_map(|s| OwnedServerName::try_from(s.as_str()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn public_addresses() {
        for public in [
            "8.8.8.8",
            "203.0.114.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
    }

    #[test]
    fn config_lists_match_names_or_hosts() {
        let list = vec![
            "a.example:8448".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
        ];
        let name = |s: &str| -> OwnedServerName { s.try_into().expect("name") };
        assert!(listed(&list, &name("a.example:8448")));
        assert!(!listed(&list, &name("a.example")));
        assert!(listed(&list, &name("127.0.0.1:1234")));
        assert!(listed(&list, &name("127.0.0.1")));
        assert!(listed(&list, &name("[::1]:80")));
        assert!(!listed(&list, &name("127.0.0.2:1234")));
    }

    #[test]
    fn cache_control() {
        assert_eq!(parse_max_age_ms("public, max-age=3600"), Some(3_600_000));
        assert_eq!(parse_max_age_ms("no-cache"), None);
    }

    struct NoLookup;
    #[async_trait]
    impl Lookup for NoLookup {
        async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
            match host {
                "internal.example" => Ok(vec![ip("10.0.0.5"), ip("127.0.0.1")]),
                _ => Err(ResolveError::NoAddress(host.into())),
            }
        }
        async fn srv(&self, _: &str) -> Result<Vec<SrvRecord>, ResolveError> {
            Ok(Vec::new())
        }
        async fn well_known(&self, host: &str) -> Result<WellKnown, ResolveError> {
            Err(ResolveError::WellKnown {
                host: host.into(),
                reason: "none".into(),
            })
        }
    }

    #[tokio::test]
    async fn private_destinations_are_refused_by_default() {
        let clock: Arc<dyn Clock> = Arc::new(myelin_core::SystemClock);
        let client = FederationClient::new(&FederationConfig::default(), Arc::new(NoLookup), clock);
        for server in [
            "127.0.0.1:8448",
            "[::1]",
            "internal.example",
            "169.254.169.254",
        ] {
            let name: OwnedServerName = server.try_into().expect("name");
            let e = client
                .request(Method::GET, &name, "/x", None, None)
                .await
                .expect_err("refused");
            assert!(
                matches!(e, RequestError::ForbiddenDestination { .. }),
                "{server}: {e}"
            );
        }
    }

    /// Addresses come from hickory (no blocking-pool `getaddrinfo`), which reads `/etc/hosts`.
    #[tokio::test]
    async fn localhost_resolves_through_the_hosts_file() {
        let lookup = SystemLookup::new(&FederationConfig::default());
        assert!(
            lookup.dns.is_some(),
            "the system DNS configuration is readable"
        );
        let ips = lookup.ips("localhost").await.expect("localhost resolves");
        assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
        assert!(!ips.is_empty());
    }
}
