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
    let n = args.broker_messages;
    let body = vec![b'x'; 1024];

    // Confirmed publishes alone.
    let bar = progress(n as u64, "confirmed publishes");
    let started = Instant::now();
    publish(&channel, &queue, &body, n, &bar).await?;
    let publish_rate = n as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "confirmed publishes: {n} × 1 KB persistent, window {WINDOW}: {publish_rate:.0} msg/s"
    );

    // Publishing and consuming at once; the backlog from above is drained first.
    let consumer_channel = consuming.create_channel().await?;
    consumer_channel
        .basic_qos(500, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
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
    let published = publish(&channel, &queue, &body, n, &hidden);
    let (consumed, published) = tokio::join!(consumed, published);
    consumed?;
    published?;
    let end_to_end_rate = n as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "publish → consume (confirmed publishes, acked deliveries, prefetch 500): {end_to_end_rate:.0} msg/s"
    );

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = publishing.close(200, "done".into()).await;
    let _ = consuming.close(200, "done".into()).await;
    Ok(Yardstick {
        publish_rate,
        end_to_end_rate,
    })
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
