use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use collect_testkit::{Probe, amqp_url, eventually, remove_namespace};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use validator::ValidatorConfig;

pub const KEY: &str = "pipeline-key";

type Running = (CancellationToken, JoinHandle<anyhow::Result<()>>);

/// ingest and validators, in process, sharing this test's own namespace and database.
pub struct Pipeline {
    pub ingest: SocketAddr,
    pub namespace: Namespace,
    pub topology: Topology,
    pub database_url: String,
    /// Where the services reach RabbitMQ.
    pub amqp: String,
    pub client: reqwest::Client,
    /// ingest first, then the validators.
    services: Vec<Running>,
}

pub fn validator_config(namespace: &Namespace, database_url: &str, amqp: &str) -> ValidatorConfig {
    ValidatorConfig::try_parse_from([
        "validator",
        "--listen",
        "127.0.0.1:0",
        "--namespace",
        namespace.as_str(),
        "--database-url",
        database_url,
        "--amqp-url",
        amqp,
    ])
    .unwrap()
}

impl Pipeline {
    pub async fn start() -> Self {
        Self::start_with(1).await
    }

    pub async fn start_with(validators: usize) -> Self {
        Self::start_on(validators, amqp_url()).await
    }

    /// Like [`Pipeline::start_with`], with every service reaching RabbitMQ at `amqp` (a
    /// [`collect_testkit::FaultProxy`]'s, say).
    pub async fn start_on(validators: usize, amqp: String) -> Self {
        // Shown when a test fails (RUST_LOG filters; default info).
        collect_shared::telemetry::init_tracing(collect_shared::config::LogFormat::Text);
        let namespace = collect_testkit::namespace();
        let database_url = collect_testkit::database_url(super::ENGINE);
        let (ingest, running) = start_ingest(&namespace, &database_url, &amqp, 0).await;
        let mut services = vec![running];
        for _ in 0..validators {
            services
                .push(start_validator(validator_config(&namespace, &database_url, &amqp)).await);
        }
        let pipeline = Self {
            ingest,
            topology: Topology::new(namespace.clone()),
            namespace,
            database_url,
            amqp,
            client: reqwest::Client::new(),
            services,
        };
        pipeline.wait_until_ready().await;
        pipeline
    }

    async fn wait_until_ready(&self) {
        eventually(Duration::from_secs(20), "ingest ready", || async {
            let response = self.client.get(self.url("/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    /// Stops ingest (as SIGTERM would) and returns once it has stopped.
    pub async fn stop_ingest(&mut self) {
        let (shutdown, task) = &mut self.services[0];
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("ingest stops within 20 s")
            .unwrap()
            .unwrap();
    }

    /// Starts ingest again on the port it had.
    pub async fn start_ingest_again(&mut self) {
        let (_, running) = start_ingest(
            &self.namespace,
            &self.database_url,
            &self.amqp,
            self.ingest.port(),
        )
        .await;
        self.services[0] = running;
        self.wait_until_ready().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
    }

    /// The stored response once it is at `revision` (the route without the form).
    pub async fn stored(&self, response_id: &str, revision: u64) -> Value {
        self.read_at_revision(&format!("/v1/responses/{response_id}"), revision)
            .await
    }

    /// A form's stored response once it is at `revision`.
    pub async fn stored_in(&self, form_id: &str, response_id: &str, revision: u64) -> Value {
        self.read_at_revision(
            &format!("/v1/forms/{form_id}/responses/{response_id}"),
            revision,
        )
        .await
    }

    async fn read_at_revision(&self, path: &str, revision: u64) -> Value {
        eventually(Duration::from_secs(20), "the response stored", || async {
            let response = self.get(path).await;
            if response.status() != 200 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            (body["revision"] == json!(revision)).then_some(body)
        })
        .await
    }

    /// A probe on `N.flags` for one collector.
    pub async fn flags_probe(&self, user_id: &str) -> Probe {
        Probe::bind(
            &self.topology.flags_exchange(),
            &format!("collector.{user_id}"),
        )
        .await
    }

    pub async fn saved_probe(&self) -> Probe {
        Probe::bind(&self.topology.saved_exchange(), "#").await
    }

    pub async fn dead_probe(&self) -> Probe {
        Probe::bind(&self.topology.dead_exchange(), "").await
    }

    pub async fn stop(self) {
        for (shutdown, _) in &self.services {
            shutdown.cancel();
        }
        for (_, task) in self.services {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("a service stops within 20 s")
                .unwrap()
                .unwrap();
        }
        remove_namespace(&self.namespace).await;
        collect_testkit::drop_database(&self.database_url).await;
    }
}

/// ingest in process, on `port` (0: any).
async fn start_ingest(
    namespace: &Namespace,
    database_url: &str,
    amqp: &str,
    port: u16,
) -> (SocketAddr, Running) {
    let listen = format!("127.0.0.1:{port}");
    let config = ingest::IngestConfig::try_parse_from([
        "ingest",
        "--listen",
        &listen,
        "--namespace",
        namespace.as_str(),
        "--database-url",
        database_url,
        "--amqp-url",
        amqp,
        "--api-keys",
        KEY,
        "--auth",
        "on",
        // Webhook receivers in tests are local, and their retries quick.
        "--webhooks-allow-http",
        "true",
        "--webhooks-retry-min-ms",
        "100",
        "--webhooks-retry-max-ms",
        "400",
        "--webhooks-max-attempts",
        "3",
        "--webhooks-timeout-ms",
        "5000",
    ])
    .unwrap();
    let app = ingest::Application::build(config).await.unwrap();
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    (addr, (shutdown, task))
}

pub async fn start_validator(config: ValidatorConfig) -> Running {
    let shutdown = CancellationToken::new();
    let app = validator::Application::build(config, &shutdown)
        .await
        .unwrap();
    (
        shutdown.clone(),
        tokio::spawn(app.run_until_stopped(shutdown)),
    )
}

/// A seed payload with `changes` applied: valid as it stands.
pub fn seed(response_id: &str, user_id: &str, changes: Value) -> Value {
    let mut payload = json!({
        "response_id": response_id,
        "response_family_id": "f-3",
        "user_id": user_id,
        "username": "asha",
        "location": "Pune",
        "submitted_time": "2026-11-20T10:00:00Z",
        "synced_time": "2026-11-20T10:05:00Z",
        "last_modified_time": 1_795_169_700,
        "name": "Asha Rao",
        "email": "asha@example.com",
        "mobile_number": "+91 98200 00000",
        "gender": "female",
        "age": 34,
        "what is the monthly income?": 52000,
        "what is the monthly savings?": 8000,
        "what is the monthly expenditure?": 30000,
        "How much money do you spend monthly on food?": 12000,
        "How much money do you spend monthly on your cable service?": 500,
        "How much money do you spend monthly on healthcare?": 2000,
        "How much money do you spend monthly on fuel for your car?": 3000
    });
    for (key, value) in changes.as_object().unwrap() {
        payload[key] = value.clone();
    }
    payload
}

pub fn rule_ids(flags: &Value) -> Vec<String> {
    flags
        .as_array()
        .unwrap()
        .iter()
        .map(|flag| flag["rule_id"].as_str().unwrap().to_owned())
        .collect()
}
