//! Serving HTTP/1.1 connections with limits on what a client may hold: a cap on open
//! connections, a deadline for each request head, a deadline for each request body, and an idle
//! keep-alive timeout (`[http]` in the configuration). Used by the plain and the TLS listener.
//!
//! `axum::serve` offers none of these knobs, so this is its accept loop with them added: each
//! connection is a hyper HTTP/1 connection in its own task, the router answers every request,
//! and at shutdown connections finish their current request and close.

mod deadline_body;
mod head_timer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

pub use deadline_body::DeadlineBody;
pub use head_timer::{Activity, ActivityIo, HeadTimer};

/// The per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request head (after connecting, or after the first
    /// byte of a later request).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body, counted from its head.
    pub request_body_timeout: Duration,
    /// How long a connection may sit idle between requests.
    pub idle_timeout: Duration,
}

/// The open-connection budget, shared by every listener of the server.
#[derive(Debug, Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(max_connections: usize) -> Self {
        ConnectionSlots(Arc::new(Semaphore::new(max_connections)))
    }
}

/// Serves `router` on `listener` until `stop` turns true; then stops accepting, lets every
/// connection finish its current request and returns once all are closed.
///
/// A connection accepted while all `slots` are taken is closed at once: the client sees the
/// connection end before any answer and may retry, while the server's file descriptors, memory
/// and tasks stay bounded.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    slots: ConnectionSlots,
    mut stop: watch::Receiver<bool>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let mut connections = JoinSet::new();
    // Logged once per spell of refusals, not once per refused connection (a flood would flood
    // the log too).
    let mut refusing = false;
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        // Reap finished connection tasks so the set does not grow with every connection served.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.0.clone().try_acquire_owned() else {
            if !refusing {
                tracing::warn!(%peer, "too many open connections ([http] max_connections); closing new ones");
                refusing = true;
            }
            drop(io);
            continue;
        };
        refusing = false;
        let router = router.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            serve_connection(io, peer, router, limits, stop).await;
            drop(slot);
        });
    }
    // Dropping the listener closes the port before waiting for the connections to finish.
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until the client closes it, a limit closes it, or shutdown.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|body| {
            axum::body::Body::new(DeadlineBody::new(body, limits.request_body_timeout))
        });
        // What `into_make_service_with_connect_info` provides: the peer, for the client IP.
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(HeadTimer::new(
            activity.clone(),
            limits.header_read_timeout,
            limits.idle_timeout,
        ))
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(ActivityIo::new(io, activity)), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, resets and malformed requests: the client's problem.
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                // Idle connections close now; busy ones after their current response.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
