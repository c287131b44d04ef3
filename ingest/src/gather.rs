//! Responses that arrive together are published together: one AMQP message per form for
//! whatever requests came in while the previous publishes were awaiting their confirms (group
//! commit, as a database gathers concurrent commits into one log write, or a Kafka producer
//! lingers). The broker's cost is per message, not per response: a quorum queue appends each
//! message and each ack to its log, so gathering divides that by the batch. A request that
//! finds a slot free waits there `COLLECT_PUBLISH_LINGER_US` for others to join it (Kafka's
//! `linger.ms`), and the message goes once that time is up or it is full; while
//! `COLLECT_PUBLISH_GATHER_SLOTS` publishes are in flight, requests gather meanwhile, so batches
//! grow with the load. Each request is still answered only once the broker confirmed the
//! message that carries it.
//!
//! A message of one response is the response message itself (a JSON object), as the spec has
//! it; a message of several is a JSON array of them (the validator takes both), its
//! `message_id` the first response's id.

use std::sync::Arc;

use collect_shared::amqp::gather::{group_by_key, json_array_body};
use collect_shared::amqp::{OutgoingMessage, PublishError, Publisher};
use collect_shared::telemetry::InFlight;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How responses are gathered into messages.
#[derive(Debug, Clone, Copy)]
pub struct GatherSettings {
    /// Most responses in one message (1: every response is a message of its own).
    pub max_responses: usize,
    /// Most bytes of responses in one message (one larger response still goes, alone).
    pub max_bytes: usize,
    /// Gathered publishes awaiting their confirm at once; requests arriving meanwhile wait and
    /// go together in the next.
    pub slots: usize,
    /// How long a free slot waits for more requests after the first before it publishes
    /// (zero: at once). Kafka's `linger.ms`: below capacity, fewer and fuller messages.
    pub linger: std::time::Duration,
}

/// One response to publish, and where to say how it went.
struct Pending {
    routing_key: String,
    message_id: String,
    body: Vec<u8>,
    done: oneshot::Sender<Result<(), Arc<PublishError>>>,
}

/// Publishes responses to `N.responses`, gathering those that arrive together. Cheap to clone.
#[derive(Clone)]
pub struct Gatherer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Gatherer {
    /// Starts the task that gathers and publishes; it ends when every `Gatherer` is dropped.
    pub fn start(publisher: Publisher, exchange: Arc<str>, settings: GatherSettings) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(pending, publisher, exchange, settings));
        Self { queue }
    }

    /// Publishes one response (routing key: its form) and waits until the broker confirmed
    /// the message carrying it.
    pub async fn publish(
        &self,
        routing_key: &str,
        message_id: &str,
        body: Vec<u8>,
    ) -> Result<(), Arc<PublishError>> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending {
            routing_key: routing_key.to_owned(),
            message_id: message_id.to_owned(),
            body,
            done,
        };
        let closed = || {
            Arc::new(PublishError::Unavailable(
                "the publisher has stopped".into(),
            ))
        };
        let _in_flight = InFlight::start(metrics::gauge!("collect_ingest_responses_in_flight"));
        self.queue.send(pending).map_err(|_| closed())?;
        outcome.await.unwrap_or_else(|_| Err(closed()))
    }
}

