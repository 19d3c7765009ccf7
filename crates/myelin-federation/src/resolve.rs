//! Server name resolution (spec: Server-Server API, "Resolving server names"): from a server name
//! to the addresses to connect to, the name the TLS certificate must carry and the `Host` header.
//!
//! Every lookup (A/AAAA, SRV, `/.well-known/matrix/server`) goes through [`Lookup`], so the
//! algorithm is tested without a network. `.well-known` answers are cached here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use myelin_core::Clock;
use ruma::{OwnedServerName, ServerName};

/// The port used when neither the name, `.well-known` nor SRV gives one.
pub const DEFAULT_PORT: u16 = 8448;
/// How long a `.well-known` answer is cached when it says nothing (`Cache-Control`).
pub const WELL_KNOWN_DEFAULT_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest a `.well-known` answer is cached, whatever it says.
pub const WELL_KNOWN_MAX_TTL_MS: u64 = 48 * 60 * 60 * 1000;
/// How long a failed or absent `.well-known` is remembered.
pub const WELL_KNOWN_ERROR_TTL_MS: u64 = 10 * 60 * 1000;

/// Why a server name could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} is not a valid server name")]
    InvalidName(String),
    #[error("no address found for {0}")]
    NoAddress(String),
    #[error("DNS lookup of {name} failed: {reason}")]
    Dns { name: String, reason: String },
    #[error("no usable .well-known/matrix/server on {host}: {reason}")]
    WellKnown { host: String, reason: String },
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// A successful `/.well-known/matrix/server` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellKnown {
    /// The `m.server` value: `hostname[:port]`.
    pub server: String,
    /// From `Cache-Control: max-age`, in milliseconds.
    pub max_age_ms: Option<u64>,
}

/// The lookups resolution needs.
#[async_trait]
pub trait Lookup: Send + Sync {
    /// A and AAAA records of `host`.
    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError>;
    /// SRV records of `name` (e.g. `_matrix-fed._tcp.example.org`); empty when there are none.
    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, ResolveError>;
    /// `GET https://<host>/.well-known/matrix/server`.
    async fn well_known(&self, host: &str) -> Result<WellKnown, ResolveError>;
}

/// Where and how to reach a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub server_name: OwnedServerName,
    /// The name the TLS certificate must be valid for, and the URL host: a hostname, or an IP
    /// address (IPv6 without brackets).
    pub tls_name: String,
    pub port: u16,
    /// The `Host` header to send.
    pub host_header: String,
    /// The addresses to connect to (the port is `port`).
    pub addrs: Vec<SocketAddr>,
}

impl Destination {
    /// `tls_name` as a URL host (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        match self.tls_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => self.tls_name.clone(),
        }
    }
}

/// Resolves server names, caching `.well-known` answers.
pub struct Resolver {
    lookup: Arc<dyn Lookup>,
    clock: Arc<dyn Clock>,
    /// Host to (delegated server name or `None`, expiry).
    well_known: Mutex<HashMap<String, (Option<String>, u64)>>,
}

