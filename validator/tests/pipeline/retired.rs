//! A broker upgraded in place still holds `N.sheets` (sheets-sync's input queue before the
//! validator wrote the sheet outbox itself), bound to `N.saved`: the validator moves what it
//! holds into the outbox and deletes it.

use std::time::Duration;

use collect_shared::amqp::{Broker, BrokerSettings, PublishSettings, Publisher};
use collect_shared::store::{Store, StoreSettings};
use collect_testkit::{amqp_url, publish_raw};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use validator::retired::Retired;

use super::helpers::Pipeline;

/// Whether a queue exists (a passive declare fails on a missing one).
async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_leftover_sheets_queue_is_drained_into_the_outbox_and_deleted() {
    // No validator of the pipeline's own: the test is the validator here. One that was running
    // checks for the retired queue when it starts, and could delete it between the declare
    // below and the publishes, before they were in it (seen once in CI).
    let pipeline = Pipeline::start_with(0).await;
    let topology = &pipeline.topology;
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    // `N.sheets` as earlier versions declared it, with what they left in it.
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let queue = topology.sheets_queue();
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            topology.saved_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let saved = topology.saved_exchange();
    for (form, id) in [
        ("household-finance", "old-1"),
        ("household-finance", "old-2"),
        ("other-form", "old-1"),
    ] {
        let body = json!({"response_id": id, "form_id": form, "revision": 1, "status": "valid"});
        publish_raw(&saved, form, body.to_string().as_bytes()).await;
    }
    publish_raw(&saved, "household-finance", b"not a stored response").await;
    let mut dead = pipeline.dead_probe().await;

    let store = Store::connect(&StoreSettings {
        url: pipeline.database_url.clone(),
        max_connections: 2,
        statement_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    let broker = Broker::start(BrokerSettings::new(
        amqp_url(),
        "validator",
        topology.clone(),
    ));
    let retired = Retired {
        broker: broker.clone(),
        store: store.clone(),
        publisher: Publisher::new(broker.clone(), PublishSettings::default(), "test"),
        topology: topology.clone(),
        shutdown: CancellationToken::new(),
    };
    assert_eq!(retired.drain_once().await.unwrap(), Some(3));
    assert!(!queue_exists(&connection, &queue).await);

    let mut waiting: Vec<(String, i64)> = store
        .pending_forms()
        .await
        .unwrap()
        .into_iter()
        .map(|form| (form.form_id.to_string(), form.waiting))
        .collect();
    waiting.sort();
    assert_eq!(
        waiting,
        [
            ("household-finance".to_owned(), 2),
            ("other-form".to_owned(), 1)
        ]
    );
    let letter = dead.next_raw().await;
    assert_eq!(letter.data, b"not a stored response");
    let headers = letter.properties.headers().clone().unwrap_or_default();
    assert_eq!(
        headers.inner().get("x-collect-queue"),
        Some(&AMQPValue::LongString(queue.as_str().into()))
    );
    // Once gone, there is nothing to do.
    assert_eq!(retired.drain_once().await.unwrap(), None);

    broker.close().await;
    let _ = connection.close(200, "done".into()).await;
    pipeline.stop().await;
}