async fn run(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    publisher: Publisher,
    exchange: Arc<str>,
    settings: GatherSettings,
) {
    let slots = Arc::new(Semaphore::new(settings.slots.max(1)));
    let max_responses = settings.max_responses.max(1);
    let mut taken = Vec::new();
    loop {
        // A slot first: while every slot is taken, requests gather in the channel.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if pending.recv_many(&mut taken, 64 * max_responses).await == 0 {
            return;
        }
        // The linger: more may join until the deadline (tokio's timer counts in milliseconds, so
        // it ends at the first tick after it) or until the message is full.
        if !settings.linger.is_zero() {
            let deadline = tokio::time::Instant::now() + settings.linger;
            let full = |taken: &[Pending]| {
                taken.len() >= max_responses
                    || taken.iter().map(|p| p.body.len()).sum::<usize>() >= settings.max_bytes
            };
            while !full(&taken) {
                let more = pending.recv_many(&mut taken, 64 * max_responses);
                match tokio::time::timeout_at(deadline, more).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let messages = gather(
            std::mem::take(&mut taken),
            max_responses,
            settings.max_bytes,
        );
        let sizes = metrics::histogram!("collect_ingest_gathered_responses");
        for message in &messages {
            sizes.record(message.len() as f64);
        }
        let publisher = publisher.clone();
        let exchange = exchange.clone();
        tokio::spawn(async move {
            let sent = messages
                .into_iter()
                .map(|message| publish(&publisher, &exchange, message));
            futures::future::join_all(sent).await;
            drop(slot);
        });
    }
}

/// About the most bytes of responses one message carries (a larger response goes alone). A
/// consumer holds its prefetch in messages, whatever their size: the validator's
/// `VALIDATOR_PREFETCH` (60) messages of up to 1 MB each were 60 MB in hand when responses
/// were large (hundreds of KB each), and 15 MB at this size. Responses of the seed's size
/// (~700 bytes) fill a message's `COLLECT_PUBLISH_GATHER_MAX` (100) long before this.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Splits what was taken into messages: by form (the routing key), in arrival order, at most
/// `max_responses` and about `max_bytes` each.
fn gather(taken: Vec<Pending>, max_responses: usize, max_bytes: usize) -> Vec<Vec<Pending>> {
    let groups = group_by_key(
        taken.iter().map(|p| (p.routing_key.as_str(), p.body.len())),
        max_responses,
        max_bytes,
    );
    let mut taken: Vec<Option<Pending>> = taken.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|group| group.into_iter().filter_map(|i| taken[i].take()).collect())
        .collect()
}

/// The body of a message of these responses: the one response, or an array of them.
fn body(message: &[Pending]) -> Vec<u8> {
    let parts: Vec<&[u8]> = message.iter().map(|p| p.body.as_slice()).collect();
    json_array_body(&parts)
}

async fn publish(publisher: &Publisher, exchange: &str, message: Vec<Pending>) {
    let Some(first) = message.first() else {
        return;
    };
    let body = body(&message);
    let outcome = publisher
        .publish(OutgoingMessage {
            exchange,
            routing_key: &first.routing_key,
            message_id: &first.message_id,
            body: &body,
            headers: None,
            mandatory: true,
        })
        .await
        .map_err(Arc::new);
    for pending in message {
        // The request may have gone (its client hung up): nobody to tell.
        let _ = pending.done.send(outcome.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(form: &str, id: &str, bytes: usize) -> Pending {
        Pending {
            routing_key: form.to_owned(),
            message_id: id.to_owned(),
            body: vec![b'x'; bytes],
            done: oneshot::channel().0,
        }
    }

    /// The message ids of each message `gather` makes of `(form, id, bytes)` responses.
    fn gathered(
        taken: &[(&str, &str, usize)],
        max_responses: usize,
        max_bytes: usize,
    ) -> Vec<Vec<String>> {
        let taken = taken
            .iter()
            .map(|&(form, id, bytes)| pending(form, id, bytes))
            .collect();
        gather(taken, max_responses, max_bytes)
            .iter()
            .map(|m| m.iter().map(|p| p.message_id.clone()).collect())
            .collect()
    }

    #[test]
    fn messages_are_per_form_in_order_and_bounded() {
        let taken = [
            ("a", "1", 10),
            ("b", "2", 10),
            ("a", "3", 10),
            ("a", "4", 10),
            ("b", "5", 10),
        ];
        assert_eq!(
            gathered(&taken, 2, 1000),
            [vec!["1", "3"], vec!["2", "5"], vec!["4"]]
        );
        // Within the bytes, but a larger response still goes, alone.
        let taken = [
            ("a", "1", 40),
            ("a", "2", 40),
            ("a", "3", 500),
            ("a", "4", 10),
        ];
        assert_eq!(
            gathered(&taken, 100, 100),
            [vec!["1", "2"], vec!["3"], vec!["4"]]
        );
    }

    #[test]
    fn one_response_is_sent_as_itself_and_several_as_an_array() {
        let one = vec![Pending {
            body: br#"{"a":1}"#.to_vec(),
            ..pending("a", "1", 0)
        }];
        assert_eq!(body(&one), br#"{"a":1}"#);
        let two = vec![
            Pending {
                body: br#"{"a":1}"#.to_vec(),
                ..pending("a", "1", 0)
            },
            Pending {
                body: br#"{"a":2}"#.to_vec(),
                ..pending("a", "2", 0)
            },
        ];
        assert_eq!(body(&two), br#"[{"a":1},{"a":2}]"#);
    }
}
