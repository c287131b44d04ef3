//! Publishing with publisher confirms: a message counts as sent only when RabbitMQ confirmed
//! it (for a persistent message on a quorum queue: written by a quorum of nodes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use tokio::sync::Semaphore;

use super::Broker;
use crate::telemetry::InFlight;

#[derive(Debug, Clone, Copy)]
pub struct PublishSettings {
    /// Deadline for one publish: waiting for a window slot, sending, and the confirm.
    pub confirm_timeout: Duration,
    /// Publishes awaiting their confirm at once. Confirms arrive asynchronously; many in flight
    /// keeps throughput up instead of paying one fsync per message.
    pub window: usize,
}

impl Default for PublishSettings {
    fn default() -> Self {
        Self {
            confirm_timeout: Duration::from_secs(5),
            window: 512,
        }
    }
}

/// One message to publish. Always persistent JSON.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingMessage<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    pub body: &'a [u8],
    /// Application headers, if any.
    pub headers: Option<&'a FieldTable>,
    /// Whether a message no queue is bound for is an error ([`PublishError::Unroutable`]) or
    /// simply dropped by the broker (events nobody has subscribed to yet).
    pub mandatory: bool,
}

/// Why a message was not confirmed. After `Timeout` or `Channel` the message may still have
/// reached the queue: a publisher that retries relies on consumers being idempotent.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("the broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for this message: {0}")]
    Unroutable(String),
    #[error("publishing failed: {0}")]
    Channel(#[from] lapin::Error),
}

impl PublishError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Nacked => "nack",
            Self::Unroutable(_) => "unroutable",
            Self::Channel(_) => "channel",
        }
    }
}

/// Publishes on the broker's confirm channel with a bounded window of unconfirmed messages.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    window: Arc<Semaphore>,
    settings: PublishSettings,
    app_id: String,
}

impl Publisher {
    pub fn new(broker: Broker, settings: PublishSettings, app_id: &str) -> Self {
        Self {
            broker,
            window: Arc::new(Semaphore::new(settings.window.max(1))),
            settings,
            app_id: app_id.to_owned(),
        }
    }

    /// Publishes persistently with `mandatory` set, and waits for the confirm.
    pub async fn publish(&self, message: OutgoingMessage<'_>) -> Result<(), PublishError> {
        let deadline = self.settings.confirm_timeout;
        let outcome = match tokio::time::timeout(deadline, self.publish_confirmed(message)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PublishError::Timeout(deadline)),
        };
        if let Err(error) = &outcome {
            metrics::counter!("collect_publish_failures_total", "exchange" => message.exchange.to_owned(), "reason" => error.reason())
                .increment(1);
        }
        outcome
    }

    async fn publish_confirmed(&self, message: OutgoingMessage<'_>) -> Result<(), PublishError> {
        let _slot = self
            .window
            .acquire()
            .await
            .map_err(|_| PublishError::Unavailable("publisher closed".into()))?;
        let channel = self
            .broker
            .publish_channel()
            .map_err(PublishError::Unavailable)?;
        let _in_flight = InFlight::start(metrics::gauge!("collect_publishes_in_flight"));
        let started = Instant::now();
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.into())
            .with_app_id(self.app_id.as_str().into())
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
            .with_headers(message.headers.cloned().unwrap_or_default());
        let options = BasicPublishOptions {
            // With `mandatory`, an unroutable message comes back instead of vanishing.
            mandatory: message.mandatory,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(
                message.exchange.into(),
                message.routing_key.into(),
                options,
                message.body,
                properties,
            )
            .await?;
        let confirmation = confirm.await?;
        metrics::histogram!("collect_publish_confirm_seconds", "exchange" => message.exchange.to_owned())
            .record(started.elapsed().as_secs_f64());
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                Err(PublishError::Unroutable(returned.reply_text.to_string()))
            }
            Confirmation::Nack(_) => Err(PublishError::Nacked),
            Confirmation::NotRequested => Err(PublishError::Unavailable(
                "the channel is not in confirm mode".into(),
            )),
        }
    }
}
