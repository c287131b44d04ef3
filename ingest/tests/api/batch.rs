use std::collections::HashSet;

use serde_json::{Value, json};

use super::helpers::{envelope, error_of, spawn_app};

const ROUTE: &str = "/v1/forms/household-finance/responses:batch";

#[tokio::test]
async fn a_batch_of_1000_is_accepted_item_by_item_in_order() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let batch: Vec<Value> = (0..1000).map(|i| envelope(&format!("r-{i}"), 1)).collect();

    let response = app.post_json(ROUTE, &json!(batch)).await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 1000);
    assert_eq!(body["rejected"], 0);
    assert_eq!(body["failed"], 0);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result,
            &json!({"response_id": format!("r-{i}"), "form_id": "household-finance", "revision": 1, "status": "accepted"})
        );
    }
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let message = probe.next().await;
        assert_eq!(message.body["answers"], envelope("r", 1)["answers"]);
        seen.insert(message.body["response_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 1000, "every envelope published once");
    assert!(
        probe
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_items_are_rejected_and_the_rest_accepted() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;
    let batch = json!([
        envelope("r-ok-1", 1),
        {"response_id": "r-bad", "collector": {}},
        "not an envelope",
        envelope("r-ok-2", 1),
        {"response_id": "r-nul", "collector": {"user_id": "u"}, "answers": {"name": "a\u{0}"}},
    ]);

    let response = app.post_json(ROUTE, &batch).await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let results = &body["results"];
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[1]["error"]["code"], "invalid_field");
    assert_eq!(results[1]["error"]["field"], "[1].collector.user_id");
    assert_eq!(results[2]["status"], "rejected");
    assert_eq!(results[2]["error"]["field"], "[2]");
    assert_eq!(results[3]["response_id"], "r-ok-2");
    // What PostgreSQL could not store is refused here, not dead-lettered later.
    assert_eq!(results[4]["status"], "rejected");
    assert_eq!(results[4]["error"]["field"], "[4].answers.name");
    let mut published: Vec<String> = Vec::new();
    for _ in 0..2 {
        published.push(
            probe.next().await.body["response_id"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    published.sort();
    assert_eq!(published, ["r-ok-1", "r-ok-2"]);
    assert!(
        probe
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn batches_that_are_not_arrays_or_too_long_are_422() {
    let app = spawn_app().await;
    let mut probe = app.responses_probe().await;

    let response = app.post_json(ROUTE, &envelope("r-1", 1)).await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        error_of(response).await,
        ("invalid_field".into(), Some("".into()))
    );

    let too_many: Vec<Value> = (0..1001).map(|i| envelope(&format!("r-{i}"), 1)).collect();
    let response = app.post_json(ROUTE, &json!(too_many)).await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_of(response).await.0, "batch_too_large");

    let response = app.post_json(ROUTE, &json!([])).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap()["results"],
        json!([])
    );

    assert!(
        probe
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    app.stop().await;
}