impl Resolver {
    pub fn new(lookup: Arc<dyn Lookup>, clock: Arc<dyn Clock>) -> Resolver {
        Resolver {
            lookup,
            clock,
            well_known: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the spec's algorithm for `server_name`.
    pub async fn resolve(&self, server_name: &ServerName) -> Result<Destination, ResolveError> {
        let (host, port) = split_host_port(server_name.as_str())?;
        let dest = |tls_name: &str, port: u16, host_header: String, ips: Vec<IpAddr>| Destination {
            server_name: server_name.to_owned(),
            tls_name: tls_name.to_owned(),
            port,
            host_header,
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        };
        // 1. An IP literal, with or without a port.
        if let Ok(ip) = host.parse::<IpAddr>() {
            let port = port.unwrap_or(DEFAULT_PORT);
            return Ok(dest(host, port, server_name.to_string(), vec![ip]));
        }
        // 2. A hostname with an explicit port.
        if let Some(port) = port {
            let ips = self.ips(host).await?;
            return Ok(dest(host, port, server_name.to_string(), ips));
        }
        // 3. Delegation through .well-known.
        if let Some(delegated) = self.well_known(host).await {
            let (d_host, d_port) = split_host_port(&delegated)?;
            // 3.1 An IP literal.
            if let Ok(ip) = d_host.parse::<IpAddr>() {
                return Ok(dest(
                    d_host,
                    d_port.unwrap_or(DEFAULT_PORT),
                    delegated.clone(),
                    vec![ip],
                ));
            }
            // 3.2 A hostname with a port.
            if let Some(d_port) = d_port {
                let ips = self.ips(d_host).await?;
                return Ok(dest(d_host, d_port, delegated.clone(), ips));
            }
            // 3.3 / 3.4 SRV records of the delegated name.
            if let Some((port, ips)) = self.srv(d_host).await? {
                return Ok(dest(d_host, port, d_host.to_owned(), ips));
            }
            // 3.5 The delegated name on the default port.
            let ips = self.ips(d_host).await?;
            return Ok(dest(d_host, DEFAULT_PORT, d_host.to_owned(), ips));
        }
        // 4. / 5. SRV records of the server name.
        if let Some((port, ips)) = self.srv(host).await? {
            return Ok(dest(host, port, host.to_owned(), ips));
        }
        // 6. The name itself on the default port.
        let ips = self.ips(host).await?;
        Ok(dest(host, DEFAULT_PORT, host.to_owned(), ips))
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let ips = self.lookup.ips(host).await?;
        if ips.is_empty() {
            return Err(ResolveError::NoAddress(host.to_owned()));
        }
        Ok(ips)
    }

    /// `_matrix-fed._tcp.<host>`, then the deprecated `_matrix._tcp.<host>`: the first target
    /// (by priority, then weight) that has addresses.
    async fn srv(&self, host: &str) -> Result<Option<(u16, Vec<IpAddr>)>, ResolveError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let name = format!("{service}.{host}");
            let mut records = match self.lookup.srv(&name).await {
                Ok(records) => records,
                Err(e) => {
                    tracing::debug!(%name, error = %e, "SRV lookup failed");
                    continue;
                }
            };
            // A single "." target means the service is explicitly unavailable.
            records.retain(|r| r.target != "." && !r.target.is_empty());
            records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
            for record in records {
                let target = record.target.trim_end_matches('.');
                match self.lookup.ips(target).await {
                    Ok(ips) if !ips.is_empty() => return Ok(Some((record.port, ips))),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%target, error = %e, "SRV target does not resolve"),
                }
            }
        }
        Ok(None)
    }

    /// The delegated server name of `host`, from the cache or the network.
    async fn well_known(&self, host: &str) -> Option<String> {
        let now = self.clock.now_ms();
        {
            let cache = self.well_known.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((answer, expires)) = cache.get(host) {
                if *expires > now {
                    return answer.clone();
                }
            }
        }
        let (answer, ttl) = match self.lookup.well_known(host).await {
            Ok(wk) if <&ServerName>::try_from(wk.server.as_str()).is_ok() => {
                let ttl = wk
                    .max_age_ms
                    .unwrap_or(WELL_KNOWN_DEFAULT_TTL_MS)
                    .min(WELL_KNOWN_MAX_TTL_MS);
                (Some(wk.server), ttl)
            }
            Ok(wk) => {
                tracing::debug!(%host, server = %wk.server, "invalid m.server in .well-known");
                (None, WELL_KNOWN_ERROR_TTL_MS)
            }
            Err(e) => {
                tracing::debug!(%host, error = %e, "no .well-known delegation");
                (None, WELL_KNOWN_ERROR_TTL_MS)
            }
        };
        let mut cache = self.well_known.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: expired entries go first, and a full cache is emptied rather than grown.
        if cache.len() >= 10_000 {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= 10_000 {
                cache.clear();
            }
        }
        cache.insert(host.to_owned(), (answer.clone(), now.saturating_add(ttl)));
        answer
    }
}

