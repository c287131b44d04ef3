//! The validator's work: consume `N.validator`, check, store, publish `N.saved` and `N.flags`,
//! and only then ack.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use collect_shared::amqp::{
    Broker, OutgoingMessage, Publisher, Topology, consume, dead_letter, retry_until_shutdown,
};
use collect_shared::messages::{FlagEvent, ResponseMessage, StoredResponse};
use collect_shared::store::{FormCache, FormLookupError, NewResponse, SaveOutcome, Store};
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (new or a newer revision) and its events published.
    Written,
    /// A revision stored before: its events were published again.
    Duplicate,
    /// Older than what is stored: ignored.
    Stale,
    /// Not processable, ever: set aside in `N.dead` with the reason.
    DeadLettered(String),
    /// Shutdown came first: left unacked, so the broker delivers it again.
    Abandoned,
}

pub struct Worker {
    pub store: Store,
    pub forms: FormCache,
    pub publisher: Publisher,
    pub topology: Topology,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Checks, stores and publishes one message body. Retries what can succeed later
    /// (database, broker) until it does or shutdown comes.
    pub async fn process(&self, body: &[u8]) -> Outcome {
        let message: ResponseMessage = match serde_json::from_slice(body) {
            Ok(message) => message,
            Err(error) => {
                return Outcome::DeadLettered(format!("not a response message: {error}"));
            }
        };
        if i64::try_from(message.revision.0).is_err() {
            return Outcome::DeadLettered(format!(
                "revision {} is larger than 2^63 - 1",
                message.revision
            ));
        }
        let form = retry_until_shutdown("loading the form", &self.shutdown, || async {
            match self.forms.get(&message.form_id).await {
                Ok(form) => Ok(Ok(form)),
                Err(FormLookupError::Database(error)) => Err(error),
                Err(invalid) => Ok(Err(invalid.to_string())),
            }
        })
        .await;
        let form = match form {
            None => return Outcome::Abandoned,
            Some(Ok(Some(form))) => form,
            Some(Ok(None)) => {
                return Outcome::DeadLettered(format!(
                    "unknown form {:?}",
                    message.form_id.as_str()
                ));
            }
            Some(Err(reason)) => return Outcome::DeadLettered(reason),
        };

        let evaluation = form.evaluate(&message.answers);
        let saved = retry_until_shutdown("storing the response", &self.shutdown, || {
            self.store.save_response(NewResponse {
                message: &message,
                form_version: form.version,
                evaluation: &evaluation,
            })
        })
        .await;
        let (stored, event, outcome) = match saved {
            None => return Outcome::Abandoned,
            Some(SaveOutcome::Stale { stored_revision }) => {
                debug!(response_id = %message.response_id, revision = %message.revision, %stored_revision, "stale revision ignored");
                return Outcome::Stale;
            }
            Some(SaveOutcome::Written { stored, event }) => (stored, event, Outcome::Written),
            Some(SaveOutcome::Duplicate { stored, event }) => (stored, event, Outcome::Duplicate),
        };

        if !self.publish_saved(&stored).await {
            return Outcome::Abandoned;
        }
        if let Some(kind) = event {
            let flag_event = FlagEvent::new(kind, &stored, Utc::now());
            let body = serde_json::to_vec(&flag_event).unwrap_or_default();
            let routing_key = flag_event.routing_key();
            let exchange = self.topology.flags_exchange();
            let published = self
                .publish(OutgoingMessage {
                    exchange: &exchange,
                    routing_key: &routing_key,
                    message_id: stored.response_id.as_str(),
                    body: &body,
                    headers: None,
                    // Collectors' apps bind their own queues; with none bound, the event is
                    // not kept (the flags route lists what is flagged).
                    mandatory: false,
                })
                .await;
            if !published {
                return Outcome::Abandoned;
            }
        }
        outcome
    }

    async fn publish_saved(&self, stored: &StoredResponse) -> bool {
        let body = serde_json::to_vec(stored).unwrap_or_default();
        let exchange = self.topology.saved_exchange();
        self.publish(OutgoingMessage {
            exchange: &exchange,
            routing_key: stored.form_id.as_str(),
            message_id: stored.response_id.as_str(),
            body: &body,
            headers: None,
            mandatory: true,
        })
        .await
    }

    /// Publishes with confirms, retrying until confirmed; `false` when shutdown came first.
    async fn publish(&self, message: OutgoingMessage<'_>) -> bool {
        retry_until_shutdown("publishing", &self.shutdown, || {
            self.publisher.publish(message)
        })
        .await
        .is_some()
    }

    /// Processes one delivery and acks it when its work is committed.
    async fn handle(&self, delivery: Delivery) {
        let started = Instant::now();
        let mut outcome = self.process(&delivery.data).await;
        if let Outcome::DeadLettered(reason) = &outcome {
            warn!(%reason, routing_key = %delivery.routing_key, "dead-lettering a message");
            let dead_lettered = dead_letter(
                &self.publisher,
                &self.topology.dead_exchange(),
                &self.topology.validator_queue(),
                &delivery,
                reason,
                &self.shutdown,
            )
            .await;
            if !dead_lettered {
                outcome = Outcome::Abandoned;
            }
        }
        let label = match &outcome {
            Outcome::Written => "written",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::DeadLettered(_) => "dead_lettered",
            Outcome::Abandoned => "abandoned",
        };
        metrics::counter!("collect_validator_messages_total", "outcome" => label).increment(1);
        if outcome == Outcome::Abandoned {
            return;
        }
        metrics::histogram!("collect_validator_processing_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
            // The channel went away: the broker redelivers, and handling is idempotent.
            warn!(%error, "ack failed; the message will be redelivered");
        }
    }
}

/// Consumes `N.validator` until `shutdown`; in-flight deliveries finish first.
pub async fn run(worker: Arc<Worker>, broker: Broker, prefetch: u16) {
    let queue = worker.topology.validator_queue();
    let shutdown = worker.shutdown.clone();
    consume(broker, queue, prefetch, shutdown, move |delivery| {
        let worker = worker.clone();
        async move { worker.handle(delivery).await }
    })
    .await;
}
