//! Outgoing e-mail over SMTP (`[smtp]`): 3PID validation tokens, password resets and the
//! digests of e-mail pushers. The relay
//! is one the administrator configured (often on the same host), so it is not subject to the
//! private-address filter that guards requests to addresses taken from users or peers.

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::{ServiceError, ServiceResult};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same host or in tests only.
    None,
}

/// `[smtp]`: without a host, the server sends no e-mail and refuses e-mail 3PIDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The sender, e.g. `Myelin <noreply@example.org>`.
    pub from: String,
    /// The public URL of this server, for the links in validation mails.
    pub public_base_url: String,
    /// How long an e-mail pusher's notification waits before it is mailed in a digest, if its
    /// room is still unread then (Synapse waits ten minutes too).
    pub notification_delay_ms: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: None,
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: "Myelin <noreply@localhost>".to_owned(),
            public_base_url: "http://localhost:8008".to_owned(),
            notification_delay_ms: 10 * 60 * 1000,
        }
    }
}

impl SmtpConfig {
    /// What is wrong with the configuration, for `Config::validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.host.is_some() && self.from.parse::<Mailbox>().is_err() {
            problems.push(format!(
                "smtp.from {:?} is not an e-mail address",
                self.from
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            problems.push("smtp.username and smtp.password go together".to_owned());
        }
        problems
    }
}

/// Sends mail through the configured relay.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub(crate) public_base_url: String,
}

impl Mailer {
    /// The mailer of `[smtp]`, or `None` when no host is configured.
    pub fn from_config(config: &SmtpConfig) -> ServiceResult<Option<Mailer>> {
        let Some(host) = &config.host else {
            return Ok(None);
        };
        let smtp_error =
            |e: lettre::transport::smtp::Error| ServiceError::Internal(format!("SMTP: {e}"));
        let builder = match config.tls {
            SmtpTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(smtp_error)?
            }
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(smtp_error)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder
            .port(config.port)
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = config
            .from
            .parse()
            .map_err(|e| ServiceError::Internal(format!("smtp.from: {e}")))?;
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
            public_base_url: config.public_base_url.trim_end_matches('/').to_owned(),
        }))
    }

    /// Sends a plain-text mail; an address that does not parse is the caller's `M_INVALID_PARAM`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> ServiceResult<()> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| ServiceError::InvalidParam("Not a valid e-mail address".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| ServiceError::Internal(format!("cannot build the mail: {e}")))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| ServiceError::Internal(format!("cannot send the mail: {e}")))?;
        Ok(())
    }
}
