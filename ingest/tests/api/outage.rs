//! The broker going away, through a fault proxy of the test's own (the shared broker stays up
//! for the tests running beside this one).

use std::time::{Duration, Instant};

use collect_testkit::{FaultProxy, eventually};
use serde_json::Value;

use super::helpers::{Options, envelope, error_of, spawn_app_with};

const ROUTE: &str = "/v1/forms/household-finance/responses";

#[tokio::test]
async fn unreachable_broker_gives_503_then_ingest_recovers_by_itself() {
    let proxy = FaultProxy::for_broker().await;
    let app = spawn_app_with(Options {
        amqp_url: proxy.amqp_url(),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;
    assert_eq!(
        app.post_json(ROUTE, &envelope("r-before", 1))
            .await
            .status(),
        202
    );
    assert_eq!(probe.next().await.body["response_id"], "r-before");

    proxy.cut();

    let started = Instant::now();
    let response = app.post_json(ROUTE, &envelope("r-during", 1)).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503 comes quickly"
    );
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(error_of(response).await.0, "broker_unavailable");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_ne!(body["checks"]["broker"], "ok");
    assert!(
        probe
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing half-accepted"
    );

    proxy.restore();

    eventually(
        Duration::from_secs(30),
        "ingest to accept again",
        || async {
            let response = app.post_json(ROUTE, &envelope("r-after", 1)).await;
            (response.status() == 202).then_some(())
        },
    )
    .await;
    assert_eq!(probe.next().await.body["response_id"], "r-after");
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_broker_that_does_not_confirm_gives_503_at_the_deadline() {
    let proxy = FaultProxy::for_broker().await;
    let app = spawn_app_with(Options {
        amqp_url: proxy.amqp_url(),
        configure: Some(Box::new(|config| config.publish_timeout_ms = 700)),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;

    proxy.stall();

    let started = Instant::now();
    let response = app.post_json(ROUTE, &envelope("r-stalled", 1)).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(error_of(response).await.0, "broker_unavailable");
    let batch = serde_json::json!([envelope("r-b1", 1), envelope("r-b2", 1)]);
    let response = app.post_json(&format!("{ROUTE}:batch"), &batch).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["failed"], 2);
    assert_eq!(body["results"][0]["status"], "failed");
    assert_eq!(body["error"]["code"], "broker_unavailable");

    proxy.restore();
    // The stalled publishes may still land once the bytes flow (the client got 503 and will
    // retry; a repeated revision is a no-op downstream). New ones are accepted.
    eventually(
        Duration::from_secs(30),
        "ingest to accept again",
        || async {
            let response = app.post_json(ROUTE, &envelope("r-after", 1)).await;
            (response.status() == 202).then_some(())
        },
    )
    .await;
    loop {
        let message = probe.next_within(Duration::from_secs(10)).await;
        let message = message.expect("r-after reaches the queue within 10 s");
        if message.body["response_id"] == "r-after" {
            break;
        }
    }
    app.stop().await;
}
