use std::collections::BTreeSet;
use std::time::Duration;

use collect_testkit::publish_raw;
use lapin::types::AMQPValue;
use serde_json::json;

use crate::helpers::{Pipeline, seed};

#[tokio::test]
async fn poison_messages_land_in_dead_with_their_reason_and_never_loop() {
    let pipeline = Pipeline::start().await;
    let mut dead = pipeline.dead_probe().await;
    let exchange = pipeline.topology.responses_exchange();
    let garbage: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        vec![0xff, 0xfe, 0x00],
        json!({"form_id": "household-finance", "collector": {"user_id": "u"}}).to_string().into_bytes(),
        json!({"form_id": "no-such-form", "response_id": "r-x", "collector": {"user_id": "u"}}).to_string().into_bytes(),
        json!({"form_id": "household-finance", "response_id": "r-y", "collector": {"user_id": "u"}, "revision": u64::MAX}).to_string().into_bytes(),
    ];
    for body in &garbage {
        publish_raw(&exchange, "household-finance", body).await;
    }

    let mut reasons = BTreeSet::new();
    let mut bodies = Vec::new();
    for _ in 0..garbage.len() {
        let message = dead.next_raw().await;
        let headers = message.properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get("x-collect-reason") {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("no reason header: {other:?}"),
        };
        assert!(matches!(
            headers.inner().get("x-collect-queue"),
            Some(AMQPValue::LongString(queue)) if queue.to_string() == pipeline.topology.validator_queue()
        ));
        reasons.insert(reason.split(':').next().unwrap().to_owned());
        bodies.push(message.data);
    }
    bodies.sort();
    let mut sent = garbage.clone();
    sent.sort();
    assert_eq!(bodies, sent, "each poison message is kept as it was");
    assert!(reasons.contains("not a response message"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("unknown form")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("revision")),
        "{reasons:?}"
    );
    assert!(
        dead.next_raw_within(Duration::from_millis(500))
            .await
            .is_none(),
        "each once"
    );

    // The validator lives on and its queue is empty.
    assert_eq!(
        pipeline
            .post("/collect", &seed("r-after", "u", json!({})))
            .await
            .status(),
        202
    );
    pipeline.stored("r-after", 1_795_169_700_000).await;
    assert_eq!(
        dead.queue_depth(&pipeline.topology.validator_queue()).await,
        0
    );
    pipeline.stop().await;
}
