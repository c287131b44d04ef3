//! The yardstick: what this RabbitMQ does on its own, with the client Collect uses (lapin).
//! Persistent 1 KB messages on a quorum queue, publisher confirms with a pipelined window.

use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::{Args, progress};

/// Publishes awaiting their confirm at once (ingest's `COLLECT_PUBLISH_WINDOW` default).
const WINDOW: usize = 512;

pub struct Yardstick {
    pub publish_rate: f64,
    pub end_to_end_rate: f64,
}

pub async fn run(args: &Args) -> anyhow::Result<Yardstick> {
    println!("\n## 1. The broker's own capacity (the yardstick)");
    let url = collect_testkit::amqp_url();
    let publishing = Connection::connect(&url, ConnectionProperties::default()).await?;
    let consuming = Connection::connect(&url, ConnectionProperties::default()).await?;
    let repeats = args.broker_repeats.max(1);
    let mut measured = Vec::with_capacity(repeats);
    for round in 1..=repeats {
        let of = if repeats > 1 {
            format!(", {round} of {repeats}")
        } else {
            String::new()
        };
        measured.push(measure(&publishing, &consuming, args.broker_messages, &of).await?);
    }
    let _ = publishing.close(200, "done".into()).await;
    let _ = consuming.close(200, "done".into()).await;
    let yardstick = Yardstick {
        publish_rate: median(measured.iter().map(|y| y.publish_rate).collect()),
        end_to_end_rate: median(measured.iter().map(|y| y.end_to_end_rate).collect()),
    };
    if repeats > 1 {
        println!(
            "the ratios use the median of the {repeats}: {:.0} confirmed, {:.0} publish → consume msg/s",
            yardstick.publish_rate, yardstick.end_to_end_rate
        );
    }
    Ok(yardstick)
}

/// One measurement of both figures, on a quorum queue of its own, removed afterwards even if
/// the measurement failed.
async fn measure(
    publishing: &Connection,
    consuming: &Connection,
    n: usize,
    of: &str,
) -> anyhow::Result<Yardstick> {
    let channel = publishing.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!(
        "bench-yardstick-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    let measured = measure_on(&channel, consuming, &queue, n, of).await;
    let deleted = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel.close(200, "done".into()).await;
    // A failed measurement's own error is the one to report.
    let measured = measured?;
    deleted?;
    Ok(measured)
}

async fn measure_on(
    channel: &Channel,
    consuming: &Connection,
    queue: &str,
    n: usize,
    of: &str,
) -> anyhow::Result<Yardstick> {
    let body = vec![b'x'; 1024];

    // Confirmed publishes alone.
    let bar = progress(n as u64, "confirmed publishes");
    let started = Instant::now();
    publish(channel, queue, &body, n, &bar).await?;
    let publish_rate = n as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "confirmed publishes{of}: {n} × 1 KB persistent, window {WINDOW}: {publish_rate:.0} msg/s"
    );

    // Publishing and consuming at once; the backlog from above is drained first.
    let consumer_channel = consuming.create_channel().await?;
    consumer_channel
        .basic_qos(500, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let bar = progress(n as u64, "draining");
    drain(&mut consumer, n, &bar).await?;
    bar.finish_and_clear();
    let bar = progress(n as u64, "publish → consume");
    let started = Instant::now();
    let consumed = drain(&mut consumer, n, &bar);
    let hidden = indicatif::ProgressBar::hidden();
    let published = publish(channel, queue, &body, n, &hidden);
    let (consumed, published) = tokio::join!(consumed, published);
    consumed?;
    published?;
    let end_to_end_rate = n as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "publish → consume{of} (confirmed publishes, acked deliveries, prefetch 500): {end_to_end_rate:.0} msg/s"
    );
    let _ = consumer_channel.close(200, "done".into()).await;
    Ok(Yardstick {
        publish_rate,
        end_to_end_rate,
    })
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

async fn publish(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    n: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= WINDOW {
            if let Some(confirm) = pending.next().await {
                check(confirm)?;
                bar.inc(1);
            }
        }
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push(confirm.into_future());
    }
    while let Some(confirm) = pending.next().await {
        check(confirm)?;
        bar.inc(1);
    }
    Ok(())
}

fn check(confirm: Result<Confirmation, lapin::Error>) -> anyhow::Result<()> {
    anyhow::ensure!(confirm?.is_ack(), "the broker nacked a publish");
    Ok(())
}

async fn drain(
    consumer: &mut lapin::Consumer,
    n: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    for i in 0..n {
        let delivery = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the consumer ended"))??;
        // Acks in batches of 50, as a busy consumer would.
        if i % 50 == 49 || i + 1 == n {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
        }
        bar.inc(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(median(vec![24_133.0, 15_094.0, 19_401.0]), 19_401.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![7.0]), 7.0);
    }
}
