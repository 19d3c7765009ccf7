//! The server configuration: one typed [`Config`], read from built-in defaults, then an optional
//! TOML file, then `MYELIN_*` environment variables, and checked once by [`Config::validate`].
//!
//! Environment variables name a key with its path in upper case, sections separated by a double
//! underscore: `MYELIN_SERVER_NAME`, `MYELIN_LISTEN`, `MYELIN_REGISTRATION__MODE=token`,
//! `MYELIN_REGISTRATION__TOKENS=a,b`, `MYELIN_LIMITS__MAX_REQUEST_BYTES=100`. `MYELIN_CONFIG`
//! (the config file path) is read by the command line, not here.
//!
//! Every option, with its default, is documented in `config.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

pub use myelin_service::FederationConfig;
pub use myelin_service::{Rate, RegistrationMode, ResourceLimits};
use myelin_service::{RateLimits, ServiceConfig, TurnConfig};

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "MYELIN_";

/// Environment variables with [`ENV_PREFIX`] that are not configuration keys: the config path,
/// and the test suite's own switches (README), which a developer's shell may well export.
const ENV_NOT_KEYS: &[&str] = &[
    "MYELIN_CONFIG",
    "MYELIN_TEST_POSTGRES_URL",
    "MYELIN_TEST_BACKEND",
    "MYELIN_REQUIRE_POSTGRES",
    "MYELIN_REQUIRE_SYNAPSE",
];

/// The name of the database file inside the data directory when `database.path` is unset.
pub const DEFAULT_DB_FILE: &str = "myelin.db";

/// The whole server configuration. See `config.example.toml` for what each option does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name: the part after the colon in user and room IDs. Never change it once
    /// users exist.
    pub server_name: String,
    /// The `IP:port` the client API listens on.
    pub listen: String,
    /// Where the signing key and (by default) the database live.
    pub data_dir: PathBuf,
    /// The log filter, in `tracing_subscriber::EnvFilter` syntax. `RUST_LOG` overrides it.
    pub log: String,
    pub database: DatabaseConfig,
    pub registration: RegistrationConfig,
    pub limits: LimitsConfig,
    pub rooms: RoomsConfig,
    pub well_known: WellKnownConfig,
    /// The server-server API: keys, request signing, how other servers are reached.
    pub federation: FederationConfig,
    /// An extra HTTPS listener (other homeservers federate over HTTPS only).
    pub tls: TlsConfig,
    /// Client rate limits (token buckets per user or client IP).
    pub rate_limits: RateLimits,
    /// The TURN server for VoIP calls.
    pub turn: TurnConfig,
    /// Connection limits and trusted reverse proxies of the HTTP(S) listeners.
    pub http: HttpConfig,
    /// Bounds on fan-out to other servers and on rooms cached in memory.
    pub resources: ResourceLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The storage backend: `sqlite` (embedded, the default) or `postgres`.
    pub backend: String,
    /// The database file (SQLite); `<data_dir>/myelin.db` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The connection URL (PostgreSQL), e.g. `postgres://myelin:secret@localhost/myelin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file whose first line is the connection URL (PostgreSQL), to keep the password out of
    /// the configuration. Exclusive with `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The most connections open to the database at once (PostgreSQL).
    pub pool_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    /// `open`, `token` or `closed`.
    pub mode: RegistrationMode,
    /// The registration tokens accepted in `token` mode.
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest HTTP request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// The longest `/sync` long-poll honoured, in milliseconds.
    pub max_sync_timeout_ms: u64,
    /// The longest typing notification honoured, in milliseconds.
    pub max_typing_timeout_ms: u64,
    /// The lifetime of access tokens issued together with a refresh token, in milliseconds.
    pub refreshable_token_lifetime_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// The room version of rooms created without an explicit `room_version`.
    pub default_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WellKnownConfig {
    /// When set, `/.well-known/matrix/client` answers `{"m.homeserver": {"base_url": ...}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_base_url: Option<String>,
    /// When set (or when support contacts are listed), `/.well-known/matrix/support` answers with
    /// this page and the contacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_page: Option<String>,
    /// Who to contact about this server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub support_contacts: Vec<SupportContact>,
}

