//! Consuming a work queue: reconnecting as the broker comes and goes, a bounded number of
//! deliveries in hand, and a clean stop.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Broker, OutgoingMessage, Publisher};
use crate::retry::retry_until_shutdown;

/// What became of a delivery, as a handler reports it: the consumer sends the acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Handled (or set aside in `N.dead`): acked.
    Ack,
    /// Not handled now (shutting down): back to the queue at once (`nack` with requeue).
    Requeue,
    /// Not handled (shutting down): left unacked, it goes back to the queue when the channel
    /// closes.
    Keep,
}

/// How a consumer takes its deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Deliveries in hand at once (the channel's prefetch).
    pub prefetch: u16,
    /// Deliveries handed over together at most.
    pub batch: usize,
    /// How long a batch may wait to fill after its first delivery. Zero: the deliveries that
    /// are ready now, never waiting. A few milliseconds turn a moderate, steady flow into
    /// batches of tens instead of ones and twos: a transaction, an fsync and an ack for many
    /// responses instead of for each (Kafka producers' `linger.ms`, on the consuming side).
    pub linger: Duration,
}

/// Consumes `queue` until `shutdown`, handing deliveries to `handler` together, up to `batch`
/// at a time, so that their work can share one transaction: those that are ready, or with a
/// `linger`, those that arrive within it. Up to `prefetch / batch` batches are processed at
/// once. The handler returns what became of each delivery, in the order it got them; the acks
/// are sent as [`Acks`] says. In-flight batches finish before it returns; prefetched
/// deliveries go back to the queue with the channel.
pub async fn consume_batches<H, Fut>(
    broker: Broker,
    queue: String,
    batching: Batching,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Vec<Delivery>) -> Fut + Clone,
    Fut: Future<Output = Vec<Settled>>,
{
    let prefetch = batching.prefetch;
    let batch = batching.batch.clamp(1, usize::from(prefetch.max(1)));
    let linger = batching.linger;
    loop {
        let connection = tokio::select! {
            _ = shutdown.cancelled() => return,
            connection = broker.connection() => connection,
        };
        let Some(connection) = connection else { return };
        let consuming = consume_once(
            &connection,
            &queue,
            Batching {
                prefetch,
                batch,
                linger,
            },
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
    Batching {
        prefetch,
        batch,
        linger,
    }: Batching,
    shutdown: &CancellationToken,
    handler: H,
) -> Result<(), lapin::Error>
where
    H: Fn(Vec<Delivery>) -> Fut + Clone,
    Fut: Future<Output = Vec<Settled>>,
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
    info!(%queue, prefetch, batch, linger_ms = linger.as_millis(), "consuming");
    let concurrency = (usize::from(prefetch) / batch).max(1);
    let acks = tokio::sync::Mutex::new(Acks::default());
    let (acks, channel_ref) = (&acks, &channel);
    let deliveries = consumer
        .take_until(shutdown.clone().cancelled_owned())
        .filter_map(|delivery| async move {
            delivery
                .inspect_err(|error| warn!(%error, "consumer error"))
                .ok()
        });
    let batches = if linger.is_zero() {
        futures::future::Either::Left(deliveries.ready_chunks(batch))
    } else {
        futures::future::Either::Right(tokio_stream::StreamExt::chunks_timeout(
            deliveries, batch, linger,
        ))
    };
    batches
        .for_each_concurrent(concurrency, |deliveries| {
            let handler = handler.clone();
            async move {
                let tags: Vec<u64> = deliveries.iter().map(|d| d.delivery_tag).collect();
                // In delivery order: batches start in the order their deliveries came.
                acks.lock().await.handling(&tags);
                let mut settled = handler(deliveries).await;
                if settled.len() != tags.len() {
                    warn!(
                        expected = tags.len(),
                        got = settled.len(),
                        "a handler did not settle each delivery; the rest stay unacked"
                    );
                    settled.resize(tags.len(), Settled::Keep);
                }
                let mut acks = acks.lock().await;
                // Sent under the lock, so a multiple ack never overtakes a requeue it covers.
                for (tag, command) in acks.settle(tags.into_iter().zip(settled)) {
                    let sent = match command {
                        Command::Ack { multiple } => {
                            channel_ref
                                .basic_ack(tag, BasicAckOptions { multiple })
                                .await
                        }
                        Command::Requeue => {
                            channel_ref
                                .basic_nack(
                                    tag,
                                    BasicNackOptions {
                                        multiple: false,
                                        requeue: true,
                                    },
                                )
                                .await
                        }
                    };
                    if let Err(error) = sent {
                        // The channel went away: the broker delivers again, and handling is
                        // idempotent.
                        warn!(%error, "ack failed; the messages will be delivered again");
                    }
                }
            }
        })
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), channel.close(200, "done".into())).await;
    Ok(())
}

/// Acks for one channel, coalesced: a delivery handled while every delivery before it on the
/// channel is settled is acked with `multiple` together with the others handled before it, one
/// ack for many (acks are what a quorum queue writes to its log: one per message halved the
/// broker's publish → consume rate in the benchmark). Batches finish in any order, so an ack
/// waits while an earlier delivery is still in hand; a multiple ack never covers a delivery
/// kept unacked (those after it are acked one by one) or one still in hand.
#[derive(Debug, Default)]
pub struct Acks {
    /// Delivered and not settled yet.
    in_hand: BTreeSet<u64>,
    /// Left unacked for the broker to deliver again when the channel closes.
    kept: BTreeSet<u64>,
    /// Handled, waiting for an ack that covers them.
    done: BTreeSet<u64>,
}

