use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_testkit::{amqp_url, eventually};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

use super::helpers::{Options, spawn_app_with};

/// A queue left on the broker with other arguments (here a classic `N.validator`) cannot be
/// redeclared: ingest says so plainly in `/readyz` instead of failing obscurely.
#[tokio::test]
async fn a_conflicting_queue_on_the_broker_is_reported_clearly() {
    let namespace = collect_testkit::namespace();
    let topology = Topology::new(namespace.clone());
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(
            topology.validator_queue().as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();

    let app = spawn_app_with(Options {
        wait_until_ready: false,
        namespace: Some(namespace.clone()),
        ..Options::default()
    })
    .await;

    let reason = eventually(Duration::from_secs(20), "readyz to explain", || async {
        let response = app.client.get(app.url("/readyz")).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        let reason = body["checks"]["broker"].as_str()?.to_owned();
        reason.contains("PRECONDITION").then_some(reason)
    })
    .await;
    assert!(reason.contains(&topology.validator_queue()), "{reason}");
    assert!(reason.contains("other settings"), "{reason}");
    app.stop().await;
}
