//! Serving HTTP until shutdown, with a bounded drain.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The most a connection's read buffer grows to. hyper's default, ~400 KB, is reached by any
/// connection that once read a large body, and kept for as long as the connection lives: 32
/// connections that had posted responses of 160 KB held 16 MB of ingest's heap in these
/// buffers. A body larger than this is read through it in steps.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves `router` until `shutdown` is cancelled; then stops accepting connections and lets
/// in-flight requests finish for up to `drain`. HTTP/1.1 (and HTTP/2 with prior knowledge), as
/// `axum::serve`, with each connection's read buffer bounded ([`READ_BUFFER_BYTES`]), which
/// `axum::serve` does not let one set.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    tracing::info!(%addr, "listening");
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(READ_BUFFER_BYTES);
    let connections = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // A connection reset before it was accepted concerns that client only;
                    // anything else (out of file descriptors) passes with time, as in
                    // `axum::serve`.
                    if !is_connection_error(&error) {
                        tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!(
            ?drain,
            "requests still in flight at the shutdown deadline; exiting anyway"
        ),
    }
    Ok(())
}

fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// Binds `addr`, naming the variable it came from when that fails.
pub async fn bind(addr: std::net::SocketAddr, variable: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({variable})"))
}

/// A service bound to its port and connected to its database, not yet running: what a
/// service's `Application::build` makes (the broker, where it has one, is connected in the
/// background when it runs).
pub struct Bound<C> {
    pub listener: TcpListener,
    pub config: C,
    pub store: crate::store::Store,
}

impl<C> Bound<C> {
    /// Binds `listen` (named `variable` when that fails) and connects to the database
    /// (creating it and running the migrations; retried until `shutdown`).
    pub async fn new(
        config: C,
        listen: std::net::SocketAddr,
        variable: &str,
        store: &crate::store::StoreSettings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = bind(listen, variable).await?;
        let store = crate::store::Store::connect_with_retry(store, shutdown).await?;
        Ok(Self {
            listener,
            config,
            store,
        })
    }

    /// The address it listens on (port 0 chosen by the system, for tests).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }
}

/// A service's configuration, as [`Application`] needs it: where it listens, its database, and
/// how it runs once bound.
pub trait Service: Sized + Send + 'static {
    /// The variable that names the listen address (in the error when it cannot be bound).
    const LISTEN_VARIABLE: &'static str;

    fn listen(&self) -> std::net::SocketAddr;

    fn store_settings(&self) -> crate::store::StoreSettings;

    /// Runs the bound service until `shutdown`.
    fn run(
        bound: Bound<Self>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A service bound to its port, its database ready.
pub struct Application<C>(Bound<C>);

impl<C: Service> Application<C> {
    /// Binds the listener and connects to the database (creating it and running the
    /// migrations; retried until `shutdown`).
    pub async fn build(config: C, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let (listen, store) = (config.listen(), config.store_settings());
        let bound = Bound::new(config, listen, C::LISTEN_VARIABLE, &store, shutdown).await?;
        Ok(Self(bound))
    }

    /// The address it listens on (port 0 chosen by the system, for tests).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.0.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        C::run(self.0, shutdown).await
    }

    /// Builds and runs the service until `shutdown`.
    pub async fn run(config: C, shutdown: CancellationToken) -> anyhow::Result<()> {
        Self::build(config, &shutdown)
            .await?
            .run_until_stopped(shutdown)
            .await
    }
}
