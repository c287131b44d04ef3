//! Serving HTTP until shutdown, with a bounded drain.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// How long a client may keep a connection without using it, and how long the kernel keeps
/// one whose client vanished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// The most a connection may go without a complete request head: before its first byte,
    /// between two requests on a keep-alive connection, or while a slow client sends its head
    /// (hyper's `header_read_timeout`, which needs a timer to run at all). Then the connection
    /// is closed, without a response. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// `TCP_USER_TIMEOUT` on every accepted connection: data sent and not acknowledged this
    /// long closes the connection. A client that vanished (a phone out of coverage, its
    /// address gone) acknowledges nothing, and Linux otherwise retransmits for ~15 minutes
    /// (`tcp_retries2`) while a long response (a flag stream) holds its place. `None`: the
    /// kernel's default.
    pub tcp_user_timeout: Option<Duration>,
}

impl Default for Connections {
    /// 75 s idle, as nginx's `keepalive_timeout` (above the 60 s of most load balancers, which
    /// should close an idle connection before its server does); 30 s unacknowledged.
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(75)),
            tcp_user_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl Connections {
    /// Sets the socket options of an accepted connection.
    pub fn prepare(&self, stream: &tokio::net::TcpStream) -> std::io::Result<()> {
        if let Some(timeout) = self.tcp_user_timeout {
            socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout))?;
        }
        Ok(())
    }
}

/// Serves `router` until `shutdown` is cancelled; then stops accepting connections and lets
/// in-flight requests finish for up to `drain`. HTTP/1.1 (and HTTP/2 with prior knowledge), as
/// `axum::serve`, with each connection's read buffer bounded ([`READ_BUFFER_BYTES`]), which
/// `axum::serve` does not let one set, and idle or vanished clients' connections closed
/// ([`Connections::default`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    serve_with(listener, router, shutdown, drain, Connections::default()).await
}

/// [`serve`], with `connections` for how idle and vanished clients' connections are closed.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
    connections: Connections,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    tracing::info!(%addr, "listening");
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(READ_BUFFER_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(connections.idle_timeout);
    let graceful = GracefulShutdown::new();
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
        if let Err(error) = connections.prepare(&stream) {
            tracing::debug!(%error, "cannot set an accepted connection's options");
        }
        let (builder, router, watcher) = (builder.clone(), router.clone(), graceful.watcher());
        let (idle_timeout, stopping) = (connections.idle_timeout, shutdown.clone());
        tokio::spawn(async move {
            // Before its first byte a connection is not hyper's yet (it reads the first bytes
            // to tell HTTP/1 from HTTP/2, with no timeout of its own): the idle timeout is
            // kept here.
            if let Some(idle) = idle_timeout {
                // `peek`, not `readable`: readiness may be reported before any byte came.
                let mut first = [0; 1];
                let came = tokio::select! {
                    peeked = tokio::time::timeout(idle, stream.peek(&mut first)) => {
                        matches!(peeked, Ok(Ok(1)))
                    }
                    () = stopping.cancelled() => false,
                };
                if !came {
                    return;
                }
            }
            let service = TowerToHyperService::new(router);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::trace!(%error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use axum::body::Body;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    const IDLE: Duration = Duration::from_secs(1);

    /// A server of `/` (a word) and `/slow` (a chunk every 200 ms, for 2 s: longer than the
    /// idle timeout), with `IDLE` as its idle timeout.
    async fn server() -> (std::net::SocketAddr, CancellationToken) {
        let router = Router::new().route("/", get(|| async { "hello" })).route(
            "/slow",
            get(|| async {
                let chunks = futures::stream::unfold(0, |n| async move {
                    if n == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Ok::<_, std::io::Error>(format!("chunk {n};")), n + 1))
                });
                Body::from_stream(chunks)
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let connections = Connections {
            idle_timeout: Some(IDLE),
            ..Connections::default()
        };
        tokio::spawn(serve_with(
            listener,
            router,
            shutdown.clone(),
            Duration::from_secs(1),
            connections,
        ));
        (addr, shutdown)
    }

    /// Reads until the server closes the connection (within 10 s): what it sent, and after how
    /// long.
    async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut read = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut read))
            .await
            .expect("the server closes the connection")
            .expect("a clean close");
        (
            String::from_utf8_lossy(&read).into_owned(),
            started.elapsed(),
        )
    }

    fn request(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_once_idle() {
        let (addr, _shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let (read, after) = read_to_close(&mut stream).await;
        assert_eq!(read, "");
        assert!(after >= IDLE - Duration::from_millis(100), "{after:?}");
    }

    #[tokio::test]
    async fn a_head_sent_too_slowly_has_its_connection_closed() {
        let (addr, _shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: te")
            .await
            .unwrap();
        let (read, after) = read_to_close(&mut stream).await;
        // hyper answers nothing to a head that timed out (no `408`).
        assert_eq!(read, "");
        assert!(after >= IDLE - Duration::from_millis(100), "{after:?}");
    }

    #[tokio::test]
    async fn a_keep_alive_connection_is_closed_once_idle_between_requests() {
        let (addr, _shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request("/").as_bytes()).await.unwrap();
        let (read, after) = read_to_close(&mut stream).await;
        assert!(read.starts_with("HTTP/1.1 200 "), "{read}");
        assert!(read.ends_with("hello"), "{read}");
        assert!(after >= IDLE - Duration::from_millis(100), "{after:?}");
    }

    #[tokio::test]
    async fn a_connection_in_use_stays_open_past_the_idle_timeout() {
        let (addr, _shutdown) = server().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Requests every 300 ms for twice the idle timeout, all on one connection.
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < 2 * IDLE {
            stream.write_all(request("/").as_bytes()).await.unwrap();
            let mut buffer = [0; 1024];
            let n = stream.read(&mut buffer).await.unwrap();
            let answer = String::from_utf8_lossy(&buffer[..n]);
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
            answered += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(answered >= 6, "{answered}");
        // A response longer than the idle timeout is not cut either.
        stream.write_all(request("/slow").as_bytes()).await.unwrap();
        let (read, _) = read_to_close(&mut stream).await;
        assert!(read.starts_with("HTTP/1.1 200 "), "{read}");
        let chunks: Vec<&str> = read
            .split("\r\n")
            .filter(|line| line.starts_with("chunk"))
            .collect();
        let expected: Vec<String> = (0..10).map(|n| format!("chunk {n};")).collect();
        assert_eq!(chunks, expected, "{read}");
    }

    #[tokio::test]
    async fn accepted_connections_give_up_on_a_vanished_client() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let before = socket2::SockRef::from(&accepted)
            .tcp_user_timeout()
            .unwrap();
        assert_eq!(before, None, "the kernel's default");
        Connections::default().prepare(&accepted).unwrap();
        assert_eq!(
            socket2::SockRef::from(&accepted)
                .tcp_user_timeout()
                .unwrap(),
            Some(Duration::from_secs(30))
        );
    }
}
