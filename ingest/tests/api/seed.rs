use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::helpers::{error_of, seed_payload, spawn_app};

#[tokio::test]
async fn the_seed_payload_is_published_as_the_expected_envelope() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let before = Utc::now();

    let response = app.post_json("/collect", &seed_payload()).await;

    assert_eq!(response.status(), 202);
    let revision = 1_795_169_700_000u64; // 2026-11-20T10:15:00Z in milliseconds
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"response_id": "r-1029", "form_id": "household-finance", "revision": revision, "status": "accepted"})
    );
    let mut message = probe.next().await;
    assert_eq!(message.routing_key, "household-finance");
    assert_eq!(
        message.properties.message_id().as_ref().unwrap().as_str(),
        "r-1029"
    );
    assert_eq!(
        message.properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*message.properties.delivery_mode(), Some(2), "persistent");
    let received_at = message.body["received_at"].take();
    let received_at: DateTime<Utc> = received_at.as_str().unwrap().parse().unwrap();
    assert!(received_at >= before && received_at <= Utc::now());
    message.body.as_object_mut().unwrap().remove("received_at");
    assert_eq!(
        message.body,
        json!({
            "form_id": "household-finance",
            "response_id": "r-1029",
            "revision": revision,
            "collector": {"user_id": "u-17", "username": "asha"},
            "submitted_at": "2026-11-20T10:00:00Z",
            "answers": {
                "name": "Asha Rao",
                "email": "asha@example.com",
                "mobile_number": "+91 98200 00000",
                "gender": "female",
                "age": 34,
                "monthly_income": 52000,
                "monthly_savings": 8000,
                "monthly_expenditure": 30000,
                "food": 12000,
                "cable": 500,
                "healthcare": 2000.5,
                "fuel": "3000"
            },
            "metadata": {
                "response_family_id": "f-3",
                "location": "Pune",
                "submitted_time": "2026-11-20T10:00:00Z",
                "synced_time": "2026-11-20T10:05:00Z",
                "last_modified_time": "2026-11-20T10:15:00Z"
            }
        })
    );
    // It waits durably in the validator's queue too.
    let validator_queue = app.topology.validator_queue();
    collect_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the message in N.validator",
        || async { (probe.queue_depth(&validator_queue).await == 1).then_some(()) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn seed_variants_map_as_a_user_expects() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    // (changes to the seed payload, expected revision)
    let cases = [
        (
            json!({"last_modified_time": 1_795_169_700}),
            1_795_169_700_000u64,
        ),
        (
            json!({"last_modified_time": 1_795_169_700_123u64}),
            1_795_169_700_123,
        ),
        (
            json!({"last_modified_time": "1795169700"}),
            1_795_169_700_000,
        ),
        (
            json!({"last_modified_time": "2026-11-20 10:15:00"}),
            1_795_169_700_000,
        ),
        (json!({"last_modified_time": null}), 0),
    ];
    for (change, revision) in cases {
        let mut payload = seed_payload();
        for (key, value) in change.as_object().unwrap() {
            payload[key] = value.clone();
        }
        let response = app.post_json("/collect", &payload).await;
        assert_eq!(response.status(), 202, "{change}");
        assert_eq!(
            probe.next().await.body["revision"],
            json!(revision),
            "{change}"
        );
    }

    // Numeric ids (the seed's database used integers), unknown keys kept, labels matched
    // regardless of case and spacing.
    let mut payload = seed_payload();
    payload["response_id"] = json!(1029);
    payload["user_id"] = json!(17);
    payload["favourite colour"] = json!("teal");
    let income = payload
        .as_object_mut()
        .unwrap()
        .remove("what is the monthly income?")
        .unwrap();
    payload["What is the  monthly income? "] = income;
    assert_eq!(app.post_json("/collect", &payload).await.status(), 202);
    let body = probe.next().await.body;
    assert_eq!(body["response_id"], "1029");
    assert_eq!(body["collector"]["user_id"], "17");
    assert_eq!(body["answers"]["favourite colour"], "teal");
    assert_eq!(body["answers"]["monthly_income"], 52000);
    app.stop().await;
}

#[tokio::test]
async fn bad_seed_payloads_get_422_naming_the_field() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let without = |key: &str| {
        let mut payload = seed_payload();
        payload.as_object_mut().unwrap().remove(key);
        payload
    };
    let with = |key: &str, value: Value| {
        let mut payload = seed_payload();
        payload[key] = value;
        payload
    };
    let cases = [
        (without("response_id"), "response_id"),
        (without("user_id"), "user_id"),
        (with("response_id", json!("")), "response_id"),
        (with("response_id", json!("x".repeat(129))), "response_id"),
        (with("response_id", json!("has space")), "response_id"),
        (with("response_id", json!({"id": 1})), "response_id"),
        (with("user_id", json!(1.5)), "user_id"),
        (with("username", json!(["a"])), "username"),
        (
            with("last_modified_time", json!("next tuesday")),
            "last_modified_time",
        ),
        (with("last_modified_time", json!(-1)), "last_modified_time"),
        (
            with("last_modified_time", json!(true)),
            "last_modified_time",
        ),
        (with("monthly_income", json!(1)), "monthly_income"),
        (json!([seed_payload()]), ""),
        (json!("text"), ""),
    ];
    for (payload, field) in cases {
        let response = app.post_json("/collect", &payload).await;
        assert_eq!(response.status(), 422, "{payload}");
        let (code, named) = error_of(response).await;
        assert_eq!(code, "invalid_field");
        assert_eq!(named.as_deref(), Some(field), "{payload}");
    }
    assert!(
        probe
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "nothing refused reaches the queue"
    );
    app.stop().await;
}
