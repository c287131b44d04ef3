//! Consuming a work queue: reconnecting as the broker comes and goes, a bounded number of
//! deliveries in hand, and a clean stop.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Broker, OutgoingMessage, Publisher, retry_until_shutdown};

/// Consumes `queue` until `shutdown`, handing each delivery to `handler` (which acks it), with
/// `prefetch` deliveries in hand and processed concurrently. In-flight deliveries finish
/// before it returns; prefetched ones go back to the queue with the channel.
pub async fn consume<H, Fut>(
    broker: Broker,
    queue: String,
    prefetch: u16,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Delivery) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    consume_batches(
        broker,
        queue,
        prefetch,
        1,
        shutdown,
        move |mut deliveries| {
            let handler = handler.clone();
            async move {
                if let Some(delivery) = deliveries.pop() {
                    handler(delivery).await;
                }
            }
        },
    )
    .await;
}

/// Like [`consume`], but hands over the deliveries that are ready together, up to `batch` at a
/// time (never waiting to fill a batch), so that their work can share one transaction. Up to
/// `prefetch / batch` batches are processed at once. The handler acks each delivery itself
/// (not with `multiple`: batches finish in any order).
pub async fn consume_batches<H, Fut>(
    broker: Broker,
    queue: String,
    prefetch: u16,
    batch: usize,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Vec<Delivery>) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let batch = batch.clamp(1, usize::from(prefetch.max(1)));
    loop {
        let connection = tokio::select! {
            _ = shutdown.cancelled() => return,
            connection = broker.connection() => connection,
        };
        let Some(connection) = connection else { return };
        let consuming = consume_once(
            &connection,
            &queue,
            prefetch,
            batch,
            &shutdown,
            handler.clone(),
        );
        let outcome = tokio::select! {
            outcome = consuming => outcome,
            // The connection was lost and replaced: its consumer may never end by itself.
            // Unacked deliveries come again on the new one.
            () = broker.replaced(&connection) => {
                warn!(%queue, "the connection was replaced; consuming on the new one");
                Ok(())
            }
        };
        match outcome {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => warn!(%queue, "the consumer was cancelled; consuming again"),
            Err(error) => warn!(%queue, %error, "cannot consume; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn consume_once<H, Fut>(
    connection: &lapin::Connection,
    queue: &str,
    prefetch: u16,
    batch: usize,
    shutdown: &CancellationToken,
    handler: H,
) -> Result<(), lapin::Error>
where
    H: Fn(Vec<Delivery>) -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let channel = connection.create_channel().await?;
    // Enough deliveries in hand to keep the database and the confirms busy, not so many that a
    // restart redelivers a flood.
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    info!(%queue, prefetch, batch, "consuming");
    let concurrency = (usize::from(prefetch) / batch).max(1);
    consumer
        .take_until(shutdown.clone().cancelled_owned())
        .filter_map(|delivery| async move {
            delivery
                .inspect_err(|error| warn!(%error, "consumer error"))
                .ok()
        })
        .ready_chunks(batch)
        .for_each_concurrent(concurrency, handler)
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "done".into())).await;
    Ok(())
}

/// Sets a message aside in `N.dead`, as it was, with why in the `x-collect-reason` header and
/// where it came from in `x-collect-queue` and `x-collect-routing-key`. `false` when shutdown
/// came before the broker confirmed it.
pub async fn dead_letter(
    publisher: &Publisher,
    dead_exchange: &str,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
    shutdown: &CancellationToken,
) -> bool {
    let mut headers = FieldTable::default();
    for (key, value) in [
        ("x-collect-reason", reason),
        ("x-collect-queue", queue),
        ("x-collect-routing-key", delivery.routing_key.as_str()),
    ] {
        headers.insert(ShortString::from(key), AMQPValue::LongString(value.into()));
    }
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let message = OutgoingMessage {
        exchange: dead_exchange,
        routing_key: "",
        message_id: &message_id,
        body: &delivery.data,
        headers: Some(&headers),
        mandatory: true,
    };
    retry_until_shutdown("dead-lettering", shutdown, || publisher.publish(message))
        .await
        .is_some()
}
