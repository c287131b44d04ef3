//! `COLLECT_PUBLISH_LINGER_US`: a free slot waits that long after the first response for more
//! to go in the same message, unless the message is full first.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::helpers::{Options, TestApp, spawn_app_with};

const LINGER: Duration = Duration::from_millis(1500);

async fn post(app: &TestApp, id: &str) -> u16 {
    let response = app
        .post_json("/collect", &collect_testkit::seed_payload(id))
        .await;
    response.status().as_u16()
}

/// The response ids one message to `N.responses` carried: one object, or an array of them.
fn ids(data: &[u8]) -> Vec<String> {
    let id = |response: &Value| response["response_id"].as_str().unwrap().to_owned();
    match serde_json::from_slice::<Value>(data).unwrap() {
        Value::Array(responses) => responses.iter().map(id).collect(),
        response => vec![id(&response)],
    }
}

#[tokio::test]
async fn a_free_slot_lingers_for_more_responses_and_a_full_message_goes_at_once() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| {
            config.publish_linger_us = LINGER.as_micros() as u64;
            config.publish_gather_max = 3;
        })),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;
    let app = std::sync::Arc::new(app);

    // The first response waits in the linger: nothing is published, nobody is answered.
    let started = Instant::now();
    let first = tokio::spawn({
        let app = app.clone();
        async move { post(&app, "r-linger-1").await }
    });
    assert!(
        probe
            .next_raw_within(Duration::from_millis(300))
            .await
            .is_none(),
        "published before the linger ended"
    );
    assert!(!first.is_finished(), "answered before it was confirmed");

    // Two more fill the message (`COLLECT_PUBLISH_GATHER_MAX` 3): it goes without waiting out
    // the linger, and all three are answered once it is confirmed.
    let (second, third) = tokio::join!(post(&app, "r-linger-2"), post(&app, "r-linger-3"));
    assert_eq!((first.await.unwrap(), second, third), (202, 202, 202));
    assert!(
        started.elapsed() < LINGER,
        "a full message waited out the linger: {:?}",
        started.elapsed()
    );
    let mut gathered = ids(&probe.next_raw().await.data);
    assert_eq!(gathered[0], "r-linger-1", "the first to arrive leads");
    gathered.sort();
    assert_eq!(gathered, ["r-linger-1", "r-linger-2", "r-linger-3"]);

    // A response alone waits the whole linger, then goes as a message of its own.
    let alone = Instant::now();
    assert_eq!(post(&app, "r-linger-4").await, 202);
    assert!(
        alone.elapsed() >= LINGER,
        "answered after {:?}, within the linger",
        alone.elapsed()
    );
    let message = probe.next_raw().await.data;
    assert_eq!(ids(&message), ["r-linger-4"]);
    let message: Value = serde_json::from_slice(&message).unwrap();
    assert!(
        message.is_object(),
        "one response is the response message itself"
    );
    assert!(
        probe
            .next_raw_within(Duration::from_millis(200))
            .await
            .is_none(),
        "nothing else was published"
    );
    // One sample a message: 4 responses in 2 messages.
    let metrics = app.metrics().await;
    for line in [
        "collect_ingest_gathered_responses_sum 4",
        "collect_ingest_gathered_responses_count 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    std::sync::Arc::into_inner(app)
        .expect("no request holds the app")
        .stop()
        .await;
}

#[tokio::test]
async fn a_message_full_by_its_bytes_does_not_linger() {
    let app = spawn_app_with(Options {
        configure: Some(Box::new(|config| {
            config.publish_linger_us = LINGER.as_micros() as u64;
            config.max_body_bytes = 2 * 1024 * 1024;
        })),
        ..Options::default()
    })
    .await;
    let mut probe = app.responses_probe().await;
    // Over the bytes a gathered message holds: nothing more could join it, so it goes at once.
    let mut large = super::helpers::envelope("r-linger-large", 1);
    large["answers"]["notes"] = serde_json::json!("x".repeat(ingest::MAX_MESSAGE_BYTES + 1));

    let started = Instant::now();
    let response = app
        .post_json("/v1/forms/household-finance/responses", &large)
        .await;
    assert_eq!(response.status(), 202);
    assert!(
        started.elapsed() < LINGER,
        "a full message waited out the linger: {:?}",
        started.elapsed()
    );
    assert_eq!(ids(&probe.next_raw().await.data), ["r-linger-large"]);
    app.stop().await;
}
