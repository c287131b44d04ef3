//! `N.sheets` into the outbox: each stored response is marked as waiting for its sheet, then
//! acked at once. Rows wait in PostgreSQL, never in unacked messages.

use std::sync::Arc;

use collect_shared::amqp::{
    Broker, Publisher, Topology, consume_batches, dead_letter, retry_until_shutdown,
};
use collect_shared::messages::{FormId, ResponseId};
use collect_shared::store::Store;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What sheets-sync needs of an `N.saved` message: the rest is read from the database.
#[derive(Deserialize)]
struct Saved {
    response_id: ResponseId,
    form_id: FormId,
}

pub struct Consumer {
    pub store: Store,
    pub publisher: Publisher,
    pub topology: Topology,
    pub shutdown: CancellationToken,
}

impl Consumer {
    /// Queues the rows of the deliveries that arrived together in one statement, then acks
    /// them; what is not a stored response goes to `N.dead`.
    async fn handle_batch(&self, deliveries: Vec<Delivery>) {
        let mut saved = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match serde_json::from_slice::<Saved>(&delivery.data) {
                Ok(s) => saved.push((delivery, s)),
                Err(error) => self.dead_letter(delivery, error).await,
            }
        }
        if saved.is_empty() {
            return;
        }
        let rows: Vec<(&ResponseId, &FormId)> = saved
            .iter()
            .map(|(_, s)| (&s.response_id, &s.form_id))
            .collect();
        let enqueued =
            retry_until_shutdown("queueing rows for their sheet", &self.shutdown, || {
                self.store.enqueue_many_for_sheet(&rows)
            })
            .await;
        if enqueued.is_none() {
            return;
        }
        for (delivery, _) in &saved {
            if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                warn!(%error, "ack failed; the message will be redelivered");
            }
        }
    }

    async fn dead_letter(&self, delivery: Delivery, error: serde_json::Error) {
        let reason = format!("not a stored response: {error}");
        warn!(%reason, "dead-lettering a message");
        let dead_lettered = dead_letter(
            &self.publisher,
            &self.topology.dead_exchange(),
            &self.topology.sheets_queue(),
            &delivery,
            &reason,
            &self.shutdown,
        )
        .await;
        if dead_lettered {
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
    }
}

/// Consumes `N.sheets` until `shutdown`, up to `batch` deliveries per statement.
pub async fn run(consumer: Arc<Consumer>, broker: Broker, prefetch: u16, batch: usize) {
    let queue = consumer.topology.sheets_queue();
    let shutdown = consumer.shutdown.clone();
    consume_batches(
        broker,
        queue,
        prefetch,
        batch,
        shutdown,
        move |deliveries| {
            let consumer = consumer.clone();
            async move { consumer.handle_batch(deliveries).await }
        },
    )
    .await;
}
