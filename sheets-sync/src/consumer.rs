//! `N.sheets` into the outbox: each stored response is marked as waiting for its sheet, then
//! acked at once. Rows wait in PostgreSQL, never in unacked messages.

use std::sync::Arc;

use collect_shared::amqp::{
    Batching, Broker, Publisher, Settled, Topology, consume_batches, dead_letter,
    retry_until_shutdown,
};
use collect_shared::messages::{FormId, ResponseId};
use collect_shared::store::Store;
use lapin::message::Delivery;
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
    /// Queues the rows of the deliveries that arrived together in one statement, then has
    /// them acked; what is not a stored response goes to `N.dead`.
    async fn handle_batch(&self, deliveries: Vec<Delivery>) -> Vec<Settled> {
        let mut settled = vec![Settled::Ack; deliveries.len()];
        let mut saved = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match serde_json::from_slice::<Saved>(&delivery.data) {
                Ok(s) => saved.push((i, s)),
                Err(error) => settled[i] = self.dead_letter(delivery, error).await,
            }
        }
        if saved.is_empty() {
            return settled;
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
            for (i, _) in &saved {
                settled[*i] = Settled::Keep;
            }
        }
        settled
    }

    async fn dead_letter(&self, delivery: &Delivery, error: serde_json::Error) -> Settled {
        let reason = format!("not a stored response: {error}");
        warn!(%reason, "dead-lettering a message");
        let dead_lettered = dead_letter(
            &self.publisher,
            &self.topology.dead_exchange(),
            &self.topology.sheets_queue(),
            delivery,
            &reason,
            &self.shutdown,
        )
        .await;
        if dead_lettered {
            Settled::Ack
        } else {
            Settled::Keep
        }
    }
}

/// Consumes `N.sheets` until `shutdown`, up to `batching.batch` deliveries per statement.
pub async fn run(consumer: Arc<Consumer>, broker: Broker, batching: Batching) {
    let queue = consumer.topology.sheets_queue();
    let shutdown = consumer.shutdown.clone();
    consume_batches(broker, queue, batching, shutdown, move |deliveries| {
        let consumer = consumer.clone();
        async move { consumer.handle_batch(deliveries).await }
    })
    .await;
}
