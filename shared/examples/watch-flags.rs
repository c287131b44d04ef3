//! Prints the flag events for one collector (or all, with `#`) as they happen: what a
//! collector's app receives. `cargo run -p collect-shared --example watch-flags -- u-17`
//!
//! Honours `AMQP_URL` and `COLLECT_NAMESPACE` like the services.

#![allow(clippy::print_stdout)]

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let user = std::env::args().nth(1).unwrap_or_else(|| "#".into());
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let namespace = std::env::var("COLLECT_NAMESPACE").unwrap_or_else(|_| "collect".into());
    let exchange = format!("{namespace}.flags");
    let key = if user == "#" {
        "#".to_owned()
    } else {
        format!("collector.{user}")
    };

    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    // The flags exchange is declared by the services; start one of them first.
    let queue = collect_shared::amqp::bind_exclusive_queue(&channel, &exchange, &key).await?;
    let mut consumer = channel
        .basic_consume(
            queue,
            "watch-flags".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!("watching {exchange} for {key} (Ctrl-C stops)");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        println!("{}", String::from_utf8_lossy(&delivery.data));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}
