//! Services in the test's own process: where they run ([`Site`]: the test's namespace,
//! database and broker), configurations built from it, each service a task that stops when
//! its token is cancelled ([`Running`], [`Services`]), and a client for ingest's API with the
//! test's key ([`Api`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use collect_shared::config::{CommonConfig, Namespace};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a service may take to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Listen on any free port of the loopback interface.
pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Where a test's services run: a namespace and a database of its own, and the broker.
#[derive(Debug, Clone)]
pub struct Site {
    pub namespace: Namespace,
    pub database_url: String,
    pub amqp_url: String,
}

impl Site {
    /// A fresh namespace and database on `engine`, the local broker.
    pub fn new(engine: crate::Engine) -> Self {
        Self {
            namespace: crate::namespace(),
            database_url: crate::database_url(engine),
            amqp_url: crate::amqp_url(),
        }
    }

    /// An existing site: a namespace, a database and a broker already chosen.
    pub fn at(namespace: &Namespace, database_url: &str, amqp_url: &str) -> Self {
        Self {
            namespace: namespace.clone(),
            database_url: database_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
        }
    }

    /// The settings every service shares, for this site.
    pub fn common(&self) -> CommonConfig {
        #[derive(clap::Parser)]
        struct Common {
            #[command(flatten)]
            common: CommonConfig,
        }
        let Common { mut common } = defaults();
        common.amqp_url = self.amqp_url.clone();
        common.database_url = self.database_url.clone();
        common.namespace = self.namespace.clone();
        common
    }

    /// Removes the namespace's queues and exchanges and drops the database.
    pub async fn remove(&self) {
        crate::remove_namespace(&self.namespace).await;
        crate::drop_database(&self.database_url).await;
    }
}

/// A service's configuration with every setting at its default (as its binary would have it
/// with no flags), for a test to set what it needs as fields.
pub fn defaults<C: clap::Parser>() -> C {
    C::try_parse_from(["service"]).expect("the defaults parse")
}

/// A service running as a task of the test's runtime until its token is cancelled.
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Spawns `run` with a token of its own (an `Application::run_until_stopped`).
    pub fn spawn<Fut>(run: impl FnOnce(CancellationToken) -> Fut) -> Self
    where
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Self { shutdown, task }
    }

    /// Asks it to stop, as SIGTERM would.
    pub fn cancel(&self) {
        self.shutdown.cancel();
    }

    /// Stops it and waits until it has stopped, cleanly.
    pub async fn stop(self) {
        self.cancel();
        self.stopped().await;
    }

    async fn stopped(self) {
        tokio::time::timeout(STOP_DEADLINE, self.task)
            .await
            .expect("a service stops within 20 s")
            .expect("the service's task did not panic")
            .expect("the service stopped cleanly");
    }
}

/// Services started together and stopped together.
#[derive(Default)]
pub struct Services(Vec<Option<Running>>);

impl Services {
    pub fn push(&mut self, service: Running) {
        self.0.push(Some(service));
    }

    /// Stops the `index`-th service started (as SIGTERM would) and waits until it has.
    pub async fn stop_at(&mut self, index: usize) {
        if let Some(service) = self.0[index].take() {
            service.stop().await;
        }
    }

    /// Puts `service` in the `index`-th place (after [`Services::stop_at`]).
    pub fn restart_at(&mut self, index: usize, service: Running) {
        assert!(self.0[index].is_none(), "service {index} is still running");
        self.0[index] = Some(service);
    }

    /// Asks every service to stop at once, then waits for each.
    pub async fn stop(self) {
        for service in self.0.iter().flatten() {
            service.cancel();
        }
        for service in self.0.into_iter().flatten() {
            service.stopped().await;
        }
    }
}

/// ingest's HTTP API, with a key.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub key: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        Self {
            addr,
            key: key.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(self.client.put(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(self.client.delete(self.url(path))).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(self.client.get(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        request
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("ingest answers")
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_until_ready(&self) {
        wait_until_ready(&self.client, self.addr, Duration::from_secs(20)).await;
    }
}

/// Waits until the service at `addr` answers `/readyz` with 200, for at most `deadline`.
pub async fn wait_until_ready(
    client: &reqwest::Client,
    addr: impl std::fmt::Display,
    deadline: Duration,
) {
    crate::eventually(deadline, &format!("{addr} ready"), || async {
        let response = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}
