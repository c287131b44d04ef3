//! `N.sheets`, retired. Up to stop 20 every stored response was published to `N.saved` and
//! reached sheets-sync through the quorum queue `N.sheets`, which sheets-sync moved into its
//! outbox. Now the validator queues each written revision in the outbox in the transaction
//! that stores it, and nothing declares `N.sheets`. A broker upgraded in place may still hold
//! it, bound to `N.saved`, with messages in it; left alone it would take every `N.saved`
//! event and grow forever. So the validator, at start and every minute, looks for it: when it
//! exists it is unbound from `N.saved`, its messages are queued for their sheets (as the old
//! sheets-sync did: queuing twice is harmless) and acked, and it is deleted once empty.

use std::time::Duration;

use collect_shared::amqp::{Broker, Publisher, Topology, dead_letter};
use collect_shared::messages::{FormId, ResponseId};
use collect_shared::retry::retry_until_shutdown;
use collect_shared::store::Store;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the validator looks for the retired queue.
const EVERY: Duration = Duration::from_secs(60);

/// Messages queued for their sheets in one statement.
const BATCH: usize = 200;

/// What the outbox needs of a message of `N.sheets` (a stored response).
#[derive(Deserialize)]
struct Saved {
    response_id: ResponseId,
    form_id: FormId,
}

pub struct Retired {
    pub broker: Broker,
    pub store: Store,
    pub publisher: Publisher,
    pub topology: Topology,
    pub shutdown: CancellationToken,
}

impl Retired {
    /// Looks for `N.sheets` now and every minute until shutdown.
    pub async fn run(self) {
        loop {
            match self.drain_once().await {
                Ok(None) => {}
                Ok(Some(moved)) => info!(
                    queue = %self.topology.sheets_queue(),
                    moved, "the retired queue was drained into the sheet outbox (and deleted, unless an older sheets-sync still consumes it)"
                ),
                Err(error) => warn!(
                    queue = %self.topology.sheets_queue(),
                    %error, "cannot drain the retired queue yet; trying again in a minute"
                ),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// Drains and deletes `N.sheets` if it exists: how many messages were queued for their
    /// sheets, `None` when there is no such queue (or shutdown came first).
    pub async fn drain_once(&self) -> Result<Option<u64>, lapin::Error> {
        let Some(connection) = (tokio::select! {
            _ = self.shutdown.cancelled() => None,
            connection = self.broker.connection() => connection,
        }) else {
            return Ok(None);
        };
        let queue = self.topology.sheets_queue();
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        // A queue that does not exist closes the channel with NOT_FOUND: nothing to do.
        if channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .is_err()
        {
            return Ok(None);
        }
        channel
            .queue_unbind(
                queue.as_str().into(),
                self.topology.saved_exchange().into(),
                "#".into(),
                FieldTable::default(),
            )
            .await?;
        let mut moved = 0;
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match channel
                    .basic_get(queue.as_str().into(), BasicGetOptions::default())
                    .await?
                {
                    Some(message) => batch.push(message.delivery),
                    None => break,
                }
            }
            let Some(last) = batch.last() else { break };
            let mut rows = Vec::with_capacity(batch.len());
            for delivery in &batch {
                match serde_json::from_slice::<Saved>(&delivery.data) {
                    Ok(saved) => rows.push(saved),
                    Err(error) => {
                        let reason = format!("not a stored response: {error}");
                        warn!(%reason, "dead-lettering a message of the retired queue");
                        let dead_exchange = self.topology.dead_exchange();
                        if !dead_letter(
                            &self.publisher,
                            &dead_exchange,
                            &queue,
                            delivery,
                            &reason,
                            &self.shutdown,
                        )
                        .await
                        {
                            return Ok(Some(moved));
                        }
                    }
                }
            }
            let keys: Vec<(&ResponseId, &FormId)> = rows
                .iter()
                .map(|saved| (&saved.response_id, &saved.form_id))
                .collect();
            let queued =
                retry_until_shutdown("queueing rows for their sheet", &self.shutdown, || {
                    self.store.enqueue_many_for_sheet(&keys)
                })
                .await;
            if queued.is_none() {
                // Shutdown: the messages go back to the queue, for the next start.
                last.acker
                    .nack(BasicNackOptions {
                        multiple: true,
                        requeue: true,
                    })
                    .await?;
                return Ok(Some(moved));
            }
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
            moved += rows.len() as u64;
        }
        // Nothing routes to it since the unbind. An older sheets-sync still consuming holds
        // deliveries we cannot see: the queue stays until it is gone (the next look). Quorum
        // queues refuse `if-empty` on delete, so emptiness and consumers are checked first.
        let state = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await?;
        if state.message_count() > 0 || state.consumer_count() > 0 {
            return Ok(Some(moved));
        }
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        let _ = channel.close(200, "done".into()).await;
        Ok(Some(moved))
    }
}