/// The HTTPS listener: the same APIs as `listen`, over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The `IP:port` of the HTTPS listener, e.g. `0.0.0.0:8448`; unset, there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The certificate chain, PEM, leaf first. Set together with `private_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// The certificate's private key, PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PathBuf>,
    /// Without `certificate`: generate a self-signed certificate for the server name's host into
    /// `<data_dir>/tls/` on first start and reuse it afterwards (test networks).
    pub self_signed: bool,
}

impl TlsConfig {
    /// Whether a certificate is configured (files, or self-signed).
    pub fn has_certificate(&self) -> bool {
        self.certificate.is_some() || self.self_signed
    }

    /// The configuration problems of the `[tls]` section.
    fn problems(&self, plain_listen: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, path) in [
            ("certificate", &self.certificate),
            ("private_key", &self.private_key),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(format!(
                    "tls.{key} must not be empty (remove it to unset it)"
                ));
            }
        }
        match (&self.certificate, &self.private_key) {
            (Some(_), None) => problems.push(
                "tls.certificate is set without tls.private_key; set both (PEM files)".to_owned(),
            ),
            (None, Some(_)) => problems.push(
                "tls.private_key is set without tls.certificate; set both (PEM files)".to_owned(),
            ),
            _ => {}
        }
        if let Some(listen) = &self.listen {
            match listen.parse::<SocketAddr>() {
                Err(_) => problems.push(format!(
                    "tls.listen {listen:?} is not an `IP:port` address (for example \"0.0.0.0:8448\")"
                )),
                Ok(addr) if addr.port() != 0 && plain_listen.parse::<SocketAddr>() == Ok(addr) => {
                    problems.push(format!(
                        "tls.listen {listen:?} is the same address as listen; use another port"
                    ))
                }
                Ok(_) => {}
            }
            if !self.has_certificate() {
                problems.push(
                    "tls.listen is set but there is no certificate: set tls.certificate and \
                     tls.private_key, or tls.self_signed = true"
                        .to_owned(),
                );
            }
        }
        problems
    }
}

/// What a client may hold of the HTTP(S) listeners, and whom to believe about client addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` header names the
    /// client, for per-IP rate limits. From any other peer the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// How long a client may take to send a request's headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body after its headers, in milliseconds.
    pub request_body_timeout_ms: u64,
    /// How long a keep-alive connection may sit idle between requests, in milliseconds.
    pub idle_timeout_ms: u64,
    /// The most connections open at once over both listeners; more are closed on arrival.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            trusted_proxies: Vec::new(),
            header_read_timeout_ms: 10_000,
            request_body_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_connections: 4096,
        }
    }
}

impl HttpConfig {
    /// The parsed `trusted_proxies`. Fails only if [`Config::validate`] would.
    pub fn trusted_proxies(&self) -> anyhow::Result<myelin_api::TrustedProxies> {
        myelin_api::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| anyhow!("http.trusted_proxies: {e}"))
    }

    /// The per-connection limits of the listeners.
    pub fn connection_limits(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            request_body_timeout: std::time::Duration::from_millis(self.request_body_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
        }
    }

    /// The configuration problems of the `[http]` section.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.trusted_proxies() {
            problems.push(e.to_string());
        }
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("request_body_timeout_ms", self.request_body_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                problems.push(format!("http.{key} must be greater than 0"));
            }
        }
        if self.max_connections == 0 {
            problems.push("http.max_connections must be at least 1".to_owned());
        }
        problems
    }
}

/// One entry of `/.well-known/matrix/support`'s `contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportContact {
    /// `m.role.admin` or `m.role.security`.
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".to_owned(),
            listen: "127.0.0.1:8008".to_owned(),
            data_dir: PathBuf::from("./myelin-data"),
            log: "info".to_owned(),
            database: DatabaseConfig::default(),
            registration: RegistrationConfig::default(),
            limits: LimitsConfig::default(),
            rooms: RoomsConfig::default(),
            well_known: WellKnownConfig::default(),
            federation: FederationConfig::default(),
            tls: TlsConfig::default(),
            rate_limits: RateLimits::default(),
            turn: TurnConfig::default(),
            http: HttpConfig::default(),
            resources: ResourceLimits::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            backend: "sqlite".to_owned(),
            path: None,
            url: None,
            url_file: None,
            pool_size: 10,
        }
    }
}

