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

mod env;

use myelin_federation::EgressPolicy;
use myelin_service::context::mail::SmtpConfig;
pub use myelin_service::sso::{OidcProviderConfig, SsoConfig};
pub use myelin_service::FederationConfig;
use myelin_service::{MediaConfig, RateLimits, ServiceConfig, TurnConfig};
pub use myelin_service::{Rate, RegistrationMode, ResourceLimits};

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "MYELIN_";

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
    /// The media repository: where uploaded files live and what an upload may cost.
    pub media: MediaConfig,
    /// Where outgoing requests other than federation may go (push gateways, application
    /// services, URL previews): non-public addresses are refused unless allowed here.
    pub egress: EgressPolicy,
    /// Outgoing e-mail (3PID validation, password resets); off without a host.
    pub smtp: SmtpConfig,
    /// Application services (bridges, bots): their registration files.
    pub appservices: AppservicesConfig,
    /// SSO login through OpenID Connect providers; off without one.
    pub sso: SsoConfig,
}

/// The `[appservices]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppservicesConfig {
    /// Registration files (YAML, as bridges generate them), read at start and on SIGHUP.
    pub registration_files: Vec<PathBuf>,
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
    /// Whether `register?kind=guest` makes guest accounts (whatever `mode` says).
    pub allow_guests: bool,
    /// Whether registration needs a validated e-mail address (needs `[smtp]`).
    pub require_email: bool,
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
            media: MediaConfig::default(),
            egress: EgressPolicy::default(),
            smtp: SmtpConfig::default(),
            appservices: AppservicesConfig::default(),
            sso: SsoConfig::default(),
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
            allow_guests: false,
            require_email: false,
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
        env::apply_env(&mut table, env)?;
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
        problems.extend(self.media.problems());
        problems.extend(self.smtp.problems());
        problems.extend(self.sso.problems());
        if self.registration.require_email && self.smtp.host.is_none() {
            problems.push("registration.require_email needs [smtp] host".to_owned());
        }
        problems.extend(self.tls.problems(&self.listen));
        problems.extend(self.http.problems());
        if let (Ok(_), Err(e)) = (self.parsed_server_name(), self.load_appservices()) {
            problems.push(e.to_string());
        }
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

    /// The directory of the media files: `media.path`, or `<data_dir>/media`.
    pub fn media_path(&self) -> PathBuf {
        match &self.media.path {
            Some(path) => path.clone(),
            None => self.data_dir.join("media"),
        }
    }

    /// Reads and checks the application-service registration files.
    pub fn load_appservices(&self) -> anyhow::Result<Vec<myelin_service::appservices::Appservice>> {
        let server_name = self.parsed_server_name()?;
        myelin_service::appservices::load_files(&self.appservices.registration_files, &server_name)
            .map_err(|e| anyhow!("appservices.registration_files: {e}"))
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
        sc.allow_guests = self.registration.allow_guests;
        sc.default_room_version =
            ruma::RoomVersionId::try_from(self.rooms.default_version.as_str())
                .expect("validated room version");
        sc.refreshable_token_lifetime_ms = self.limits.refreshable_token_lifetime_ms;
        sc.max_sync_timeout_ms = self.limits.max_sync_timeout_ms;
        sc.max_typing_timeout_ms = self.limits.max_typing_timeout_ms;
        sc.rate_limits = self.rate_limits.clone();
        sc.turn = self.turn.clone();
        sc.resources = self.resources.clone();
        sc.media = self.media.clone();
        sc.egress = self.egress.clone();
        sc.smtp = self.smtp.clone();
        sc.require_email = self.registration.require_email;
        sc.media.path = Some(self.media_path());
        sc.sso = self.sso.clone();
        // Where browsers reach us, as Synapse's `public_baseurl` defaults.
        sc.sso.public_baseurl = Some(
            match (&self.sso.public_baseurl, &self.well_known.client_base_url) {
                (Some(url), _) | (None, Some(url)) => url.clone(),
                (None, None) => format!("https://{}", self.server_name),
            },
        );
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

#[cfg(test)]
mod tests;
