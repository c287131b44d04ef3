use std::net::SocketAddr;
use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use collect_testkit::{ANY_PORT, Probe, Site, amqp_url, defaults, eventually, remove_namespace};
use ingest::{Application, AuthMode, IngestConfig};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Admin keys (bare keys are admin keys).
pub const KEY: &str = "test-key-1";
pub const OTHER_KEY: &str = "test-key-2";
/// A `reader` key, an unbound `collector` key, and a `collector` key bound to [`BOUND_USER`].
pub const READER_KEY: &str = "test-reader-key";
pub const COLLECTOR_KEY: &str = "test-collector-key";
pub const BOUND_KEY: &str = "test-collector-u-1-key";
pub const BOUND_USER: &str = "u-1";

/// `COLLECT_API_KEYS` of every test's ingest: each role.
pub fn api_keys() -> String {
    format!(
        "{KEY},{OTHER_KEY},reader:{READER_KEY},collector:{COLLECTOR_KEY},collector@{BOUND_USER}:{BOUND_KEY}"
    )
}

/// A change to the configuration [`config`] makes.
pub type Configure = Box<dyn FnOnce(&mut IngestConfig)>;

/// How a test wants its ingest.
pub struct Options {
    pub amqp_url: String,
    /// Applied to the configuration last.
    pub configure: Option<Configure>,
    pub wait_until_ready: bool,
    /// Defaults to a fresh one.
    pub namespace: Option<Namespace>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            amqp_url: amqp_url(),
            configure: None,
            wait_until_ready: true,
            namespace: None,
        }
    }
}

/// An ingest service running in this test's own namespace on a random port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    pub namespace: Namespace,
    pub topology: Topology,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// ingest's configuration for a test: its namespace and database, every role's key, and
/// publishes that give up after 2 s.
pub fn config(namespace: &Namespace, database_url: &str, amqp_url: &str) -> IngestConfig {
    let mut config: IngestConfig = defaults();
    config.common = Site::at(namespace, database_url, amqp_url).common();
    config.listen = ANY_PORT;
    config.api_keys = api_keys().split(',').map(str::to_owned).collect();
    config.auth = AuthMode::On;
    config.publish_timeout_ms = 2000;
    config
}

pub async fn spawn_app_with(mut options: Options) -> TestApp {
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(collect_testkit::namespace);
    let database_url = collect_testkit::database_url(super::ENGINE);
    let mut config = config(&namespace, &database_url, &options.amqp_url);
    if let Some(configure) = options.configure.take() {
        configure(&mut config);
    }
    let app = Application::build(config).await.expect("ingest starts");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let test_app = TestApp {
        addr,
        database_url,
        topology: Topology::new(namespace.clone()),
        namespace,
        client: reqwest::Client::new(),
        shutdown,
        server,
    };
    if options.wait_until_ready {
        test_app.wait_until_ready().await;
    }
    test_app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_until_ready(&self) {
        eventually(Duration::from_secs(20), "ingest to be ready", || async {
            let response = self.client.get(self.url("/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    /// GETs `path` with a valid API key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).bearer_auth(KEY);
        request.send().await.expect("ingest answers")
    }

    /// POSTs JSON with a valid API key.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_raw(
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).bearer_auth(KEY).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("ingest answers")
    }

    /// What `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await;
        response.expect("ingest answers").text().await.unwrap()
    }

    /// Waits until the gauge `name` reads `value` in `/metrics`.
    pub async fn gauge_reaches(&self, name: &str, value: u64) {
        let line = format!("{name} {value}");
        eventually(Duration::from_secs(10), &line.clone(), || async {
            let metrics = self.metrics().await;
            metrics.lines().any(|seen| seen == line).then_some(())
        })
        .await;
    }

    /// A probe bound to `N.responses` for every form.
    pub async fn responses_probe(&self) -> Probe {
        Probe::bind(&self.topology.responses_exchange(), "#").await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.server)
            .await
            .expect("ingest stops within 15 s")
            .expect("the server task does not panic")
            .expect("ingest stops cleanly");
        remove_namespace(&self.namespace).await;
        collect_testkit::drop_database(&self.database_url).await;
    }
}

/// The seed system's payload, every key of it.
pub fn seed_payload() -> Value {
    collect_testkit::seed_payload("r-1029")
}

/// A v1 envelope.
pub fn envelope(response_id: &str, revision: u64) -> Value {
    envelope_of("u-17", response_id, revision)
}

/// A v1 envelope of the collector `user_id`.
pub fn envelope_of(user_id: &str, response_id: &str, revision: u64) -> Value {
    json!({
        "response_id": response_id,
        "revision": revision,
        "collector": {"user_id": user_id, "username": "asha"},
        "submitted_at": "2026-11-20T10:15:00Z",
        "answers": {"monthly_income": 52000, "monthly_savings": 8000},
        "metadata": {"location": "Pune", "response_family_id": "f-3"}
    })
}

/// The body of an error answer: `(code, field)`.
pub async fn error_of(response: reqwest::Response) -> (String, Option<String>) {
    let body: Value = response.json().await.expect("a JSON error body");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error has a message: {body}"
    );
    (
        error["code"].as_str().expect("an error code").to_owned(),
        error["field"].as_str().map(str::to_owned),
    )
}