impl DatabaseConfig {
    /// Whether the backend is PostgreSQL (`postgres` or `postgresql`).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend.as_str(), "postgres" | "postgresql")
    }

    /// The configuration problems of the `[database]` section.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.backend.as_str() {
            "sqlite" => {
                if self.url.is_some() || self.url_file.is_some() {
                    problems.push(
                        "database.url and database.url_file are for backend = \"postgres\"; remove them or set \
                         the backend"
                            .to_owned(),
                    );
                }
            }
            "postgres" | "postgresql" => {
                match (&self.url, &self.url_file) {
                    (None, None) => problems.push(
                        "database.backend = \"postgres\" needs database.url (or database.url_file)"
                            .to_owned(),
                    ),
                    (Some(_), Some(_)) => problems
                        .push("set only one of database.url and database.url_file".to_owned()),
                    (Some(url), None) => {
                        if let Err(e) = myelin_storage_postgres::parse_url(url) {
                            problems.push(format!("database.url: {e}"));
                        }
                    }
                    (None, Some(file)) => {
                        if file.as_os_str().is_empty() {
                            problems.push("database.url_file must not be empty".to_owned());
                        }
                    }
                }
                if self.path.is_some() {
                    problems.push(
                        "database.path is for backend = \"sqlite\"; use database.url".to_owned(),
                    );
                }
            }
            other => problems.push(format!(
                "database.backend {other:?} is unknown; use \"sqlite\" or \"postgres\""
            )),
        }
        if self.pool_size == 0 {
            problems.push("database.pool_size must be at least 1".to_owned());
        }
        problems
    }

    /// The PostgreSQL connection URL: `url`, or the first line of `url_file`.
    pub fn postgres_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let Some(file) = &self.url_file else {
            bail!("database.url (or database.url_file) is not set");
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read database.url_file {}", file.display()))?;
        let url = text.lines().next().unwrap_or("").trim().to_owned();
        if url.is_empty() {
            bail!("database.url_file {} is empty", file.display());
        }
        Ok(url)
    }
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            mode: RegistrationMode::Open,
            tokens: Vec::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 1_048_576,
            max_sync_timeout_ms: 60_000,
            max_typing_timeout_ms: 120_000,
            refreshable_token_lifetime_ms: 300_000,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default_version: "10".to_owned(),
        }
    }
}

impl Config {
    /// The defaults, with `data_dir` set to `dir`.
    pub fn for_data_dir(dir: PathBuf) -> Config {
        Config {
            data_dir: dir,
            ..Config::default()
        }
    }

