//! Looking at and replaying what was set aside in `N.dead`.
//!
//! A dead letter goes back where it came from: a message the validator refused (header
//! `x-collect-queue: N.validator`) to `N.responses`, a flag event ingest's webhook recorder
//! refused to `N.flags`, each with its original routing key (one from the retired `N.sheets`
//! is not replayed: nothing consumes `N.saved` for the sheets any more); one RabbitMQ dead-lettered after too many deliveries to the
//! exchange and routing key its `x-death` header names.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;

use super::Topology;

/// How long to wait for one more dead letter before deciding there are no more.
const IDLE: Duration = Duration::from_millis(500);

/// A dead letter as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// Why it was set aside (`x-collect-reason`, or RabbitMQ's `x-death` reason).
    pub reason: Option<String>,
    /// Where a replay sends it: exchange and routing key.
    pub replay_to: Option<(String, String)>,
    /// The body, as text (lossy for bytes that are not UTF-8).
    pub body: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: usize,
    /// Dead letters with nowhere to go (left in `N.dead`).
    pub kept: usize,
}

async fn open(url: &str) -> anyhow::Result<Connection> {
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .context("RabbitMQ did not answer within 10 s")?
    .context("cannot connect to RabbitMQ")
}

/// Up to `limit` dead letters, oldest first. They stay in `N.dead`.
pub async fn list(url: &str, topology: &Topology, limit: u16) -> anyhow::Result<Vec<DeadLetter>> {
    let connection = open(url).await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(limit, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            topology.dead_queue().as_str().into(),
            "dead-letters-list".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut letters = Vec::new();
    while letters.len() < usize::from(limit) {
        let Ok(Some(delivery)) = tokio::time::timeout(IDLE, consumer.next()).await else {
            break;
        };
        letters.push(describe(topology, &delivery?));
    }
    // Closing without acking puts them all back.
    let _ = connection.close(200, "listed".into()).await;
    Ok(letters)
}

/// Sends up to `limit` dead letters back where they came from, each acked only after the
/// broker confirmed its replay.
pub async fn replay(url: &str, topology: &Topology, limit: u16) -> anyhow::Result<Replayed> {
    let connection = open(url).await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(limit, BasicQosOptions::default()).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            topology.dead_queue().as_str().into(),
            "dead-letters-replay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut done = Replayed::default();
    while done.replayed + done.kept < usize::from(limit) {
        let Ok(Some(delivery)) = tokio::time::timeout(IDLE, consumer.next()).await else {
            break;
        };
        let delivery = delivery?;
        let Some((exchange, routing_key)) = describe(topology, &delivery).replay_to else {
            done.kept += 1;
            continue;
        };
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        if let Some(id) = delivery.properties.message_id() {
            properties = properties.with_message_id(id.clone());
        }
        let confirmation = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &delivery.data,
                properties,
            )
            .await?
            .await?;
        if matches!(confirmation, Confirmation::Ack(None)) {
            delivery.ack(BasicAckOptions::default()).await?;
            done.replayed += 1;
        } else {
            done.kept += 1;
        }
    }
    let _ = connection.close(200, "replayed".into()).await;
    Ok(done)
}

fn text(value: Option<&AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

fn describe(topology: &Topology, delivery: &Delivery) -> DeadLetter {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let headers = headers.inner();
    let routing_key = text(headers.get("x-collect-routing-key"));
    let mut reason = text(headers.get("x-collect-reason"));
    let replay_to = match text(headers.get("x-collect-queue")) {
        Some(queue) if queue == topology.validator_queue() => {
            routing_key.map(|key| (topology.responses_exchange(), key))
        }
        Some(queue) if queue == topology.webhooks_queue() => {
            routing_key.map(|key| (topology.flags_exchange(), key))
        }
        Some(_) => None,
        // Dead-lettered by RabbitMQ itself (the delivery limit): `x-death` says from where.
        None => match headers.get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => {
                deaths.as_slice().first().and_then(|death| match death {
                    AMQPValue::FieldTable(death) => {
                        let death = death.inner();
                        reason = text(death.get("reason")).map(|r| format!("rabbitmq: {r}"));
                        let exchange = text(death.get("exchange"))?;
                        let key = match death.get("routing-keys") {
                            Some(AMQPValue::FieldArray(keys)) => {
                                keys.as_slice().first().and_then(|key| text(Some(key)))
                            }
                            _ => None,
                        }?;
                        Some((exchange, key))
                    }
                    _ => None,
                })
            }
            _ => None,
        },
    };
    DeadLetter {
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
        reason,
        replay_to,
        body: String::from_utf8_lossy(&delivery.data).into_owned(),
    }
}
