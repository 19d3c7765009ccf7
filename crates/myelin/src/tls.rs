//! HTTPS for the extra TLS listener (`[tls]`): the certificate (configured PEM files, or a
//! self-signed one generated into the data directory) turned into a rustls server configuration,
//! and a listener that hands axum only connections whose TLS handshake succeeded.
//!
//! Other homeservers (Synapse in particular) only federate over HTTPS, so a server that is not
//! behind a TLS-terminating proxy needs this to federate at all.

pub mod certificate;
pub mod listener;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ruma::ServerName;

use crate::config::TlsConfig;

pub use certificate::{generate_self_signed, self_signed_hosts, SelfSigned};
pub use listener::TlsListener;

/// The directory inside the data directory where a self-signed certificate is kept.
pub const SELF_SIGNED_DIR: &str = "tls";

/// Why the TLS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the {what} {}: {error}", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the {what} {} is not usable PEM: {message}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot generate a self-signed certificate for {hosts:?}: {error}")]
    Generate { hosts: Vec<String>, error: String },
    #[error("the certificate and private key are not usable together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls configuration of the HTTPS listener, or `None` when `tls` names no certificate
/// (neither `certificate` nor `self_signed`). A self-signed certificate for `server_name`'s host
/// is generated into `<data_dir>/tls/` on the first call and reused afterwards.
pub fn server_config(
    tls: &TlsConfig,
    data_dir: &Path,
    server_name: &ServerName,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let (certificate, private_key) = match (&tls.certificate, &tls.private_key) {
        (Some(certificate), Some(private_key)) => (certificate.clone(), private_key.clone()),
        // Config::validate refuses a certificate without a key and vice versa.
        _ if !tls.self_signed => return Ok(None),
        _ => certificate::load_or_generate_self_signed(
            &data_dir.join(SELF_SIGNED_DIR),
            &self_signed_hosts(server_name),
        )?,
    };
    let (chain, key) = certificate::load(&certificate, &private_key)?;
    // An explicit provider: the implicit one panics when two backends are compiled in, as in
    // the test suite, where matrix-sdk brings aws-lc-rs next to our ring.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // axum serves HTTP/1.1 only (its `http2` feature is off), so that is all we offer.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}