    /// Defaults, then the TOML file at `path` (if given), then `MYELIN_*` environment variables.
    /// Does not validate; call [`Config::validate`].
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| match path {
                    Some(path) => anyhow!(
                        "invalid configuration (file {} and MYELIN_* variables): {}",
                        path.display(),
                        e.message()
                    ),
                    None => anyhow!(
                        "invalid configuration (MYELIN_* variables): {}",
                        e.message()
                    ),
                })?;
        Ok(config)
    }

    /// Parses a TOML document on top of the defaults, without looking at the environment.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Config> {
        toml::from_str(text).map_err(|e| anyhow!("invalid configuration: {}", e.message()))
    }

    /// The configuration as a TOML document.
    pub fn to_toml_string(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot serialize the configuration")
    }

    /// Checks everything the server relies on, with one clear message per problem.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Err(e) = <&ruma::ServerName>::try_from(self.server_name.as_str()) {
            problems.push(format!(
                "server_name {:?} is not a valid Matrix server name: {e}",
                self.server_name
            ));
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen {:?} is not an `IP:port` address (for example \"127.0.0.1:8008\" or \"[::]:8008\")",
                self.listen
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir must not be empty".to_owned());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            problems.push(format!("log {:?} is not a valid log filter: {e}", self.log));
        }
        problems.extend(self.database.problems());
        if let Some(path) = &self.database.path {
            if path.as_os_str().is_empty() {
                problems.push(
                    "database.path must not be empty (remove it to use the default)".to_owned(),
                );
            }
        }
        if self.registration.mode == RegistrationMode::Token
            && !self.registration.tokens.iter().any(|t| !t.is_empty())
        {
            problems.push(
                "registration.mode = \"token\" needs at least one non-empty registration.tokens entry".to_owned(),
            );
        }
        if self.registration.tokens.iter().any(|t| t.is_empty()) {
            problems.push("registration.tokens must not contain empty tokens".to_owned());
        }
        if self.limits.max_request_bytes == 0 {
            problems.push("limits.max_request_bytes must be greater than 0".to_owned());
        }
        if self.limits.refreshable_token_lifetime_ms == 0 {
            problems.push("limits.refreshable_token_lifetime_ms must be greater than 0".to_owned());
        }
        if !myelin_room::SUPPORTED_VERSIONS.contains(&self.rooms.default_version.as_str()) {
            problems.push(format!(
                "rooms.default_version {:?} is not supported; use one of {}",
                self.rooms.default_version,
                myelin_room::SUPPORTED_VERSIONS.join(", ")
            ));
        }
        if let Some(url) = &self.well_known.client_base_url {
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(char::is_whitespace)
            {
                problems.push(format!(
                    "well_known.client_base_url {url:?} must be an http:// or https:// URL"
                ));
            }
        }
        if self.resources.max_servers_per_request == 0 {
            problems.push("resources.max_servers_per_request must be greater than 0".to_owned());
        }
        if self.resources.room_cache_capacity == 0 {
            problems.push("resources.room_cache_capacity must be greater than 0".to_owned());
        }
        problems.extend(self.federation.problems());
        problems.extend(self.tls.problems(&self.listen));
        problems.extend(self.http.problems());
        match problems.len() {
            0 => Ok(()),
            1 => bail!("invalid configuration: {}", problems[0]),
            _ => bail!("invalid configuration:\n  - {}", problems.join("\n  - ")),
        }
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        match &self.database.path {
            Some(path) => path.clone(),
            None => self.data_dir.join(DEFAULT_DB_FILE),
        }
    }

    /// The parsed server name. Fails only if [`Config::validate`] would.
    pub fn parsed_server_name(&self) -> anyhow::Result<ruma::OwnedServerName> {
        ruma::OwnedServerName::try_from(self.server_name.as_str()).map_err(|e| {
            anyhow!(
                "server_name {:?} is not a valid Matrix server name: {e}",
                self.server_name
            )
        })
    }

    /// The options of the use cases.
    ///
    /// # Panics
    /// If the configuration does not pass [`Config::validate`].
    pub fn service_config(&self) -> ServiceConfig {
        let server_name = self.parsed_server_name().expect("validated server name");
        let mut sc = ServiceConfig::new(server_name);
        sc.registration = self.registration.mode;
        sc.registration_tokens = self.registration.tokens.clone();
        sc.default_room_version =
            ruma::RoomVersionId::try_from(self.rooms.default_version.as_str())
                .expect("validated room version");
        sc.refreshable_token_lifetime_ms = self.limits.refreshable_token_lifetime_ms;
        sc.max_sync_timeout_ms = self.limits.max_sync_timeout_ms;
        sc.max_typing_timeout_ms = self.limits.max_typing_timeout_ms;
        sc.rate_limits = self.rate_limits.clone();
        sc.turn = self.turn.clone();
        sc.resources = self.resources.clone();
        sc
    }

    /// The body of `/.well-known/matrix/support`, when configured.
    pub fn well_known_support(&self) -> Option<serde_json::Value> {
        let wk = &self.well_known;
        if wk.support_page.is_none() && wk.support_contacts.is_empty() {
            return None;
        }
        let mut body = serde_json::json!({ "contacts": wk.support_contacts });
        if let Some(page) = &wk.support_page {
            body["support_page"] = serde_json::json!(page);
        }
        Some(body)
    }

    /// The body of `/.well-known/matrix/client`, when configured.
    pub fn well_known_client(&self) -> Option<serde_json::Value> {
        self.well_known
            .client_base_url
            .as_ref()
            .map(|url| serde_json::json!({ "m.homeserver": { "base_url": url } }))
    }
}

