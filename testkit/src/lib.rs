//! Test support shared by the services' integration tests. Tests talk to the real RabbitMQ
//! and PostgreSQL or MySQL/MariaDB ([`Engine`]); each one isolates itself in a namespace and a
//! database of its own.

#![allow(clippy::unwrap_used)]

mod engine;
mod harness;
mod process;
mod proxy;
mod stack;

use std::future::Future;
use std::time::{Duration, Instant};

use collect_shared::amqp::Topology;
use collect_shared::config::Namespace;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

pub use engine::{Engine, count, database_pool, database_url, drop_database, url_via};
pub use harness::{ANY_PORT, Api, Running, Services, Site, defaults, wait_until_ready};
pub use process::{ServiceProcess, check_lifecycle};
pub use proxy::FaultProxy;
pub use stack::Stack;

/// The broker the tests use: `AMQP_URL`, or the local RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A fresh namespace (`test-<random>`), so tests share the broker but never a queue.
pub fn namespace() -> Namespace {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("test-{}", &id[..12]).parse().unwrap()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message read by a [`Probe`].
#[derive(Debug)]
pub struct Received {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: serde_json::Value,
}

/// A message read by a [`Probe`], as bytes.
#[derive(Debug)]
pub struct RawReceived {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub data: Vec<u8>,
}

/// A test's own view of an exchange: an exclusive queue bound to it, read with a deadline.
pub struct Probe {
    _connection: Connection,
    channel: Channel,
    consumer: Consumer,
    /// The rest of a message that carried several responses (a JSON array, as ingest gathers
    /// them), read one at a time by [`Probe::next_within`].
    parts: std::collections::VecDeque<Received>,
}

impl Probe {
    /// Binds a new exclusive queue to `exchange` with `binding_key` (declare the topology
    /// first, e.g. by starting the service under test and waiting until it is ready).
    pub async fn bind(exchange: &str, binding_key: &str) -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("the tests need RabbitMQ at AMQP_URL or 127.0.0.1:5672");
        let channel = connection.create_channel().await.unwrap();
        let queue = collect_shared::amqp::bind_exclusive_queue(&channel, exchange, binding_key)
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                queue,
                "probe".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _connection: connection,
            channel,
            consumer,
            parts: std::collections::VecDeque::new(),
        }
    }

    /// The next message, or `None` when none comes within `wait`. A message that is a JSON
    /// array (responses ingest gathered) is read one element at a time, each with the
    /// message's routing key and properties: this reads responses, not messages (see
    /// [`Probe::next_raw_within`] for those).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        if let Some(part) = self.parts.pop_front() {
            return Some(part);
        }
        let raw = self.next_raw_within(wait).await?;
        let body: serde_json::Value = serde_json::from_slice(&raw.data).expect("a JSON message");
        let serde_json::Value::Array(parts) = body else {
            return Some(Received {
                routing_key: raw.routing_key,
                properties: raw.properties,
                body,
            });
        };
        self.parts.extend(parts.into_iter().map(|body| Received {
            routing_key: raw.routing_key.clone(),
            properties: raw.properties.clone(),
            body,
        }));
        self.parts.pop_front()
    }

    /// The next message as bytes, or `None` when none comes within `wait`.
    pub async fn next_raw_within(&mut self, wait: Duration) -> Option<RawReceived> {
        let delivery = tokio::time::timeout(wait, self.consumer.next())
            .await
            .ok()??
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        Some(RawReceived {
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties.clone(),
            data: delivery.data.clone(),
        })
    }

    /// The next message as bytes; panics when none comes within 10 s.
    pub async fn next_raw(&mut self) -> RawReceived {
        self.next_raw_within(Duration::from_secs(10))
            .await
            .expect("no message within 10 s")
    }

    /// The next message; panics when none comes within 10 s.
    pub async fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("no message within 10 s")
    }

    /// Messages now waiting in a named queue (for durable queues of the topology).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let queue = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        queue.message_count()
    }
}

/// The sum of a counter in this process's metrics (services under test run in process).
pub fn counter_total(name: &str, label: &str) -> f64 {
    let page = collect_shared::telemetry::metrics_handle().render();
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Publishes raw bytes (persistent, with a confirm), as another backend might.
pub async fn publish_raw(exchange: &str, routing_key: &str, body: &[u8]) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirmation.is_ack());
    let _ = connection.close(200, "published".into()).await;
}

/// Deletes a namespace's queues and exchanges; call it at the end of a test.
pub async fn remove_namespace(namespace: &Namespace) {
    let topology = Topology::new(namespace.clone());
    let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
    else {
        return;
    };
    for queue in [
        topology.validator_queue(),
        topology.sheets_queue(),
        topology.webhooks_queue(),
        topology.dead_queue(),
    ] {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in [
        topology.responses_exchange(),
        topology.flags_exchange(),
        topology.saved_exchange(),
        topology.dead_exchange(),
    ] {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "test done".into()).await;
}

/// The seed system's payload (the first form, as `POST /collect` takes it), with its own id.
pub fn seed_payload(response_id: &str) -> serde_json::Value {
    serde_json::json!({
        "response_id": response_id,
        "response_family_id": "f-3",
        "user_id": "u-17",
        "username": "asha",
        "location": "Pune",
        "submitted_time": "2026-11-20T10:00:00Z",
        "synced_time": "2026-11-20T10:05:00Z",
        "last_modified_time": "2026-11-20T10:15:00Z",
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
        "How much money do you spend monthly on healthcare?": 2000.5,
        "How much money do you spend monthly on fuel for your car?": "3000"
    })
}
