//! The one private-address filter: every outgoing HTTP request the server makes (federation,
//! push gateways, application services, URL previews, remote media) reaches only the addresses
//! its [`EgressPolicy`] permits.
//!
//! The check happens after DNS and on the addresses the connection is then made to (the
//! resolver handed to reqwest returns only permitted addresses, so a second lookup cannot swap in
//! another), on IP literals before a request is sent, and again on every redirect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where outgoing requests may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressPolicy {
    /// Whether loopback, private, link-local and other non-public addresses may be reached at all
    /// (tests and closed deployments).
    pub allow_private: bool,
    /// Exceptions for self-hosted services on non-public addresses: an IP address, a CIDR range
    /// (`10.1.0.0/16`), or a host name (any address it resolves to is then permitted).
    pub allow: Vec<String>,
}

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("URL scheme {0:?} is not allowed")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("refusing to contact {0}: not a public address")]
    Forbidden(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl EgressPolicy {
    /// Whether a connection to `ip` (reached as `host`) is permitted.
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        self.allow_private
            || is_public(ip)
            || self
                .allow
                .iter()
                .any(|entry| allow_entry_matches(entry, host, ip))
    }

    /// Whether plain `http://` may be used to reach `host` (a self-hosted service: a host
    /// name on the allow-list, or a non-public IP literal the policy permits); other hosts are
    /// reached over `https` only.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        self.allow_private
            || self.allow.iter().any(|a| a.eq_ignore_ascii_case(host))
            || ip_literal(host).is_some_and(|ip| !is_public(ip) && self.permits(host, ip))
    }

    /// Whether `url` may be requested before any DNS lookup: an http(s) URL whose host, if an IP
    /// literal, is permitted. Host names are checked when they resolve.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme(url.scheme().to_owned()));
        }
        let host = url.host_str().ok_or(EgressError::NoHost)?;
        if let Some(ip) = ip_literal(host) {
            if !self.permits(host, ip) {
                return Err(EgressError::Forbidden(host.to_owned()));
            }
        }
        Ok(())
    }
}

/// Builds HTTP clients whose every connection passes the policy.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    dns: Option<Arc<hickory_resolver::TokioResolver>>,
}

/// How a client built by [`Egress::client`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Redirects followed (each re-checked); 0 follows none.
    pub max_redirects: usize,
    /// Refuse redirects to plain `http://`.
    pub https_only: bool,
    /// Accept self-signed certificates (configured test peers only).
    pub accept_invalid_certs: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            max_redirects: 0,
            https_only: false,
            accept_invalid_certs: false,
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Egress {
    /// A filter with the system's DNS configuration (or `getaddrinfo` when it cannot be read).
    pub fn new(policy: EgressPolicy) -> Egress {
        Egress::with_dns(policy, system_dns())
    }

    pub(crate) fn with_dns(
        policy: EgressPolicy,
        dns: Option<Arc<hickory_resolver::TokioResolver>>,
    ) -> Egress {
        Egress {
            policy: Arc::new(policy),
            dns,
        }
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Checks `url` before it is requested (IP literals and scheme; names are checked at connect).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        self.policy.check_url(url)
    }

    /// An HTTP client that connects only to permitted addresses and re-checks every redirect.
    /// Callers still pass each URL through [`Egress::check_url`] (reqwest does not resolve IP
    /// literals, so the resolver alone cannot see them).
    pub fn client(&self, options: &ClientOptions) -> Result<reqwest::Client, EgressError> {
        let policy = self.policy.clone();
        let max_redirects = options.max_redirects;
        let https_only = options.https_only;
        reqwest::Client::builder()
            .no_proxy()
            .timeout(options.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(options.timeout))
            .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(options.accept_invalid_certs)
            .dns_resolver(Arc::new(GuardedDns {
                policy: self.policy.clone(),
                dns: self.dns.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let allowed = policy.check_url(attempt.url()).is_ok()
                    && (!https_only || attempt.url().scheme() == "https");
                if attempt.previous().len() > max_redirects || !allowed {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| EgressError::Client(error_chain(&e)))
    }

    /// The client kept in `cell`, built by [`Egress::client`] on first use: building one reads
    /// the system's TLS roots, too slow to do for every request, so each user of outgoing HTTP
    /// keeps one.
    pub fn shared_client<'a>(
        &self,
        cell: &'a std::sync::OnceLock<reqwest::Client>,
        options: &ClientOptions,
    ) -> Result<&'a reqwest::Client, EgressError> {
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let client = self.client(options)?;
        Ok(cell.get_or_init(|| client))
    }

    /// The addresses of `host` that the policy permits (for callers that pin connections
    /// themselves, as federation does).
    pub async fn permitted_ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let ips = lookup_ips(self.dns.as_deref(), host).await?;
        Ok(ips
            .into_iter()
            .filter(|ip| self.policy.permits(host, *ip))
            .collect())
    }
}

