//! SIGTERM on the real binary: requests in flight finish with their confirms, then it exits 0.

use std::collections::BTreeSet;
use std::time::Duration;

use collect_shared::amqp::Topology;
use collect_testkit::{FaultProxy, Probe, ServiceProcess, eventually, remove_namespace};
use nix::sys::signal::Signal;

use super::helpers::{KEY, envelope};

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let proxy = FaultProxy::for_broker().await;
    let namespace = collect_testkit::namespace();
    let database_url = collect_testkit::database_url(super::ENGINE);
    let mut ingest = ServiceProcess::start(
        env!("CARGO_BIN_EXE_ingest"),
        &[
            ("INGEST_LISTEN", "127.0.0.1:0".into()),
            ("AMQP_URL", proxy.amqp_url()),
            ("COLLECT_NAMESPACE", namespace.to_string()),
            ("DATABASE_URL", database_url.clone()),
            ("COLLECT_API_KEYS", KEY.into()),
            ("COLLECT_AUTH", "on".into()),
            ("COLLECT_PUBLISH_TIMEOUT_MS", "30000".into()),
        ],
    )
    .await;
    let addr = ingest.addr.clone();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    eventually(Duration::from_secs(20), "ingest ready", || async {
        let response = client.get(url("/readyz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let topology = Topology::new(namespace.clone());
    let mut probe = Probe::bind(&topology.responses_exchange(), "#").await;

    // Hold five submissions in flight: the broker gets them but its confirms are held back.
    proxy.stall();
    let submissions: Vec<_> = (0..5)
        .map(|i| {
            let request = client
                .post(url("/v1/forms/household-finance/responses"))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(envelope(&format!("r-{i}"), 1).to_string());
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "five responses awaiting their confirm",
        || async {
            let metrics = client
                .get(url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|line| line == "collect_ingest_responses_in_flight 5")
                .then_some(())
        },
    )
    .await;

    ingest.signal(Signal::SIGTERM);

    // It stops taking new connections...
    eventually(Duration::from_secs(5), "the listener to close", || async {
        tokio::net::TcpStream::connect(&addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ...and once the broker answers, the held requests complete.
    proxy.restore();
    for submission in submissions {
        assert_eq!(
            submission.await.unwrap().expect("an answer, not a reset"),
            202
        );
    }
    let status = ingest.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");

    let mut published = BTreeSet::new();
    for _ in 0..5 {
        published.insert(
            probe.next().await.body["response_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(published, (0..5).map(|i| format!("r-{i}")).collect());
    remove_namespace(&namespace).await;
    collect_testkit::drop_database(&database_url).await;
}