/// Overlays the `MYELIN_*` variables of `env` onto `table`.
///
/// The type of each value follows the option's default: strings are taken verbatim, numbers and
/// booleans are parsed, lists are a TOML array or comma-separated. Unknown keys are an error.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = match toml::Value::try_from(Config::default()).context("serialize defaults")? {
        toml::Value::Table(t) => t,
        _ => unreachable!("a struct serializes to a table"),
    };
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let (section, key) = match path.as_slice() {
            [key] if !key.is_empty() => (None, key.as_str()),
            [section, key] if !section.is_empty() && !key.is_empty() => {
                (Some(section.as_str()), key.as_str())
            }
            _ => bail!("environment variable {var} does not name a configuration option"),
        };
        let default_section = match section {
            None => &defaults,
            Some(s) => match defaults.get(s) {
                Some(toml::Value::Table(t)) => t,
                _ => bail!("environment variable {var}: there is no configuration section [{s}]"),
            },
        };
        let known = default_section.get(key);
        if matches!(known, Some(toml::Value::Table(_))) {
            bail!(
                "environment variable {var} names the section [{key}]; set its keys as MYELIN_{}__<KEY>",
                key.to_ascii_uppercase()
            );
        }
        if known.is_none() && !OPTIONAL_KEYS.contains(&(section.unwrap_or(""), key)) {
            bail!("environment variable {var} does not name a configuration option");
        }
        let target = match section {
            None => &mut *table,
            Some(s) => {
                let entry = table
                    .entry(s.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    _ => bail!("configuration key {s} must be a section, not a value"),
                }
            }
        };
        match known {
            // An optional option (no default): a string; empty means unset.
            None => {
                if raw.is_empty() {
                    target.remove(key);
                } else {
                    target.insert(key.to_owned(), toml::Value::String(raw));
                }
            }
            Some(default) => {
                let value = env_value(default, &raw)
                    .with_context(|| format!("environment variable {var}={raw:?}"))?;
                target.insert(key.to_owned(), value);
            }
        }
    }
    Ok(())
}

/// Options without a default value (absent from the serialized defaults): `(section, key)`.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("database", "path"),
    ("database", "url"),
    ("database", "url_file"),
    ("well_known", "client_base_url"),
    ("well_known", "support_page"),
    ("federation", "well_known_server"),
    ("turn", "shared_secret"),
    ("tls", "listen"),
    ("tls", "certificate"),
    ("tls", "private_key"),
];

/// Parses an environment value into the TOML type of the option's default.
fn env_value(default: &toml::Value, raw: &str) -> anyhow::Result<toml::Value> {
    let parsed = parse_toml_value(raw.trim());
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => match parsed {
            Some(v @ toml::Value::Integer(_)) => v,
            _ => bail!("expected an integer"),
        },
        toml::Value::Float(_) => match parsed {
            Some(v @ (toml::Value::Float(_) | toml::Value::Integer(_))) => v,
            _ => bail!("expected a number"),
        },
        toml::Value::Boolean(_) => match parsed {
            Some(v @ toml::Value::Boolean(_)) => v,
            _ => bail!("expected true or false"),
        },
        toml::Value::Array(_) => match parsed {
            Some(v @ toml::Value::Array(_)) => v,
            _ => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
        },
        _ => parsed.unwrap_or_else(|| toml::Value::String(raw.to_owned())),
    })
}