/// An ack or a nack to send for a delivery tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Ack { multiple: bool },
    Requeue,
}

impl Acks {
    /// Deliveries handed to a handler.
    pub fn handling(&mut self, tags: &[u64]) {
        self.in_hand.extend(tags.iter().copied());
    }

    /// What became of deliveries; returns the acks and nacks to send now, in order.
    pub fn settle(
        &mut self,
        settled: impl IntoIterator<Item = (u64, Settled)>,
    ) -> Vec<(u64, Command)> {
        let mut commands = Vec::new();
        for (tag, outcome) in settled {
            self.in_hand.remove(&tag);
            match outcome {
                Settled::Ack => {
                    self.done.insert(tag);
                }
                Settled::Requeue => commands.push((tag, Command::Requeue)),
                Settled::Keep => {
                    self.kept.insert(tag);
                }
            }
        }
        let first_in_hand = self.in_hand.first().copied().unwrap_or(u64::MAX);
        let first_kept = self.kept.first().copied().unwrap_or(u64::MAX);
        // Everything handled before the first delivery in hand or kept: one multiple ack.
        let fence = first_in_hand.min(first_kept);
        let covered: Vec<u64> = self.done.range(..fence).copied().collect();
        if let Some(&last) = covered.last() {
            commands.push((
                last,
                Command::Ack {
                    multiple: covered.len() > 1,
                },
            ));
        }
        // Handled after a kept delivery and before the first in hand: one by one.
        let single: Vec<u64> = if first_kept < first_in_hand {
            self.done
                .range(first_kept..first_in_hand)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        for &tag in &single {
            commands.push((tag, Command::Ack { multiple: false }));
        }
        for tag in covered.iter().chain(&single) {
            self.done.remove(tag);
        }
        commands
    }
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
    dead_letter_part(
        publisher,
        dead_exchange,
        queue,
        delivery,
        &delivery.data,
        reason,
        shutdown,
    )
    .await
}

/// Like [`dead_letter`], for `body`, a part of the delivery (one response of a message that
/// carries several): it is set aside alone, with the delivery's headers of origin.
pub async fn dead_letter_part(
    publisher: &Publisher,
    dead_exchange: &str,
    queue: &str,
    delivery: &Delivery,
    body: &[u8],
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
        body,
        headers: Some(&headers),
        mandatory: true,
    };
    retry_until_shutdown("dead-lettering", shutdown, || publisher.publish(message))
        .await
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(multiple: bool) -> Command {
        Command::Ack { multiple }
    }

    #[test]
    fn a_batch_finishing_first_waits_for_the_one_before_then_both_go_in_one_ack() {
        let mut acks = Acks::default();
        acks.handling(&[1, 2, 3]);
        acks.handling(&[4, 5]);
        let later = acks.settle([(4, Settled::Ack), (5, Settled::Ack)]);
        assert_eq!(later, vec![], "1 to 3 are still in hand");
        let earlier = acks.settle([(1, Settled::Ack), (2, Settled::Ack), (3, Settled::Ack)]);
        assert_eq!(earlier, vec![(5, ack(true))]);
        assert!(acks.done.is_empty() && acks.in_hand.is_empty());
    }

    #[test]
    fn one_delivery_is_acked_alone() {
        let mut acks = Acks::default();
        acks.handling(&[7]);
        assert_eq!(acks.settle([(7, Settled::Ack)]), vec![(7, ack(false))]);
    }

    #[test]
    fn a_kept_delivery_is_never_covered_by_a_multiple_ack() {
        let mut acks = Acks::default();
        acks.handling(&[1, 2, 3, 4]);
        let commands = acks.settle([
            (1, Settled::Ack),
            (2, Settled::Keep),
            (3, Settled::Ack),
            (4, Settled::Ack),
        ]);
        assert_eq!(
            commands,
            vec![(1, ack(false)), (3, ack(false)), (4, ack(false))]
        );
        // Later deliveries are acked one by one too: a multiple ack would cover 2.
        acks.handling(&[5, 6]);
        let commands = acks.settle([(5, Settled::Ack), (6, Settled::Ack)]);
        assert_eq!(commands, vec![(5, ack(false)), (6, ack(false))]);
    }

    #[test]
    fn requeued_deliveries_are_nacked_before_the_ack_that_follows_them() {
        let mut acks = Acks::default();
        acks.handling(&[1, 2, 3]);
        let commands = acks.settle([(1, Settled::Ack), (2, Settled::Requeue), (3, Settled::Ack)]);
        assert_eq!(commands, vec![(2, Command::Requeue), (3, ack(true))]);
    }

    #[test]
    fn a_kept_delivery_still_lets_those_before_it_go_in_one_ack() {
        let mut acks = Acks::default();
        acks.handling(&[1, 2, 3]);
        acks.handling(&[4]);
        let commands = acks.settle([(1, Settled::Ack), (2, Settled::Ack), (3, Settled::Keep)]);
        assert_eq!(commands, vec![(2, ack(true))]);
        let commands = acks.settle([(4, Settled::Ack)]);
        assert_eq!(commands, vec![(4, ack(false))]);
    }
}