/// Splits `host[:port]` (IPv6 literals in brackets); the host of an IPv6 literal is returned
/// without brackets.
pub fn split_host_port(name: &str) -> Result<(&str, Option<u16>), ResolveError> {
    let invalid = || ResolveError::InvalidName(name.to_owned());
    if let Some(rest) = name.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(invalid)?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(invalid)?
                    .parse()
                    .map_err(|_| invalid())?,
            ),
        };
        return Ok((host, port));
    }
    match name.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port.parse().map_err(|_| invalid())?))),
        None if name.is_empty() => Err(invalid()),
        None => Ok((name, None)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;

    struct FixedClock(AtomicU64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[derive(Default)]
    struct FakeDns {
        ips: HashMap<String, Vec<IpAddr>>,
        srv: HashMap<String, Vec<SrvRecord>>,
        well_known: HashMap<String, WellKnown>,
        well_known_calls: AtomicUsize,
    }

    #[async_trait]
    impl Lookup for FakeDns {
        async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
            self.ips
                .get(host)
                .cloned()
                .ok_or_else(|| ResolveError::Dns {
                    name: host.into(),
                    reason: "NXDOMAIN".into(),
                })
        }
        async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, ResolveError> {
            Ok(self.srv.get(name).cloned().unwrap_or_default())
        }
        async fn well_known(&self, host: &str) -> Result<WellKnown, ResolveError> {
            self.well_known_calls.fetch_add(1, Ordering::SeqCst);
            self.well_known
                .get(host)
                .cloned()
                .ok_or_else(|| ResolveError::WellKnown {
                    host: host.into(),
                    reason: "404".into(),
                })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn srv(target: &str, port: u16, priority: u16) -> SrvRecord {
        SrvRecord {
            priority,
            weight: 0,
            port,
            target: target.into(),
        }
    }

    fn wk(server: &str) -> WellKnown {
        WellKnown {
            server: server.into(),
            max_age_ms: None,
        }
    }

    fn dns() -> FakeDns {
        let mut dns = FakeDns::default();
        for (host, addr) in [
            ("plain.example", "203.0.113.1"),
            ("ported.example", "203.0.113.2"),
            ("delegating.example", "203.0.113.3"),
            ("matrix.delegated.example", "203.0.113.4"),
            ("srv-target.example", "203.0.113.5"),
            ("srv-target2.example", "203.0.113.6"),
            ("legacy-target.example", "203.0.113.7"),
        ] {
            dns.ips.insert(host.into(), vec![ip(addr)]);
        }
        dns.well_known
            .insert("delegating.example".into(), wk("matrix.delegated.example"));
        dns.well_known.insert(
            "delegating-port.example".into(),
            wk("matrix.delegated.example:1234"),
        );
        dns.well_known
            .insert("delegating-ip.example".into(), wk("[2001:db8::1]:4321"));
        dns.well_known
            .insert("delegating-srv.example".into(), wk("srv.example"));
        dns.well_known
            .insert("broken-delegation.example".into(), wk("not a name"));
        dns.ips
            .insert("broken-delegation.example".into(), vec![ip("203.0.113.8")]);
        dns.srv.insert(
            "_matrix-fed._tcp.srv.example".into(),
            vec![
                srv("srv-target2.example.", 9000, 20),
                srv("srv-target.example.", 8999, 10),
            ],
        );
        dns.srv.insert(
            "_matrix-fed._tcp.plain-srv.example".into(),
            vec![
                srv("missing.example", 1, 1),
                srv("srv-target.example", 8443, 5),
            ],
        );
        dns.srv.insert(
            "_matrix._tcp.legacy.example".into(),
            vec![srv("legacy-target.example", 7000, 0)],
        );
        dns
    }

    struct Expect<'a> {
        tls: &'a str,
        port: u16,
        host: &'a str,
        addr: &'a str,
    }

    async fn check(resolver: &Resolver, name: &str, expected: Expect<'_>) {
        let server: OwnedServerName = name.try_into().expect("server name");
        let d = resolver
            .resolve(&server)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (
                d.tls_name.as_str(),
                d.port,
                d.host_header.as_str(),
                d.addrs.clone()
            ),
            (
                expected.tls,
                expected.port,
                expected.host,
                vec![SocketAddr::new(ip(expected.addr), expected.port)]
            ),
            "{name}"
        );
    }

    fn resolver(dns: FakeDns) -> (Resolver, Arc<FakeDns>, Arc<FixedClock>) {
        let dns = Arc::new(dns);
        let clock = Arc::new(FixedClock(AtomicU64::new(1_000)));
        (Resolver::new(dns.clone(), clock.clone()), dns, clock)
    }

    #[tokio::test]
    async fn resolution_steps() {
        let (r, _, _) = resolver(dns());
        check(
            &r,
            "198.51.100.1",
            Expect {
                tls: "198.51.100.1",
                port: 8448,
                host: "198.51.100.1",
                addr: "198.51.100.1",
            },
        )
        .await;
        check(
            &r,
            "198.51.100.1:1",
            Expect {
                tls: "198.51.100.1",
                port: 1,
                host: "198.51.100.1:1",
                addr: "198.51.100.1",
            },
        )
        .await;
        check(
            &r,
            "[2001:db8::2]:99",
            Expect {
                tls: "2001:db8::2",
                port: 99,
                host: "[2001:db8::2]:99",
                addr: "2001:db8::2",
            },
        )
        .await;
        check(
            &r,
            "ported.example:8000",
            Expect {
                tls: "ported.example",
                port: 8000,
                host: "ported.example:8000",
                addr: "203.0.113.2",
            },
        )
        .await;
        check(
            &r,
            "delegating.example",
            Expect {
                tls: "matrix.delegated.example",
                port: 8448,
                host: "matrix.delegated.example",
                addr: "203.0.113.4",
            },
        )
        .await;
        check(
            &r,
            "delegating-port.example",
            Expect {
                tls: "matrix.delegated.example",
                port: 1234,
                host: "matrix.delegated.example:1234",
                addr: "203.0.113.4",
            },
        )
        .await;
        check(
            &r,
            "delegating-ip.example",
            Expect {
                tls: "2001:db8::1",
                port: 4321,
                host: "[2001:db8::1]:4321",
                addr: "2001:db8::1",
            },
        )
        .await;
        check(
            &r,
            "delegating-srv.example",
            Expect {
                tls: "srv.example",
                port: 8999,
                host: "srv.example",
                addr: "203.0.113.5",
            },
        )
        .await;
        check(
            &r,
            "plain-srv.example",
            Expect {
                tls: "plain-srv.example",
                port: 8443,
                host: "plain-srv.example",
                addr: "203.0.113.5",
            },
        )
        .await;
        check(
            &r,
            "legacy.example",
            Expect {
                tls: "legacy.example",
                port: 7000,
                host: "legacy.example",
                addr: "203.0.113.7",
            },
        )
        .await;
        check(
            &r,
            "plain.example",
            Expect {
                tls: "plain.example",
                port: 8448,
                host: "plain.example",
                addr: "203.0.113.1",
            },
        )
        .await;
        check(
            &r,
            "broken-delegation.example",
            Expect {
                tls: "broken-delegation.example",
                port: 8448,
                host: "broken-delegation.example",
                addr: "203.0.113.8",
            },
        )
        .await;
        let v6: OwnedServerName = "[2001:db8::2]:99".try_into().expect("name");
        let url = r.resolve(&v6).await.expect("resolves").url_host();
        assert_eq!(url, "[2001:db8::2]");

        let missing: OwnedServerName = "nowhere.example".try_into().expect("name");
        assert!(r.resolve(&missing).await.is_err());
    }

    #[tokio::test]
    async fn well_known_is_cached() {
        let (r, dns, clock) = resolver(dns());
        let name: OwnedServerName = "delegating.example".try_into().expect("name");
        r.resolve(&name).await.expect("resolves");
        r.resolve(&name).await.expect("resolves");
        assert_eq!(dns.well_known_calls.load(Ordering::SeqCst), 1);
        clock
            .0
            .fetch_add(WELL_KNOWN_DEFAULT_TTL_MS, Ordering::SeqCst);
        r.resolve(&name).await.expect("resolves");
        assert_eq!(dns.well_known_calls.load(Ordering::SeqCst), 2);

        // Failures are cached too, for less time.
        let plain: OwnedServerName = "plain.example".try_into().expect("name");
        r.resolve(&plain).await.expect("resolves");
        r.resolve(&plain).await.expect("resolves");
        assert_eq!(dns.well_known_calls.load(Ordering::SeqCst), 3);
        clock.0.fetch_add(WELL_KNOWN_ERROR_TTL_MS, Ordering::SeqCst);
        r.resolve(&plain).await.expect("resolves");
        assert_eq!(dns.well_known_calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a.example").ok(), Some(("a.example", None)));
        assert_eq!(
            split_host_port("a.example:80").ok(),
            Some(("a.example", Some(80)))
        );
        assert_eq!(split_host_port("[::1]").ok(), Some(("::1", None)));
        assert_eq!(split_host_port("[::1]:8").ok(), Some(("::1", Some(8))));
        assert!(split_host_port("a.example:x").is_err());
        assert!(split_host_port("[::1]8").is_err());
    }
}
