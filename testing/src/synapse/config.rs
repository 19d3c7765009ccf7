//! The YAML Synapse runs with in the federation tests: an override file on top of the config
//! Synapse generates itself (Synapse merges `--config-path` files by top-level key), plus its
//! logging config. Pure text, so the choices can be unit-tested without Python.

use std::path::Path;

/// The rate-limit sections of Synapse's config, all set to [`HIGH`]: the tests register and send
/// in bursts no real client would. (`myelin-bench`'s Synapse override lists the same.)
const RATE_LIMITS: &[&str] = &[
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_joins_per_room",
    "rc_3pid_validation",
    "rc_admin_redaction",
    "rc_room_creation",
    "rc_reports",
    "rc_delayed_event_mgmt",
    "rc_key_requests",
    "rc_presence.per_user",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
];

/// Synapse's limits on requests from other servers (a different shape from the client limits),
/// far above what two test servers exchange.
const FEDERATION_RATE_LIMIT: &str = "\
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
";

/// How Synapse retries a server it failed to reach: within seconds rather than the default
/// minutes, since tests stop and restart servers and wait for what was held back to arrive.
const FEDERATION_RETRIES: &str = "\
federation:
  max_long_retry_delay: 2s
  destination_min_retry_interval: 1s
  destination_max_retry_interval: 5s
";

/// One rate limit that never triggers.
const HIGH: &str = "{per_second: 1000000, burst_count: 1000000}";

/// Where Synapse's files go inside its temporary directory.
pub struct Files<'a> {
    pub dir: &'a Path,
}

impl Files<'_> {
    pub fn database(&self) -> std::path::PathBuf {
        self.dir.join("homeserver.db")
    }
    pub fn certificate(&self) -> std::path::PathBuf {
        self.dir.join("tls.crt")
    }
    pub fn private_key(&self) -> std::path::PathBuf {
        self.dir.join("tls.key")
    }
    pub fn log_config(&self) -> std::path::PathBuf {
        self.dir.join("test.log.config")
    }
    pub fn log(&self) -> std::path::PathBuf {
        self.dir.join("homeserver.log")
    }
}

/// The override file: one HTTPS listener on `127.0.0.1:port` for the client and federation
/// APIs, a self-signed certificate, federation to and from loopback without certificate checks,
/// no notary, SQLite, open registration and rate limits out of the way.
pub fn overrides_yaml(files: &Files<'_>, port: u16) -> String {
    let mut out = format!(
        "\
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client, federation]
        compress: false
tls_certificate_path: '{certificate}'
tls_private_key_path: '{private_key}'
# The test servers' certificates are self-signed.
federation_verify_certificates: false
# Everything runs on loopback, which Synapse refuses to contact by default.
ip_range_whitelist: ['127.0.0.0/8']
ip_range_blacklist: []
federation_ip_range_blacklist: []
# Keys come from the servers themselves, never from matrix.org.
trusted_key_servers: []
suppress_key_server_warning: true
database:
  name: sqlite3
  args:
    database: '{database}'
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
report_stats: false
log_config: '{log_config}'
",
        certificate = files.certificate().display(),
        private_key = files.private_key().display(),
        database = files.database().display(),
        log_config = files.log_config().display(),
    );
    out.push_str(&rate_limits_yaml());
    out.push_str(FEDERATION_RATE_LIMIT);
    out.push_str(FEDERATION_RETRIES);
    out
}

/// [`RATE_LIMITS`] as YAML, nested sections grouped under one key.
fn rate_limits_yaml() -> String {
    let mut out = String::new();
    let mut nested: Vec<(&str, Vec<&str>)> = Vec::new();
    for key in RATE_LIMITS {
        match key.split_once('.') {
            None => out.push_str(&format!("{key}: {HIGH}\n")),
            Some((top, sub)) => match nested.iter_mut().find(|(t, _)| *t == top) {
                Some((_, subs)) => subs.push(sub),
                None => nested.push((top, vec![sub])),
            },
        }
    }
    for (top, subs) in nested {
        out.push_str(&format!("{top}:\n"));
        for sub in subs {
            out.push_str(&format!("  {sub}: {HIGH}\n"));
        }
    }
    out
}

/// Logging at INFO (every request, so a failing test shows what Synapse did) into
/// `homeserver.log`.
pub fn log_config_yaml(files: &Files<'_>) -> String {
    format!(
        "\
version: 1
formatters:
  plain:
    format: '%(asctime)s %(name)s %(levelname)s %(request)s %(message)s'
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
handlers:
  file:
    class: logging.FileHandler
    formatter: plain
    filters: [context]
    filename: '{}'
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
",
        files.log().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_make_a_loopback_tls_federating_server() {
        let files = Files {
            dir: Path::new("/d"),
        };
        let y = overrides_yaml(&files, 9999);
        assert!(y.contains("  - port: 9999\n"));
        assert!(y.contains("tls: true"));
        assert!(y.contains("names: [client, federation]"));
        assert!(y.contains("tls_certificate_path: '/d/tls.crt'"));
        assert!(y.contains("federation_verify_certificates: false"));
        assert!(y.contains("federation_ip_range_blacklist: []"));
        assert!(y.contains("database: '/d/homeserver.db'"));
        assert!(y.contains("rc_message: {per_second"));
        assert!(y.contains("rc_login:\n  address: {per_second"));
        assert_eq!(y.matches("rc_joins:\n").count(), 1);
        assert!(y.contains("rc_federation:\n  window_size: 1000\n"));
        assert!(y.contains("federation:\n  max_long_retry_delay: 2s\n"));
    }
}
