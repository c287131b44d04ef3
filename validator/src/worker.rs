//! The validator's work: consume `N.validator`, check, store, publish `N.saved` and `N.flags`,
//! and only then ack.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use collect_shared::amqp::gather::{group_by_key, json_array_body};
use collect_shared::amqp::{
    Batching, Broker, OutgoingMessage, Publisher, Settled, Topology, consume_batches,
    dead_letter_part,
};
use collect_shared::messages::{FlagEvent, FlagEventKind, ResponseMessage, StoredResponse};
use collect_shared::retry::{Retried, retry_transient, retry_until_shutdown};
use collect_shared::rules::{CompiledForm, Evaluation};
use collect_shared::store::{
    FormCache, FormLookupError, NewResponse, SaveOutcome, Store, StoreError,
};
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
    pub forms: FormCache<CompiledForm>,
    pub publisher: Publisher,
    pub topology: Topology,
    pub shutdown: CancellationToken,
    /// Most stored rows in one `N.saved` message (`VALIDATOR_SAVED_GATHER_MAX`).
    pub saved_gather_max: usize,
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
    /// (see [`StoreError::is_permanent`]) is returned at once. Each response id
    /// must appear once.
    async fn store(&self, checked: &[&Checked]) -> Retried<Vec<SaveOutcome>, StoreError> {
        let batch: Vec<NewResponse<'_>> = checked
            .iter()
            .map(|c| NewResponse {
                message: &c.message,
                form_version: c.form_version,
                flags: &c.evaluation.flags,
            })
            .collect();
        retry_transient("storing responses", &self.shutdown, || {
            self.store.save_responses(&batch)
        })
        .await
    }

    /// Publishes what stored revisions cause, and says what became of each: their rows to
    /// `N.saved` (the rows of a form together, at most `saved_gather_max` a message; confirms
    /// pipelined), then, once the message carrying its row is confirmed, each flag event to
    /// `N.flags`. `Abandoned` where shutdown came first.
    async fn publish_events(&self, saved: Vec<SaveOutcome>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(saved.len());
        // The stored rows to publish: which outcome each is, and its flag event.
        let mut rows: Vec<(usize, StoredResponse, Option<FlagEventKind>)> = Vec::new();
        for outcome in saved {
            let (stored, event, outcome) = match outcome {
                SaveOutcome::Stale { stored_revision } => {
                    debug!(%stored_revision, "stale revision ignored");
                    outcomes.push(Outcome::Stale);
                    continue;
                }
                SaveOutcome::Written { stored, event } => (stored, event, Outcome::Written),
                SaveOutcome::Duplicate { stored, event } => (stored, event, Outcome::Duplicate),
            };
            rows.push((outcomes.len(), stored, event));
            outcomes.push(outcome);
        }
        // A row that cannot be serialised (it cannot happen: strings, numbers and JSON values)
        // is set aside in `N.dead` with the reason, never published as an empty body.
        let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
        rows.retain(|(at, stored, _)| match serde_json::to_vec(stored) {
            Ok(body) => {
                bodies.push(body);
                true
            }
            Err(error) => {
                outcomes[*at] =
                    Outcome::DeadLettered(format!("cannot serialise the stored row: {error}"));
                false
            }
        });
        let messages = group_by_key(
            rows.iter()
                .zip(&bodies)
                .map(|((_, stored, _), body)| (stored.form_id.as_str(), body.len())),
            self.saved_gather_max,
            SAVED_MAX_BYTES,
        );
        let confirmed = futures::future::join_all(messages.iter().map(|message| {
            let first = &rows[message[0]].1;
            let parts: Vec<&[u8]> = message.iter().map(|&r| bodies[r].as_slice()).collect();
            self.publish_saved(first, json_array_body(&parts))
        }))
        .await;
        let rows = &rows;
        let flagged = futures::future::join_all(
            messages
                .iter()
                .zip(confirmed)
                .flat_map(|(message, confirmed)| message.iter().map(move |&r| (r, confirmed)))
                .map(|(r, confirmed)| async move {
                    let (_, stored, event) = &rows[r];
                    let published = match event {
                        _ if !confirmed => false,
                        None => true,
                        Some(kind) => self.publish_flag_event(*kind, stored).await,
                    };
                    (r, published)
                }),
        )
        .await;
        for (r, published) in flagged {
            if !published {
                outcomes[rows[r].0] = Outcome::Abandoned;
            }
        }
        outcomes
    }

    async fn publish_flag_event(&self, kind: FlagEventKind, stored: &StoredResponse) -> bool {
        let flag_event = FlagEvent::new(kind, stored, Utc::now());
        let body = match serde_json::to_vec(&flag_event) {
            Ok(body) => body,
            // Cannot happen (strings and JSON values); never an empty body if it did.
            Err(error) => {
                tracing::error!(%error, "cannot serialise a flag event; the delivery waits");
                return false;
            }
        };
        let routing_key = flag_event.routing_key();
        let exchange = self.topology.flags_exchange();
        self.publish(OutgoingMessage {
            exchange: &exchange,
            routing_key: &routing_key,
            message_id: stored.response_id.as_str(),
            body: &body,
            headers: None,
            // `N.webhooks` is always bound, so an unroutable event means the topology is
            // broken: better a publish that fails (and is retried) than a lost event.
            mandatory: true,
        })
        .await
    }

    /// Publishes stored rows of one form to `N.saved` (`body`: the one row, or an array of
    /// them; `message_id` the first one's id).
    async fn publish_saved(&self, first: &StoredResponse, body: Vec<u8>) -> bool {
        let exchange = self.topology.saved_exchange();
        self.publish(OutgoingMessage {
            exchange: &exchange,
            routing_key: first.form_id.as_str(),
            message_id: first.response_id.as_str(),
            body: &body,
            headers: None,
            // For whoever subscribes: the sheet's outbox is written with the response, so an
            // event nobody is bound for is simply dropped.
            mandatory: false,
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

    /// Processes the deliveries that arrived together: checks each response they carry (a
    /// message is one response, or an array of them as ingest gathers them), stores them in
    /// one transaction per `MAX_PER_TRANSACTION`, in order (a response (form and id) seen twice
    /// goes in a later round, so revisions apply in order), publishes their events (confirms pipelined), and acks each
    /// delivery when the work of all its responses is committed. What cannot be processed,
    /// ever, goes to `N.dead`, alone.
    pub async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let started = Instant::now();
        // Each response: its delivery and its bytes; or the delivery's outcome at once.
        let mut parts: Vec<(usize, &[u8])> = Vec::with_capacity(deliveries.len());
        let mut refused: Vec<Option<String>> = vec![None; deliveries.len()];
        for (i, delivery) in deliveries.iter().enumerate() {
            match split(&delivery.data) {
                Ok(split) => parts.extend(split.into_iter().map(|part| (i, part))),
                Err(reason) => refused[i] = Some(reason),
            }
        }
        // A chunk at a time, in order: what is parsed and stored at once stays bounded however
        // many responses the deliveries carry.
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(parts.len());
        for chunk in transactions(&parts) {
            outcomes.extend(self.handle_parts(chunk).await);
        }
        let mut of_delivery: Vec<Vec<(&[u8], Outcome)>> = vec![Vec::new(); deliveries.len()];
        for ((i, body), outcome) in parts.iter().zip(outcomes) {
            of_delivery[*i].push((body, outcome.unwrap_or(Outcome::Abandoned)));
        }
        for (i, reason) in refused.into_iter().enumerate() {
            if let Some(reason) = reason {
                of_delivery[i].push((&deliveries[i].data, Outcome::DeadLettered(reason)));
            }
        }
        let finished = deliveries
            .iter()
            .zip(of_delivery)
            .map(|(delivery, parts)| self.finish(delivery, parts));
        let settled = futures::future::join_all(finished).await;
        metrics::histogram!("collect_validator_batch_size").record(parts.len() as f64);
        metrics::histogram!("collect_validator_processing_seconds")
            .record(started.elapsed().as_secs_f64());
        settled
    }

    /// Checks, stores (one transaction; a response seen twice in a later round) and publishes
    /// the events of these responses; the outcome of each, `None` when shutdown came first.
    async fn handle_parts(&self, parts: &[(usize, &[u8])]) -> Vec<Option<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; parts.len()];
        let mut checked: Vec<Option<Checked>> = Vec::with_capacity(parts.len());
        for (p, &(_, body)) in parts.iter().enumerate() {
            match self.check(body).await {
                Ok(c) => checked.push(Some(c)),
                Err(outcome) => {
                    outcomes[p] = Some(outcome);
                    checked.push(None);
                }
            }
        }
        let mut waiting: Vec<usize> = (0..parts.len()).filter(|&p| checked[p].is_some()).collect();
        while !waiting.is_empty() {
            let mut ids = std::collections::HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = waiting.iter().partition(|&&p| {
                checked[p].as_ref().is_some_and(|c| {
                    ids.insert((c.message.form_id.as_str(), c.message.response_id.as_str()))
                })
            });
            waiting = later;
            // One transaction for the round; if the database refuses it for its data, each
            // response on its own, so that only the one at fault is set aside.
            let mut groups = vec![round];
            while let Some(group) = groups.pop() {
                let batch: Vec<&Checked> =
                    group.iter().filter_map(|&p| checked[p].as_ref()).collect();
                match self.store(&batch).await {
                    Retried::Done(saved) => {
                        let published = self.publish_events(saved).await;
                        for (&p, outcome) in group.iter().zip(published) {
                            outcomes[p] = Some(outcome);
                        }
                    }
                    Retried::Permanent(error) if group.len() == 1 => {
                        outcomes[group[0]] = Some(Outcome::DeadLettered(error.to_string()));
                    }
                    Retried::Permanent(error) => {
                        warn!(
                            error = %error,
                            responses = group.len(),
                            "the database refused a batch for its data; storing its responses one by one"
                        );
                        groups.extend(group.iter().rev().map(|&p| vec![p]));
                    }
                    Retried::Shutdown => {
                        // Unset outcomes are abandoned: redelivered after the restart.
                        waiting.clear();
                        groups.clear();
                    }
                }
            }
        }
        outcomes
    }

    /// Dead-letters what must be and counts the responses of one delivery; whether to ack it
    /// (not while any of its responses is abandoned: it comes back whole, and what was
    /// stored of it is then a duplicate).
    async fn finish(&self, delivery: &Delivery, parts: Vec<(&[u8], Outcome)>) -> Settled {
        let mut keep = false;
        for (body, mut outcome) in parts {
            if let Outcome::DeadLettered(reason) = &outcome {
                warn!(%reason, routing_key = %delivery.routing_key, "dead-lettering a message");
                let dead_lettered = dead_letter_part(
                    &self.publisher,
                    &self.topology.dead_exchange(),
                    &self.topology.validator_queue(),
                    delivery,
                    body,
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
            keep |= outcome == Outcome::Abandoned;
        }
        if keep { Settled::Keep } else { Settled::Ack }
    }
}

/// Responses parsed and stored at once at most, in one transaction (a batch of deliveries
/// that each carry many responses is handled in several, one after the other).
const MAX_PER_TRANSACTION: usize = 500;

/// About the most bytes of responses parsed and stored at once: a response is held several
/// times over while it is stored (its message, the parsed answers, the row's JSON, the
/// statement's parameters), and 500 responses of 160 KB made the validator's peak RSS 370 MB.
/// 500 responses of the seed's size are ~350 KB, within this.
const MAX_BYTES_PER_TRANSACTION: usize = 1024 * 1024;

/// `parts` cut into the runs stored one transaction each, in order: at most
/// `MAX_PER_TRANSACTION` responses and about `MAX_BYTES_PER_TRANSACTION` (a larger response
/// goes alone).
fn transactions<'p, 'b>(
    parts: &'p [(usize, &'b [u8])],
) -> impl Iterator<Item = &'p [(usize, &'b [u8])]> {
    let mut rest = parts;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let end = rest
            .iter()
            .take(MAX_PER_TRANSACTION)
            .position(|(_, body)| {
                bytes += body.len();
                bytes > MAX_BYTES_PER_TRANSACTION
            })
            .map_or(rest.len().min(MAX_PER_TRANSACTION), |over| over.max(1));
        let (run, after) = rest.split_at(end);
        rest = after;
        Some(run)
    })
}