/// `raw` as a TOML value, if it is one.
fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    let mut doc = toml::from_str::<toml::Table>(&format!("v = {raw}")).ok()?;
    if doc.len() != 1 {
        return None;
    }
    doc.remove("v")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config.example.toml");

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_env(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::load_with_env(None, env(vars))
    }

    #[test]
    fn example_file_equals_defaults() {
        let parsed = Config::from_toml_str(EXAMPLE).expect("config.example.toml parses");
        assert_eq!(parsed, Config::default());
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn example_file_mentions_every_option() {
        // Every option, including those without a default, appears (maybe commented out).
        let mut all = Config::default();
        all.database.path = Some("x".into());
        all.database.url = Some("postgres://x".into());
        all.database.url_file = Some("x".into());
        all.well_known.client_base_url = Some("https://x".into());
        all.well_known.support_page = Some("https://x".into());
        all.federation.well_known_server = Some("x.org:443".into());
        all.turn.shared_secret = Some("x".into());
        all.tls.listen = Some("0.0.0.0:8448".into());
        all.tls.certificate = Some("x".into());
        all.tls.private_key = Some("x".into());
        let table = toml::Value::try_from(all).unwrap();
        let toml::Value::Table(table) = table else {
            unreachable!()
        };
        for (key, value) in &table {
            match value {
                toml::Value::Table(section) => {
                    assert!(
                        EXAMPLE.contains(&format!("[{key}]")),
                        "section [{key}] missing from example"
                    );
                    for sub in section.keys() {
                        assert!(
                            EXAMPLE.contains(&format!("{sub} =")),
                            "{key}.{sub} missing from example"
                        );
                    }
                }
                _ => assert!(
                    EXAMPLE.contains(&format!("{key} =")),
                    "{key} missing from example"
                ),
            }
        }
    }

    #[test]
    fn serialized_defaults_round_trip() {
        let text = Config::default().to_toml_string().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), Config::default());
        let mut c = Config::for_data_dir("/tmp/x".into());
        c.database.path = Some("/tmp/db".into());
        c.well_known.client_base_url = Some("https://m.example.org".into());
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["a".into()];
        let text = c.to_toml_string().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), c);
    }

    #[test]
    fn for_data_dir_sets_only_data_dir() {
        let c = Config::for_data_dir("/srv/m".into());
        assert_eq!(c.data_dir, PathBuf::from("/srv/m"));
        assert_eq!(c.database_path(), PathBuf::from("/srv/m/myelin.db"));
        assert_eq!(
            Config {
                data_dir: Config::default().data_dir,
                ..c
            },
            Config::default()
        );
    }

    #[test]
    fn env_overrides() {
        let c = load_env(&[
            ("MYELIN_SERVER_NAME", "example.org"),
            ("MYELIN_LISTEN", "127.0.0.1:0"),
            ("MYELIN_DATA_DIR", "/var/lib/myelin"),
            ("MYELIN_LOG", "debug,hyper=warn"),
            ("MYELIN_REGISTRATION__MODE", "token"),
            ("MYELIN_REGISTRATION__TOKENS", "one, two"),
            ("MYELIN_LIMITS__MAX_REQUEST_BYTES", "100"),
            ("MYELIN_ROOMS__DEFAULT_VERSION", "11"),
            ("MYELIN_DATABASE__PATH", "/tmp/other.db"),
            (
                "MYELIN_WELL_KNOWN__CLIENT_BASE_URL",
                "https://matrix.example.org",
            ),
            ("MYELIN_CONFIG", "/ignored.toml"),
            ("OTHER", "x"),
        ])
        .unwrap();
        assert_eq!(c.server_name, "example.org");
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/myelin"));
        assert_eq!(c.log, "debug,hyper=warn");
        assert_eq!(c.registration.mode, RegistrationMode::Token);
        assert_eq!(
            c.registration.tokens,
            vec!["one".to_owned(), "two".to_owned()]
        );
        assert_eq!(c.limits.max_request_bytes, 100);
        assert_eq!(c.rooms.default_version, "11");
        assert_eq!(c.database_path(), PathBuf::from("/tmp/other.db"));
        assert_eq!(
            c.well_known_client(),
            Some(serde_json::json!({"m.homeserver": {"base_url": "https://matrix.example.org"}}))
        );
        c.validate().unwrap();
        let sc = c.service_config();
        assert_eq!(sc.server_name.as_str(), "example.org");
        assert_eq!(sc.registration, RegistrationMode::Token);
        assert_eq!(sc.default_room_version, ruma::RoomVersionId::V11);
    }

    #[test]
    fn env_toml_array_and_case() {
        let c = load_env(&[("MYELIN_REGISTRATION__TOKENS", r#"["a,b", "c"]"#)]).unwrap();
        assert_eq!(
            c.registration.tokens,
            vec!["a,b".to_owned(), "c".to_owned()]
        );
        let c = load_env(&[("MYELIN_Registration__Mode", "closed")]).unwrap();
        assert_eq!(c.registration.mode, RegistrationMode::Closed);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "server_name = \"file.org\"\nlisten = \"0.0.0.0:1\"\n[limits]\nmax_sync_timeout_ms = 5\n",
        )
        .unwrap();
        let c =
            Config::load_with_env(Some(&path), env(&[("MYELIN_LISTEN", "127.0.0.1:2")])).unwrap();
        assert_eq!(c.server_name, "file.org");
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.limits.max_sync_timeout_ms, 5);
        assert_eq!(
            c.limits.max_typing_timeout_ms,
            LimitsConfig::default().max_typing_timeout_ms
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn env_errors() {
        let msg = |vars: &[(&str, &str)]| format!("{:#}", load_env(vars).unwrap_err());
        assert!(msg(&[("MYELIN_NOPE", "1")]).contains("MYELIN_NOPE"));
        assert!(msg(&[("MYELIN_LIMITS__NOPE", "1")]).contains("MYELIN_LIMITS__NOPE"));
        assert!(msg(&[("MYELIN_NOPE__X", "1")]).contains("[nope]"));
        assert!(msg(&[("MYELIN_LIMITS", "1")]).contains("section"));
        assert!(msg(&[("MYELIN_LIMITS__MAX_REQUEST_BYTES", "lots")]).contains("integer"));
        assert!(msg(&[("MYELIN_REGISTRATION__MODE", "sometimes")]).contains("sometimes"));
    }

    #[test]
    fn file_errors() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, "sever_name = \"typo.org\"\n").unwrap();
        let e = format!(
            "{:#}",
            Config::load_with_env(Some(&path), env(&[])).unwrap_err()
        );
        assert!(e.contains("sever_name"), "{e}");
        std::fs::write(&path, "server_name = \n").unwrap();
        let e = format!(
            "{:#}",
            Config::load_with_env(Some(&path), env(&[])).unwrap_err()
        );
        assert!(e.contains("not valid TOML"), "{e}");
        let e = format!(
            "{:#}",
            Config::load_with_env(Some(&dir.join("missing.toml")), env(&[])).unwrap_err()
        );
        assert!(e.contains("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn validation_errors() {
        let check = |f: &dyn Fn(&mut Config), needle: &str| {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        };
        check(&|c| c.server_name = "not a name!".into(), "server_name");
        check(&|c| c.server_name = String::new(), "server_name");
        check(&|c| c.listen = "localhost:http".into(), "listen");
        check(
            &|c| c.rooms.default_version = "9".into(),
            "rooms.default_version",
        );
        check(
            &|c| c.database.backend = "postgres".into(),
            "needs database.url",
        );
        check(
            &|c| {
                c.database.backend = "postgres".into();
                c.database.url = Some("postgres://h/db?bogus=1".into());
            },
            "database.url",
        );
        check(
            &|c| c.database.url = Some("postgres://h/db".into()),
            "for backend",
        );
        check(&|c| c.database.pool_size = 0, "pool_size");
        check(&|c| c.database.backend = "mysql".into(), "unknown");
        check(
            &|c| c.registration.mode = RegistrationMode::Token,
            "at least one",
        );
        check(&|c| c.limits.max_request_bytes = 0, "max_request_bytes");
        check(
            &|c| c.well_known.client_base_url = Some("matrix.org".into()),
            "client_base_url",
        );
        check(&|c| c.log = "=[".into(), "log");

        let c = Config {
            server_name: "bad name".into(),
            listen: "nope".into(),
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("server_name") && e.contains("listen"), "{e}");

        let mut c = Config {
            server_name: "example.org:8448".into(),
            listen: "[::]:8008".into(),
            ..Config::default()
        };
        c.rooms.default_version = "12".into();
        c.registration.mode = RegistrationMode::Token;
        c.registration.tokens = vec!["t".into()];
        c.validate().unwrap();
    }

    #[test]
    fn tls_options() {
        let c = load_env(&[
            ("MYELIN_TLS__LISTEN", "0.0.0.0:8448"),
            ("MYELIN_TLS__SELF_SIGNED", "true"),
            ("MYELIN_REQUIRE_SYNAPSE", "1"),
        ])
        .unwrap();
        assert_eq!(c.tls.listen.as_deref(), Some("0.0.0.0:8448"));
        assert!(c.tls.self_signed);
        assert_eq!(c.tls.certificate, None);
        c.validate().unwrap();

        let c = load_env(&[
            ("MYELIN_TLS__LISTEN", "[::]:8448"),
            ("MYELIN_TLS__CERTIFICATE", "/etc/myelin/fullchain.pem"),
            ("MYELIN_TLS__PRIVATE_KEY", "/etc/myelin/privkey.pem"),
        ])
        .unwrap();
        assert_eq!(
            c.tls.certificate,
            Some(PathBuf::from("/etc/myelin/fullchain.pem"))
        );
        assert_eq!(
            c.tls.private_key,
            Some(PathBuf::from("/etc/myelin/privkey.pem"))
        );
        c.validate().unwrap();

        let c = Config::from_toml_str("[tls]\nlisten = \"127.0.0.1:8448\"\nself_signed = true\n")
            .unwrap();
        c.validate().unwrap();
        assert_eq!(
            Config::from_toml_str(&c.to_toml_string().unwrap()).unwrap(),
            c
        );
        // A certificate without a listener is fine: the caller may bring its own listener.
        let mut c = Config::default();
        c.tls.self_signed = true;
        c.validate().unwrap();
    }

    #[test]
    fn http_options() {
        let c = load_env(&[
            (
                "MYELIN_HTTP__TRUSTED_PROXIES",
                "127.0.0.1, 10.0.0.0/8, fd00::/8",
            ),
            ("MYELIN_HTTP__HEADER_READ_TIMEOUT_MS", "2000"),
            ("MYELIN_HTTP__MAX_CONNECTIONS", "10"),
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.http.trusted_proxies,
            vec!["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
        );
        assert_eq!(c.http.header_read_timeout_ms, 2000);
        assert_eq!(c.http.max_connections, 10);
        assert_eq!(
            c.http.connection_limits().idle_timeout,
            std::time::Duration::from_secs(75)
        );

        let check = |f: &dyn Fn(&mut HttpConfig), needle: &str| {
            let mut c = Config::default();
            f(&mut c.http);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        };
        check(
            &|h| h.trusted_proxies = vec!["proxy.local".into()],
            "http.trusted_proxies",
        );
        check(
            &|h| h.header_read_timeout_ms = 0,
            "http.header_read_timeout_ms",
        );
        check(
            &|h| h.request_body_timeout_ms = 0,
            "http.request_body_timeout_ms",
        );
        check(&|h| h.idle_timeout_ms = 0, "http.idle_timeout_ms");
        check(&|h| h.max_connections = 0, "http.max_connections");
    }

    #[test]
    fn tls_validation_errors() {
        let check = |f: &dyn Fn(&mut TlsConfig), needle: &str| {
            let mut c = Config::default();
            f(&mut c.tls);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        };
        check(
            &|t| t.listen = Some("0.0.0.0:8448".into()),
            "tls.listen is set but there is no certificate",
        );
        check(
            &|t| {
                t.listen = Some("8448".into());
                t.self_signed = true;
            },
            "tls.listen \"8448\" is not an `IP:port`",
        );
        check(
            &|t| {
                t.listen = Some("127.0.0.1:8008".into());
                t.self_signed = true;
            },
            "same address as listen",
        );
        check(
            &|t| t.certificate = Some("/c.pem".into()),
            "tls.certificate is set without tls.private_key",
        );
        check(
            &|t| {
                t.private_key = Some("/k.pem".into());
                t.self_signed = true;
            },
            "tls.private_key is set without tls.certificate",
        );
        check(
            &|t| {
                t.certificate = Some("".into());
                t.private_key = Some("/k.pem".into());
            },
            "tls.certificate must not be empty",
        );
    }

    fn tempfile_dir() -> PathBuf {
        use rand::Rng;
        let n: u64 = rand::thread_rng().gen();
        let dir = std::env::temp_dir().join(format!("myelin-config-test-{n:x}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn postgres_database_options() {
        let c = load_env(&[
            ("MYELIN_DATABASE__BACKEND", "postgres"),
            (
                "MYELIN_DATABASE__URL",
                "postgres://myelin:pw@db.internal:5433/myelin",
            ),
            ("MYELIN_DATABASE__POOL_SIZE", "32"),
        ])
        .unwrap();
        c.validate().unwrap();
        assert!(c.database.is_postgres());
        assert_eq!(c.database.pool_size, 32);
        assert_eq!(
            c.database.postgres_url().unwrap(),
            "postgres://myelin:pw@db.internal:5433/myelin"
        );

        let dir = tempfile_dir();
        let secret = dir.join("db-url");
        std::fs::write(&secret, "postgres://u:pw@h/db\n").unwrap();
        let mut c = Config::default();
        c.database.backend = "postgres".into();
        c.database.url_file = Some(secret.clone());
        c.validate().unwrap();
        assert_eq!(c.database.postgres_url().unwrap(), "postgres://u:pw@h/db");
        c.database.url = Some("postgres://h/db".into());
        assert!(c.validate().unwrap_err().to_string().contains("only one"));
        c.database.url = None;
        c.database.url_file = Some(dir.join("missing"));
        assert!(format!("{:#}", c.database.postgres_url().unwrap_err()).contains("cannot read"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
