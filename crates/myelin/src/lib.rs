//! The Myelin homeserver as a library: configuration and the server's life cycle (open the data
//! directory, the signing key and the database, serve the client API until told to stop).
//!
//! The `myelin` binary (`main.rs`) is a thin command line over this; integration tests call
//! [`run`] directly.

pub mod config;
pub mod keys;
pub mod storage;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use myelin_service::Services;

pub use config::Config;

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
        let services = Services::new_with_federation(
            config.service_config(),
            config.federation.clone(),
            storage,
            key,
            Arc::new(myelin_core::SystemClock),
        );
        Ok(Myelin { config, services })
    }

    /// The use cases, for the admin command line.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Serves the client API on `listener` until `shutdown` resolves, then lets in-flight
    /// requests finish (for at most [`SHUTDOWN_GRACE`]) and closes the database.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Myelin { config, services } = self;
        let options = myelin_api::ApiOptions {
            max_request_bytes: config.limits.max_request_bytes,
            well_known_client: config.well_known_client(),
            well_known_support: config.well_known_support(),
        };
        let router = myelin_api::router(services.clone(), options);
        let addr = listener
            .local_addr()
            .context("the listener has no local address")?;
        tracing::info!(%addr, server_name = %config.server_name, "serving the client API");

        // Fan the one shutdown signal out to the server and to the grace-period timer.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone, which only happens after sending.
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();
        let notifier_services = services.clone();
        let grace = async move {
            stopped(stop_rx).await;
            tracing::info!("shutting down; waiting for in-flight requests");
            // Long-polling /sync requests answer now rather than at their timeout.
            notifier_services.notifier.close();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = server => result.context("the HTTP server failed")?,
            () = grace => tracing::warn!(
                "in-flight requests did not finish within {}s; stopping without them",
                SHUTDOWN_GRACE.as_secs()
            ),
        }

        // Dropping the last handle on the storage closes the database.
        drop(services);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs the homeserver described by `config` on `listener` until `shutdown` resolves.
///
/// In-flight requests get to finish (up to [`SHUTDOWN_GRACE`]) before this returns `Ok`.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Myelin::open(config).await?.serve(listener, shutdown).await
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
