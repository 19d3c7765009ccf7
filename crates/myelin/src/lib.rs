//! The Myelin homeserver as a library: configuration and the server's life cycle (open the data
//! directory, the signing key and the database, serve the client and federation APIs over HTTP
//! and optionally HTTPS until told to stop).
//!
//! The `myelin` binary (`main.rs`) is a thin command line over this; integration tests call
//! [`run`] directly.

pub mod config;
pub mod connections;
pub mod keys;
pub mod media;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use connections::ConnectionSlots;
use myelin_service::Services;

pub use config::Config;
/// The `[smtp]` TLS modes, for configurations built in code (tests).
pub use myelin_service::context::mail::SmtpTls;

/// How long in-flight requests (e.g. `/sync` long-polls) may run on after shutdown is requested
/// before the server stops without them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A homeserver with its data directory, key and database open, ready to serve.
pub struct Myelin {
    config: Config,
    services: Arc<Services>,
}

impl Myelin {
    /// Validates `config`, creates the data directory, loads or generates the signing key and
    /// opens the database.
    pub async fn open(config: Config) -> anyhow::Result<Myelin> {
        config.validate()?;
        create_data_dir(&config.data_dir)?;
        let key = keys::load_or_generate(&config.data_dir, config.parsed_server_name()?)?;
        let storage = storage::open(&config).await?;
        let mut service_config = config.service_config();
        service_config.appservices = config.load_appservices()?;
        let services = Services::new_with_federation(
            service_config,
            config.federation.clone(),
            storage,
            key,
            Arc::new(myelin_core::SystemClock),
        );
        Ok(Myelin { config, services })
    }

    /// [`Myelin::open`] for the process that will serve: also removes the temporary files of
    /// uploads a crash cut short (a command-line tool opening the data of a running server
    /// must not, so [`Myelin::open`] leaves them).
    pub async fn open_to_serve(config: Config) -> anyhow::Result<Myelin> {
        let server = Myelin::open(config).await?;
        server.services.media.clear_unfinished_uploads();
        Ok(server)
    }

    /// A handle that reads the application-service registration files again and replaces the
    /// registrations (SIGHUP); on any problem those in force stay and the error is returned.
    /// Usable after [`Myelin::serve`] took the server.
    pub fn appservice_reloader(
        &self,
    ) -> impl Fn() -> anyhow::Result<usize> + Send + Sync + 'static {
        let config = self.config.clone();
        let services = self.services.clone();
        move || {
            let list = config.load_appservices()?;
            let count = list.len();
            services.appservices.reload(list);
            Ok(count)
        }
    }

    /// The use cases, for the admin command line.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Serves the client and federation APIs on `listener` until `shutdown` resolves, then lets
    /// in-flight requests finish (for at most [`SHUTDOWN_GRACE`]) and closes the database.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_with(listener, None, shutdown).await
    }

    /// [`Myelin::serve`], also serving the same APIs over HTTPS on `tls_listener` when given
    /// (which needs a certificate in `[tls]`; a self-signed one is generated here on first use).
    /// Both stop accepting at `shutdown` and share the grace period.
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        tls_listener: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Myelin { config, services } = self;
        let tls_listener = match tls_listener {
            Some(tcp) => Some(wrap_in_tls(&config, tcp)?),
            None => None,
        };
        let options = myelin_api::ApiOptions {
            max_request_bytes: config.limits.max_request_bytes,
            well_known_client: config.well_known_client(),
            well_known_support: config.well_known_support(),
            trusted_proxies: config.http.trusted_proxies()?,
        };
        let router = myelin_api::router(services.clone(), options);
        // Transactions stored for application services before a restart are sent now.
        services.appservices.start_pushers();
        // Events queued for other servers before a restart are sent now.
        if config.federation.enabled {
            services
                .outbox
                .start_federation_sender()
                .await
                .context("cannot read the federation outbox")?;
        }
        // Notifications queued for push gateways before a restart are delivered now.
        services
            .push
            .start_pushers()
            .await
            .context("cannot read the push queues")?;
        let addr = listener
            .local_addr()
            .context("the listener has no local address")?;
        tracing::info!(%addr, server_name = %config.server_name, "serving the client API");

        // Fan the one shutdown signal out to the servers and to the grace-period timer.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone, which only happens after sending.
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let limits = config.http.connection_limits();
        // One budget for both listeners: it bounds the server's sockets, not each port's.
        let slots = ConnectionSlots::new(config.http.max_connections);
        let plain = connections::serve(
            listener,
            router.clone(),
            limits,
            slots.clone(),
            stop_rx.clone(),
        );
        let https_stop = stop_rx.clone();
        let https = async move {
            let Some((listener, addr)) = tls_listener else {
                return;
            };
            tracing::info!(%addr, "serving the client and federation APIs over TLS");
            let listener = listener.tap_io(|tls| {
                // Small request/response exchanges should not wait on Nagle's algorithm.
                let _ = tls.get_ref().0.set_nodelay(true);
            });
            connections::serve(listener, router, limits, slots, https_stop).await
        };
        let servers = async {
            tokio::join!(plain, https);
        };
        let notifier_services = services.clone();
        let grace = async move {
            stopped(stop_rx).await;
            tracing::info!("shutting down; waiting for in-flight requests");
            // Long-polling /sync requests answer now rather than at their timeout.
            notifier_services.ctx.notifier.close();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = servers => {}
            () = grace => tracing::warn!(
                "in-flight requests did not finish within {}s; stopping without them",
                SHUTDOWN_GRACE.as_secs()
            ),
        }

        // Delivery workers end with the server: what they held stays queued for the next start.
        services.ctx.workers.stop();
        // Dropping the last handle on the storage closes the database.
        drop(services);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Wraps `tcp` in TLS with the certificate `[tls]` names; returns it with its address.
fn wrap_in_tls(
    config: &Config,
    tcp: tokio::net::TcpListener,
) -> anyhow::Result<(tls::TlsListener, SocketAddr)> {
    // Loaded here rather than in `Myelin::open`: the admin commands open the server too, and
    // have no business generating or reading certificates.
    let server_config =
        tls::server_config(&config.tls, &config.data_dir, &config.parsed_server_name()?)
            .context("cannot set up TLS ([tls])")?;
    let Some(server_config) = server_config else {
        bail!(
            "a TLS listener was given but [tls] has no certificate: set tls.certificate and \
             tls.private_key, or tls.self_signed = true"
        );
    };
    let addr = tcp
        .local_addr()
        .context("the TLS listener has no local address")?;
    Ok((tls::TlsListener::new(tcp, server_config), addr))
}

/// Runs the homeserver described by `config` on `listener` until `shutdown` resolves.
///
/// In-flight requests get to finish (up to [`SHUTDOWN_GRACE`]) before this returns `Ok`.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, listener, None, shutdown).await
}

/// [`run`], also serving HTTPS on `tls_listener` when given (see [`Myelin::serve_with`]).
pub async fn run_with(
    config: Config,
    listener: tokio::net::TcpListener,
    tls_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Myelin::open_to_serve(config)
        .await?
        .serve_with(listener, tls_listener, shutdown)
        .await
}

/// Creates the data directory (owner-only on unix) if it does not exist.
pub fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}