/// The system's DNS resolver, or `None` (then `getaddrinfo`) when its configuration cannot be read.
pub(crate) fn system_dns() -> Option<Arc<hickory_resolver::TokioResolver>> {
    match hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build()) {
        Ok(dns) => Some(Arc::new(dns)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system DNS configuration; SRV records will not be used");
            None
        }
    }
}

/// Whether `ip` is a public unicast address, the only kind reached by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64
                || first == 0x0100) // discard-only
        }
    }
}

/// `host` as an IP address when it is a literal (with or without IPv6 brackets).
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether one allow-list entry (IP, CIDR or host name) covers `ip` reached as `host`.
fn allow_entry_matches(entry: &str, host: &str, ip: IpAddr) -> bool {
    if let Some((net, bits)) = entry.split_once('/') {
        let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
            return false;
        };
        return in_cidr(ip, net, bits);
    }
    match ip_literal(entry) {
        Some(allowed) => allowed == ip,
        None => entry.eq_ignore_ascii_case(host.trim_end_matches('.')),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The addresses of `host`: through hickory when the system DNS configuration was read, else
/// through `getaddrinfo` (on the blocking pool).
pub(crate) async fn lookup_ips(
    dns: Option<&hickory_resolver::TokioResolver>,
    host: &str,
) -> Result<Vec<IpAddr>, String> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![ip]);
    }
    let mut ips: Vec<IpAddr> = match dns {
        Some(dns) => {
            // Fully qualified, so that search domains are not tried (as for SRV).
            let fqdn = format!("{}.", host.trim_end_matches('.'));
            dns.lookup_ip(fqdn.as_str())
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .collect()
        }
        None => tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| e.to_string())?
            .map(|a| a.ip())
            .collect(),
    };
    ips.dedup();
    Ok(ips)
}

/// The resolver handed to reqwest: returns only permitted addresses, so the connection is made to
/// exactly what was checked.
struct GuardedDns {
    policy: Arc<EgressPolicy>,
    dns: Option<Arc<hickory_resolver::TokioResolver>>,
}

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let dns = self.dns.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup_ips(dns.as_deref(), &host)
                .await?
                .into_iter()
                .filter(|ip| policy.permits(&host, *ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no permitted address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An error and its causes, on one line (reqwest's top-level message alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn url(s: &str) -> reqwest::Url {
        s.parse().expect("url")
    }

    #[test]
    fn default_policy_refuses_private_literals_and_odd_schemes() {
        let policy = EgressPolicy::default();
        for bad in [
            "http://127.0.0.1/x",
            "http://[::1]:8008/",
            "https://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://[::ffff:192.168.0.1]/",
        ] {
            assert!(
                matches!(policy.check_url(&url(bad)), Err(EgressError::Forbidden(_))),
                "{bad} was allowed"
            );
        }
        assert_eq!(
            policy.check_url(&url("file:///etc/passwd")),
            Err(EgressError::Scheme("file".into()))
        );
        assert!(policy.check_url(&url("https://8.8.8.8/")).is_ok());
        assert!(policy.check_url(&url("https://example.org/")).is_ok());
    }

    #[test]
    fn allow_list_admits_ips_ranges_and_names() {
        let policy = EgressPolicy {
            allow_private: false,
            allow: vec!["10.1.0.0/16".into(), "127.0.0.1".into(), "push.lan".into()],
        };
        assert!(policy.permits("x", ip("10.1.2.3")));
        assert!(!policy.permits("x", ip("10.2.0.1")));
        assert!(policy.permits("x", ip("127.0.0.1")));
        assert!(!policy.permits("x", ip("127.0.0.2")));
        assert!(policy.permits("push.lan", ip("192.168.1.1")));
        assert!(policy.permits("PUSH.LAN.", ip("192.168.1.1")));
        assert!(!policy.permits("other.lan", ip("192.168.1.1")));
        assert!(EgressPolicy {
            allow_private: true,
            allow: vec![]
        }
        .permits("x", ip("127.0.0.1")));
    }

    #[test]
    fn cidr_edges() {
        assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_cidr(ip("fd00::1"), ip("fd00::"), 8));
        assert!(!in_cidr(ip("fe00::1"), ip("fd00::"), 8));
        assert!(!in_cidr(ip("1.2.3.4"), ip("1.2.3.4"), 33));
        assert!(in_cidr(ip("::ffff:10.0.0.1"), ip("10.0.0.0"), 8));
    }

    #[tokio::test]
    async fn a_client_will_not_connect_to_a_name_resolving_to_loopback() {
        let egress = Egress::with_dns(EgressPolicy::default(), None);
        let client = egress.client(&ClientOptions::default()).expect("client");
        let err = client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("loopback reached");
        assert!(error_chain(&err).contains("no permitted address"), "{err}");
    }
}
