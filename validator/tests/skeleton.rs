//! The validator as an operator runs it: it starts, declares the topology, answers its health
//! routes and stops on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_testkit::{Probe, ServiceProcess, eventually, remove_namespace};
use nix::sys::signal::Signal;

#[tokio::test]
async fn starts_declares_the_topology_and_stops_on_sigterm() {
    let namespace = collect_testkit::namespace();
    let database_url = collect_testkit::database_url();
    let mut service = ServiceProcess::start(
        env!("CARGO_BIN_EXE_validator"),
        &[
            ("VALIDATOR_LISTEN", "127.0.0.1:0".into()),
            ("COLLECT_NAMESPACE", namespace.to_string()),
            ("AMQP_URL", collect_testkit::amqp_url()),
            ("DATABASE_URL", database_url.clone()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let health = client.get(service.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    eventually(Duration::from_secs(20), "validator ready", || async {
        let response = client.get(service.url("/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let metrics = client.get(service.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);

    // Its queues exist (a passive declare fails on a missing queue).
    let topology = Topology::new(namespace.clone());
    let probe = Probe::bind(&topology.responses_exchange(), "#").await;
    assert_eq!(probe.queue_depth(&topology.validator_queue()).await, 0);
    assert_eq!(probe.queue_depth(&topology.sheets_queue()).await, 0);
    assert_eq!(probe.queue_depth(&topology.dead_queue()).await, 0);

    service.signal(Signal::SIGTERM);
    assert!(service.wait(Duration::from_secs(10)).await.success());
    remove_namespace(&namespace).await;
    collect_testkit::drop_database(&database_url).await;
}
