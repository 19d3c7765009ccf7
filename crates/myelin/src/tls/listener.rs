//! A listener that yields only TLS connections whose handshake completed, for
//! [`crate::connections::serve`].
//!
//! Handshakes run in their own tasks, so a slow or silent client cannot hold up the others; a
//! failed or timed-out handshake drops that one connection (logged at debug: it is the client's
//! problem, and port scanners make plenty of them) and never stops the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most handshakes in progress at once; further connections wait in the accept backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// How long to pause after an accept error that is not about one connection (e.g. too many open
/// files), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// TLS connections on a bound TCP listener.
///
/// Everything lives in this value: dropping it (axum does at shutdown) closes the port at once
/// and cancels the handshakes in progress.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// Handshake tasks; each ends with the connection, or `None` if the handshake failed.
    handshakes: JoinSet<Option<Accepted>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    /// Starts the handshake of a new TCP connection in its own task.
    fn start_handshake(&mut self, tcp: TcpStream, addr: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, addr)),
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Cancel-safe, as axum needs at shutdown: the state lives in `self`, and both awaited
    // operations are cancel-safe.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_PENDING_HANDSHAKES;
            tokio::select! {
                // With no handshake running this branch is disabled, and the accept one is not.
                Some(done) = self.handshakes.join_next() => match done {
                    Ok(Some(accepted)) => return accepted,
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "a TLS handshake task failed"),
                },
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, addr)) => self.start_handshake(tcp, addr),
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot accept a TLS connection");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Errors about one connection (the client went away before we accepted it).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
