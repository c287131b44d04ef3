//! `N.sheets` into the outbox: each stored response is marked as waiting for its sheet, then
//! acked at once. Rows wait in PostgreSQL, never in unacked messages.

use std::sync::Arc;

use collect_shared::amqp::{
    Broker, Publisher, Topology, consume, dead_letter, retry_until_shutdown,
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
    async fn handle(&self, delivery: Delivery) {
        let saved: Saved = match serde_json::from_slice(&delivery.data) {
            Ok(saved) => saved,
            Err(error) => {
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
                return;
            }
        };
        let enqueued = retry_until_shutdown("queueing a row for its sheet", &self.shutdown, || {
            self.store
                .enqueue_for_sheet(&saved.response_id, &saved.form_id)
        })
        .await;
        if enqueued.is_some()
            && let Err(error) = delivery.ack(BasicAckOptions::default()).await
        {
            warn!(%error, "ack failed; the message will be redelivered");
        }
    }
}

pub async fn run(consumer: Arc<Consumer>, broker: Broker, prefetch: u16) {
    let queue = consumer.topology.sheets_queue();
    let shutdown = consumer.shutdown.clone();
    consume(broker, queue, prefetch, shutdown, move |delivery| {
        let consumer = consumer.clone();
        async move { consumer.handle(delivery).await }
    })
    .await;
}
