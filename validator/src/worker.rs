//! The validator's work: consume `N.validator`, check, store, publish `N.saved` and `N.flags`,
//! and only then ack.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use collect_shared::amqp::{
    Batching, Broker, OutgoingMessage, Publisher, Retried, Settled, Topology, consume_batches,
    dead_letter, retry_transient, retry_until_shutdown,
};
use collect_shared::messages::{FlagEvent, ResponseMessage, StoredResponse};
use collect_shared::rules::Evaluation;
use collect_shared::store::{FormCache, FormLookupError, NewResponse, SaveOutcome, Store};
use lapin::message::Delivery;
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

/// A message checked against its form, ready to store.
pub struct Checked {
    message: ResponseMessage,
    form_version: i32,
    evaluation: Evaluation,
}

impl Worker {
    /// Parses a message body and checks it against its form. Retries the form lookup while the
    /// database is away, until shutdown (`Abandoned`).
    pub async fn check(&self, body: &[u8]) -> Result<Checked, Outcome> {
        let message: ResponseMessage = match serde_json::from_slice(body) {
            Ok(message) => message,
            Err(error) => {
                return Err(Outcome::DeadLettered(format!(
                    "not a response message: {error}"
                )));
            }
        };
        if i64::try_from(message.revision.0).is_err() {
            return Err(Outcome::DeadLettered(format!(
                "revision {} is larger than 2^63 - 1",
                message.revision
            )));
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
            None => return Err(Outcome::Abandoned),
            Some(Ok(Some(form))) => form,
            Some(Ok(None)) => {
                return Err(Outcome::DeadLettered(format!(
                    "unknown form {:?}",
                    message.form_id.as_str()
                )));
            }
            Some(Err(reason)) => return Err(Outcome::DeadLettered(reason)),
        };
        let evaluation = form
            .evaluate_budgeted(&message.answers, collect_shared::rules::EVALUATION_BUDGET)
            .await;
        Ok(Checked {
            message,
            form_version: form.version,
            evaluation,
        })
    }

    /// Stores checked messages in one transaction, retried while the failure may pass (a lost
    /// connection, a timeout) until shutdown; a failure that would come again for this data
    /// (see [`collect_shared::store::is_permanent`]) is returned at once. Each response id
    /// must appear once.
    async fn store(&self, checked: &[&Checked]) -> Retried<Vec<SaveOutcome>, sqlx::Error> {
        let batch: Vec<NewResponse<'_>> = checked
            .iter()
            .map(|c| NewResponse {
                message: &c.message,
                form_version: c.form_version,
                evaluation: &c.evaluation,
            })
            .collect();
        retry_transient(
            "storing responses",
            &self.shutdown,
            collect_shared::store::is_permanent,
            || self.store.save_responses(&batch),
        )
        .await
    }

    /// Publishes what a stored revision causes: `N.saved`, and a flag event if any.
    async fn publish_events(&self, saved: SaveOutcome) -> Outcome {
        let (stored, event, outcome) = match saved {
            SaveOutcome::Stale { stored_revision } => {
                debug!(%stored_revision, "stale revision ignored");
                return Outcome::Stale;
            }
            SaveOutcome::Written { stored, event } => (stored, event, Outcome::Written),
            SaveOutcome::Duplicate { stored, event } => (stored, event, Outcome::Duplicate),
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
                    // `N.webhooks` is always bound, so an unroutable event means the topology
                    // is broken: better a publish that fails (and is retried) than a lost event.
                    mandatory: true,
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

    /// Processes the deliveries that arrived together: checks each, stores them in one
    /// transaction (a response (form and id) seen twice goes in a later round, so revisions apply in
    /// order), publishes their events (confirms pipelined), and acks each when its work is
    /// committed. What cannot be processed, ever, goes to `N.dead`.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let started = Instant::now();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
        let mut checked: Vec<Option<Checked>> = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self.check(&delivery.data).await {
                Ok(c) => checked.push(Some(c)),
                Err(outcome) => {
                    outcomes[i] = Some(outcome);
                    checked.push(None);
                }
            }
        }
        let mut waiting: Vec<usize> = (0..deliveries.len())
            .filter(|&i| checked[i].is_some())
            .collect();
        while !waiting.is_empty() {
            let mut ids = std::collections::HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = waiting.iter().partition(|&&i| {
                checked[i].as_ref().is_some_and(|c| {
                    ids.insert((c.message.form_id.as_str(), c.message.response_id.as_str()))
                })
            });
            waiting = later;
            // One transaction for the round; if the database refuses it for its data, each
            // response on its own, so that only the one at fault is set aside.
            let mut groups = vec![round];
            while let Some(group) = groups.pop() {
                let batch: Vec<&Checked> =
                    group.iter().filter_map(|&i| checked[i].as_ref()).collect();
                match self.store(&batch).await {
                    Retried::Done(saved) => {
                        let published = futures::future::join_all(
                            saved.into_iter().map(|s| self.publish_events(s)),
                        )
                        .await;
                        for (&i, outcome) in group.iter().zip(published) {
                            outcomes[i] = Some(outcome);
                        }
                    }
                    Retried::Permanent(error) if group.len() == 1 => {
                        outcomes[group[0]] = Some(Outcome::DeadLettered(
                            collect_shared::store::describe(&error),
                        ));
                    }
                    Retried::Permanent(error) => {
                        warn!(
                            error = %collect_shared::store::describe(&error),
                            responses = group.len(),
                            "the database refused a batch for its data; storing its responses one by one"
                        );
                        groups.extend(group.iter().rev().map(|&i| vec![i]));
                    }
                    Retried::Shutdown => {
                        // Unset outcomes are abandoned: redelivered after the restart.
                        waiting.clear();
                        groups.clear();
                    }
                }
            }
        }
        let finished = deliveries.iter().zip(outcomes).map(|(delivery, outcome)| {
            self.finish(delivery, outcome.unwrap_or(Outcome::Abandoned))
        });
        let settled = futures::future::join_all(finished).await;
        metrics::histogram!("collect_validator_batch_size").record(deliveries.len() as f64);
        metrics::histogram!("collect_validator_processing_seconds")
            .record(started.elapsed().as_secs_f64());
        settled
    }

    /// Dead-letters and counts one delivery; whether to ack it.
    async fn finish(&self, delivery: &Delivery, mut outcome: Outcome) -> Settled {
        if let Outcome::DeadLettered(reason) = &outcome {
            warn!(%reason, routing_key = %delivery.routing_key, "dead-lettering a message");
            let dead_lettered = dead_letter(
                &self.publisher,
                &self.topology.dead_exchange(),
                &self.topology.validator_queue(),
                delivery,
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
            Settled::Keep
        } else {
            Settled::Ack
        }
    }
}

/// Consumes `N.validator` until `shutdown`, `batching.batch` deliveries at most per
/// transaction; in-flight deliveries finish first.
pub async fn run(worker: Arc<Worker>, broker: Broker, batching: Batching) {
    let queue = worker.topology.validator_queue();
    let shutdown = worker.shutdown.clone();
    consume_batches(broker, queue, batching, shutdown, move |deliveries| {
        let worker = worker.clone();
        async move { worker.handle_batch(deliveries).await }
    })
    .await;
}