/// Most bytes of stored rows in one `N.saved` message, as ingest gathers (a larger row still
/// goes, alone).
const SAVED_MAX_BYTES: usize = 1024 * 1024;

/// The responses a message body carries: the body itself (a JSON object, or anything else:
/// [`Worker::check`] says what is wrong with it), or each element of a JSON array. An array
/// that is not JSON, or is empty, is refused whole.
fn split(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    if body.trim_ascii_start().first() != Some(&b'[') {
        return Ok(vec![body]);
    }
    let parts: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
        .map_err(|error| format!("not a response message or an array of them: {error}"))?;
    if parts.is_empty() {
        return Err("an empty array carries no response".into());
    }
    Ok(parts
        .into_iter()
        .map(|part| part.get().as_bytes())
        .collect())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{MAX_BYTES_PER_TRANSACTION, MAX_PER_TRANSACTION, split, transactions};

    #[test]
    fn a_body_is_one_response_or_an_array_of_them() {
        assert_eq!(split(br#"{"a":1}"#).unwrap(), [br#"{"a":1}"#.as_slice()]);
        assert_eq!(split(b"not json").unwrap(), [b"not json".as_slice()]);
        assert_eq!(
            split(br#" [{"a":1}, {"b":[2]} ,"x"]"#).unwrap(),
            [br#"{"a":1}"#.as_slice(), br#"{"b":[2]}"#, br#""x""#]
        );
        assert!(split(b"[]").unwrap_err().contains("empty"));
        assert!(split(br#"[{"a":1},"#).unwrap_err().contains("array"));
    }

    /// The sizes of the runs `transactions` makes of parts of these sizes.
    fn runs(sizes: &[usize]) -> Vec<usize> {
        let bodies: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![b'x'; n]).collect();
        let parts: Vec<(usize, &[u8])> = bodies.iter().map(|b| (0, b.as_slice())).collect();
        transactions(&parts).map(<[_]>::len).collect()
    }

    #[test]
    fn a_transaction_is_bounded_by_responses_and_by_bytes() {
        assert_eq!(runs(&[]), Vec::<usize>::new());
        // Small responses: 500 a transaction.
        assert_eq!(runs(&[700; 1234]), [MAX_PER_TRANSACTION, 500, 234]);
        // Large ones: as many as fit in the bytes (1 MiB / 160 KB = 6).
        assert_eq!(runs(&[160_000; 14]), [6, 6, 2]);
        // One over the bytes goes alone, and what follows goes on.
        let over = MAX_BYTES_PER_TRANSACTION + 1;
        assert_eq!(runs(&[10, over, 10, 10]), [1, 1, 2]);
        assert_eq!(runs(&[over, over]), [1, 1]);
        // Exactly the bytes still fit together.
        let half = MAX_BYTES_PER_TRANSACTION / 2;
        assert_eq!(runs(&[half, half, 1]), [2, 1]);
    }
}
