//! The client's IP address, for per-IP rate limits: the TCP peer, or, when the peer is one of
//! the configured trusted reverse proxies, the address that proxy put in `X-Forwarded-For`.
//!
//! Anyone can send `X-Forwarded-For`, so the header is believed only from a trusted proxy;
//! otherwise a client could pick a fresh "address" for every request and never be limited.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, HeaderMap},
};
use ipnet::IpNet;

use crate::{error::ApiError, SharedState};

/// The reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.1`, `::1`) and ranges (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{entry:?} is neither an IP address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    ///
    /// From a trusted proxy, `X-Forwarded-For` is read from the right (each proxy appends the
    /// address it got the request from): the first address that is not itself a trusted proxy
    /// is the client. An entry that does not parse stops the walk at the last address known good,
    /// since anything left of it was written by someone we cannot vouch for.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>();
        for entry in forwarded.into_iter().rev() {
            let Some(ip) = parse_forwarded_ip(entry) else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:1.2.3.4`) as the IPv4 address, so one
/// client has one bucket and IPv4 ranges match.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client IP of a request (see the module docs); the key of per-IP rate limits.
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The rate-limit key.
    pub fn key(&self) -> String {
        self.0.to_string()
    }
}

impl FromRequestParts<SharedState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let ConnectInfo(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
            .ok_or_else(|| ApiError::unknown("The connection has no peer address"))?;
        Ok(ClientIp(
            state
                .options
                .trusted_proxies
                .client_ip(peer.ip(), &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_forward() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.9"), &headers(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
        let some = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            some.client_ip(ip("203.0.113.9"), &headers(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let peer = ip("10.1.2.3");
        // The client forged the leftmost entry; the proxies appended the real one.
        assert_eq!(
            t.client_ip(peer, &headers(&["6.6.6.6, 198.51.100.7, 192.0.2.1"])),
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            t.client_ip(peer, &headers(&["6.6.6.6", "198.51.100.7:4433"])),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(t.client_ip(peer, &headers(&[])), peer);
        // Garbage stops the walk at the last good address.
        assert_eq!(
            t.client_ip(peer, &headers(&["198.51.100.7, nonsense"])),
            peer
        );
        // All trusted: the leftmost.
        assert_eq!(t.client_ip(peer, &headers(&["10.9.9.9"])), ip("10.9.9.9"));
        assert_eq!(
            t.client_ip(peer, &headers(&["[2001:db8::1]:80"])),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let t = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        assert_eq!(
            t.client_ip(ip("::ffff:127.0.0.1"), &headers(&["198.51.100.7"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("::ffff:127.0.0.1"), &headers(&[])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
        assert!(TrustedProxies::parse(&["::1", " 10.0.0.1 "]).is_ok());
    }
}
