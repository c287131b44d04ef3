//! A TCP proxy in front of a real server that a test can cut or stall, so outage tests run in
//! parallel with everything else instead of stopping the shared broker.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes flow both ways.
    Pass,
    /// Every connection is closed and new ones are dropped at once: the server is down.
    Down,
    /// Connections stay open but no byte moves until restored: the server hangs.
    Stalled,
}

pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *modes.borrow() == Mode::Down {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, modes.subscribe()));
            }
        });
        Self { addr, mode }
    }

    /// A proxy in front of the test broker.
    pub async fn for_broker() -> Self {
        Self::start("127.0.0.1:5672".parse().unwrap()).await
    }

    /// A proxy in front of the test database server of `engine` (see [`Engine::server`]).
    pub async fn for_database(engine: Engine) -> Self {
        Self::start(engine.server_addr()).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker URL through this proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// The database of `url` through this proxy (a proxy [`FaultProxy::for_database`]).
    pub fn database_url(&self, url: &str) -> String {
        crate::url_via(url, &self.addr.to_string())
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Down);
    }

    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // When either direction ends, both sockets are dropped.
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = mode.wait_for(|m| *m == Mode::Down) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match mode.wait_for(|m| *m != Mode::Stalled).await.map(|m| *m) {
            Ok(Mode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
