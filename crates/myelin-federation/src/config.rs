//! The `[federation]` section of the server configuration, with its defaults.

use serde::{Deserialize, Serialize};

/// How the server talks to other servers. Every option is documented in `config.example.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Whether the server-server API is served and other servers are contacted.
    pub enabled: bool,
    /// How long the keys this server publishes stay valid (`valid_until_ts` = now + this), in
    /// milliseconds.
    pub key_validity_ms: u64,
    /// Servers that may be fetched keys through (`/_matrix/key/v2/query`) when a server cannot be
    /// reached directly.
    pub trusted_key_servers: Vec<String>,
    /// Server names whose TLS certificates are not checked (self-signed test servers). An entry
    /// without a port stands for that host on every port.
    pub trusted_self_signed: Vec<String>,
    /// Server names contacted over plain HTTP instead of HTTPS (test networks only). An entry
    /// without a port stands for that host on every port.
    pub plain_http_servers: Vec<String>,
    /// Whether destinations may resolve to loopback, private, link-local or other non-public
    /// addresses. Off, such addresses are refused so a remote cannot point us at internal hosts.
    pub allow_private_destinations: bool,
    /// How long one outgoing request may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Served at `/.well-known/matrix/server` as `{"m.server": "<this>"}` when set (delegation:
    /// where other servers reach this one, `host[:port]`); unset, that endpoint answers 404.
    pub well_known_server: Option<String>,
    /// The first wait before retrying a destination that failed, in milliseconds; it doubles
    /// with each failure up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// A destination failing for this long has its queued events dropped and is only tried
    /// again when something new is sent to it, in milliseconds.
    pub give_up_after_ms: u64,
    /// Servers refused outright: their requests get 403 and nothing is sent to them.
    pub blocked_servers: Vec<String>,
    /// The most PDUs accepted in one incoming transaction (the spec's limit is 50).
    pub max_pdus_per_txn: usize,
    /// The most EDUs accepted in one incoming transaction (the spec's limit is 100).
    pub max_edus_per_txn: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: true,
            key_validity_ms: 24 * 60 * 60 * 1000,
            trusted_key_servers: Vec::new(),
            trusted_self_signed: Vec::new(),
            plain_http_servers: Vec::new(),
            allow_private_destinations: false,
            request_timeout_ms: 30_000,
            well_known_server: None,
            retry_min_ms: 2_000,
            retry_max_ms: 60 * 60 * 1000,
            give_up_after_ms: 7 * 24 * 60 * 60 * 1000,
            blocked_servers: Vec::new(),
            max_pdus_per_txn: 50,
            max_edus_per_txn: 100,
        }
    }
}

impl FederationConfig {
    /// One message per invalid option.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.key_validity_ms < 60 * 60 * 1000 {
            problems
                .push("federation.key_validity_ms must be at least one hour (3600000)".to_owned());
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            problems.push(
                "federation.retry_min_ms must be greater than 0 and at most retry_max_ms"
                    .to_owned(),
            );
        }
        if self.request_timeout_ms == 0 {
            problems.push("federation.request_timeout_ms must be greater than 0".to_owned());
        }
        if let Some(server) = &self.well_known_server {
            if <&ruma::ServerName>::try_from(server.as_str()).is_err() {
                problems
                    .push(format!("federation.well_known_server: {server:?} is not a valid `host[:port]` server name"));
            }
        }
        let lists = [
            ("trusted_key_servers", &self.trusted_key_servers),
            ("trusted_self_signed", &self.trusted_self_signed),
            ("plain_http_servers", &self.plain_http_servers),
            ("blocked_servers", &self.blocked_servers),
        ];
        for (name, list) in lists {
            for server in list.iter() {
                if <&ruma::ServerName>::try_from(server.as_str()).is_err() {
                    problems.push(format!(
                        "federation.{name}: {server:?} is not a valid server name"
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_server_must_be_a_server_name() {
        let mut config = FederationConfig {
            well_known_server: Some("matrix.example.org:443".into()),
            ..Default::default()
        };
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        config.well_known_server = Some("https://matrix.example.org".into());
        assert_eq!(config.problems().len(), 1, "{:?}", config.problems());
    }
}
