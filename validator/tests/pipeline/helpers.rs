use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use collect_testkit::{
    ANY_PORT, Api, Probe, Running, Services, Site, amqp_url, defaults, eventually,
};
use serde_json::{Value, json};
use validator::ValidatorConfig;

pub const KEY: &str = "pipeline-key";

/// ingest and validators, in process, sharing this test's own namespace and database. Derefs
/// to ingest's [`Api`] (`post`, `get`, ... with the key).
pub struct Pipeline {
    pub api: Api,
    pub namespace: Namespace,
    pub topology: Topology,
    pub database_url: String,
    /// Where the services reach RabbitMQ.
    pub amqp: String,
    /// ingest first, then the validators.
    services: Services,
}

impl std::ops::Deref for Pipeline {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

pub fn validator_config(namespace: &Namespace, database_url: &str, amqp: &str) -> ValidatorConfig {
    let mut config: ValidatorConfig = defaults();
    config.common = Site::at(namespace, database_url, amqp).common();
    config.listen = ANY_PORT;
    config
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
        let site = Site {
            amqp_url: amqp,
            ..Site::new(super::ENGINE)
        };
        let (ingest, running) = start_ingest(&site, ANY_PORT.port()).await;
        let mut services = Services::default();
        services.push(running);
        for _ in 0..validators {
            services.push(
                start_validator(validator_config(
                    &site.namespace,
                    &site.database_url,
                    &site.amqp_url,
                ))
                .await,
            );
        }
        let pipeline = Self {
            api: Api::new(ingest, KEY),
            topology: Topology::new(site.namespace.clone()),
            namespace: site.namespace,
            database_url: site.database_url,
            amqp: site.amqp_url,
            services,
        };
        pipeline.wait_until_ready().await;
        pipeline
    }

    fn site(&self) -> Site {
        Site::at(&self.namespace, &self.database_url, &self.amqp)
    }

    /// Stops ingest (as SIGTERM would) and returns once it has stopped.
    pub async fn stop_ingest(&mut self) {
        self.services.stop_at(0).await;
    }

    /// Starts ingest again on the port it had.
    pub async fn start_ingest_again(&mut self) {
        let (_, running) = start_ingest(&self.site(), self.api.addr.port()).await;
        self.services.restart_at(0, running);
        self.wait_until_ready().await;
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
        let site = self.site();
        self.services.stop().await;
        site.remove().await;
    }
}

/// ingest in process, on `port` (0: any).
async fn start_ingest(site: &Site, port: u16) -> (std::net::SocketAddr, Running) {
    let mut config: ingest::IngestConfig = defaults();
    config.common = site.common();
    config.listen = std::net::SocketAddr::new(ANY_PORT.ip(), port);
    config.api_keys = vec![KEY.to_owned()];
    config.auth = ingest::AuthMode::On;
    // Webhook receivers in tests are local, and their retries quick.
    config.webhooks_allow_http = true;
    config.webhooks_retry_min_ms = 100;
    config.webhooks_retry_max_ms = 400;
    config.webhooks_max_attempts = 3;
    config.webhooks_timeout_ms = 5000;
    let app = ingest::Application::build(config).await.unwrap();
    let addr = app.local_addr();
    (
        addr,
        Running::spawn(|shutdown| app.run_until_stopped(shutdown)),
    )
}

pub async fn start_validator(config: ValidatorConfig) -> Running {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = validator::Application::build(config, &shutdown)
        .await
        .unwrap();
    Running::spawn(|shutdown| app.run_until_stopped(shutdown))
}

/// A seed payload with `changes` applied: valid as it stands.
pub fn seed(response_id: &str, user_id: &str, changes: Value) -> Value {
    let mut payload = collect_testkit::seed_payload(response_id);
    // Plain numbers and a Unix time where the seed's payload mixes types (tested elsewhere).
    let plain = json!({
        "user_id": user_id,
        "last_modified_time": 1_795_169_700,
        "How much money do you spend monthly on healthcare?": 2000,
        "How much money do you spend monthly on fuel for your car?": 3000
    });
    for (key, value) in plain
        .as_object()
        .unwrap()
        .iter()
        .chain(changes.as_object().unwrap())
    {
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
