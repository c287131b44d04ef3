use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::{envelope, error_of, spawn_app};

const ROUTE: &str = "/v1/forms/household-finance/responses";

#[tokio::test]
async fn an_envelope_is_published_with_its_form_id() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;

    let response = app.post_json(ROUTE, &envelope("r-1", 2)).await;

    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"response_id": "r-1", "form_id": "household-finance", "revision": 2, "status": "accepted"})
    );
    let mut message = probe.next().await;
    assert_eq!(message.routing_key, "household-finance");
    assert!(
        message
            .body
            .as_object_mut()
            .unwrap()
            .remove("received_at")
            .is_some()
    );
    let mut expected = envelope("r-1", 2);
    expected["form_id"] = json!("household-finance");
    assert_eq!(message.body, expected);
    app.stop().await;
}

#[tokio::test]
async fn defaults_and_wrongly_typed_answers_are_accepted() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    // Only the required fields; answers of the wrong type are the validator's to flag.
    let minimal = json!({
        "response_id": "r-min",
        "collector": {"user_id": "u-1"},
        "answers": {"monthly_income": "lots", "age": [1], "name": null},
        "form_id": "household-finance"
    });
    assert_eq!(app.post_json(ROUTE, &minimal).await.status(), 202);
    let body = probe.next().await.body;
    assert_eq!(body["revision"], 0);
    assert_eq!(body["collector"], json!({"user_id": "u-1"}));
    assert_eq!(body["answers"], minimal["answers"]);
    assert_eq!(body["metadata"], json!({}));
    app.stop().await;
}

#[tokio::test]
async fn structurally_wrong_envelopes_get_422_naming_the_field() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let with = |key: &str, value: Value| {
        let mut body = envelope("r-1", 1);
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = envelope("r-1", 1);
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases = [
        (without("response_id"), "response_id"),
        (without("collector"), "collector"),
        (
            with("collector", json!({"username": "asha"})),
            "collector.user_id",
        ),
        (
            with("collector", json!({"user_id": ""})),
            "collector.user_id",
        ),
        (
            with("collector", json!({"user_id": 17})),
            "collector.user_id",
        ),
        (with("collector", json!("u-17")), "collector"),
        (with("response_id", json!("x".repeat(129))), "response_id"),
        (with("response_id", json!("tab\there")), "response_id"),
        (with("response_id", json!(7)), "response_id"),
        (with("revision", json!(-1)), "revision"),
        (with("revision", json!(1.5)), "revision"),
        (with("revision", json!("2")), "revision"),
        (
            with("revision", json!(9_223_372_036_854_775_808u64)),
            "revision",
        ),
        (with("submitted_at", json!("yesterday")), "submitted_at"),
        (with("answers", json!([1, 2])), "answers"),
        (with("answers", Value::Null), "answers"),
        (with("metadata", json!("Pune")), "metadata"),
        (with("answer", json!({})), "answer"),
        (with("form_id", json!("other-form")), "form_id"),
        (json!([envelope("r-1", 1)]), ""),
    ];
    for (body, field) in cases {
        let response = app.post_json(ROUTE, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let (code, named) = error_of(response).await;
        assert_eq!(code, "invalid_field", "{body}");
        assert_eq!(named.as_deref(), Some(field), "{body}");
    }
    assert!(
        probe
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing refused reaches the queue"
    );
    // The longest valid id passes.
    let longest = "x".repeat(128);
    assert_eq!(
        app.post_json(ROUTE, &envelope(&longest, 1)).await.status(),
        202
    );
    assert_eq!(probe.next().await.body["response_id"], json!(longest));
    // So does the highest revision the store holds.
    let mut highest = envelope("r-highest", 1);
    highest["revision"] = json!(i64::MAX);
    assert_eq!(app.post_json(ROUTE, &highest).await.status(), 202);
    assert_eq!(probe.next().await.body["revision"], json!(i64::MAX));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_form_is_404() {
    let app = spawn_app().await;
    for form in ["no-such-form", "a.b", "%20"] {
        let response = app
            .post_json(&format!("/v1/forms/{form}/responses"), &envelope("r-1", 1))
            .await;
        assert_eq!(response.status(), 404, "{form}");
        assert_eq!(
            error_of(response).await,
            ("unknown_form".into(), Some("form_id".into()))
        );
        let response = app
            .post_json(&format!("/v1/forms/{form}/responses:batch"), &json!([]))
            .await;
        assert_eq!(response.status(), 404, "{form}");
    }
    app.stop().await;
}
