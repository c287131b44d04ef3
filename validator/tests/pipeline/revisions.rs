use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::{Pipeline, rule_ids};

const ROUTE: &str = "/v1/forms/household-finance/responses";

fn envelope(response_id: &str, revision: u64, savings: f64) -> Value {
    json!({
        "response_id": response_id,
        "revision": revision,
        "collector": {"user_id": "u-fix", "username": "ravi"},
        "answers": {
            "name": "Ravi", "gender": "male", "age": 40,
            "monthly_income": 50000, "monthly_savings": savings, "monthly_expenditure": 30000,
            "food": 10000, "cable": 500, "healthcare": 1000, "fuel": 2000
        }
    })
}

#[tokio::test]
async fn a_correction_clears_the_flag_and_replaces_the_row() {
    let pipeline = Pipeline::start().await;
    let mut flags = pipeline.flags_probe("u-fix").await;

    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-1", 1, 25000.0))
            .await
            .status(),
        202
    );
    let flagged = flags.next().await;
    assert_eq!(flagged.body["type"], "flagged");
    assert_eq!(flagged.body["revision"], 1);
    assert_eq!(rule_ids(&flagged.body["flags"]), ["savings_within_surplus"]);
    assert_eq!(pipeline.stored("r-1", 1).await["status"], "flagged");

    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-1", 2, 5000.0))
            .await
            .status(),
        202
    );
    let cleared = flags.next().await;
    assert_eq!(cleared.body["type"], "cleared");
    assert_eq!(cleared.body["response_id"], "r-1");
    assert_eq!(cleared.body["revision"], 2);
    assert_eq!(cleared.body["flags"], json!([]));
    let stored = pipeline.stored("r-1", 2).await;
    assert_eq!(stored["status"], "valid");
    assert_eq!(stored["flags"], json!([]));
    assert_eq!(stored["answers"]["monthly_savings"], 5000.0);
    let listed: Value = pipeline
        .get("/v1/collectors/u-fix/flags")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["responses"], json!([]));

    // A correction that is still wrong is flagged again; a valid one after a valid one says
    // nothing to the collector.
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-1", 3, -1.0))
            .await
            .status(),
        202
    );
    assert_eq!(flags.next().await.body["type"], "flagged");
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-1", 4, 0.0))
            .await
            .status(),
        202
    );
    assert_eq!(flags.next().await.body["type"], "cleared");
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-1", 5, 1.0))
            .await
            .status(),
        202
    );
    pipeline.stored("r-1", 5).await;
    assert!(
        flags
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_stale_revision_is_ignored() {
    let pipeline = Pipeline::start().await;
    let mut saved = pipeline.saved_probe().await;
    let mut flags = pipeline.flags_probe("u-fix").await;

    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-2", 3, 100.0))
            .await
            .status(),
        202
    );
    assert_eq!(saved.next().await.body["revision"], 3);
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-2", 2, -5.0))
            .await
            .status(),
        202
    );
    // Something after it, to know the stale one was processed.
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-marker", 1, 0.0))
            .await
            .status(),
        202
    );
    assert_eq!(saved.next().await.body["response_id"], "r-marker");

    let stored = pipeline.stored("r-2", 3).await;
    assert_eq!(stored["status"], "valid");
    assert_eq!(stored["answers"]["monthly_savings"], 100.0);
    assert!(
        flags
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no flag for a stale revision"
    );
    assert!(
        saved
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_duplicate_delivery_changes_nothing_and_republishes_its_events() {
    let pipeline = Pipeline::start().await;
    let mut saved = pipeline.saved_probe().await;
    let mut flags = pipeline.flags_probe("u-fix").await;

    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-3", 1, -5.0))
            .await
            .status(),
        202
    );
    let first = saved.next().await.body;
    assert_eq!(flags.next().await.body["type"], "flagged");
    let stored_before = pipeline.stored("r-3", 1).await;

    // The same revision again, with other answers: the first one stays.
    assert_eq!(
        pipeline
            .post(ROUTE, &envelope("r-3", 1, 10.0))
            .await
            .status(),
        202
    );
    let again = saved.next().await.body;
    assert_eq!(again, first, "the stored row is published again, unchanged");
    assert_eq!(flags.next().await.body["type"], "flagged");
    assert_eq!(pipeline.stored("r-3", 1).await, stored_before);
    pipeline.stop().await;
}

/// Deliveries arrive together and are stored in one transaction: first revisions, corrections,
/// redeliveries and stale revisions of the same responses mixed in one batch request still end
/// at the latest revision, with the events the revision rules give.
#[tokio::test]
async fn mixed_revisions_stored_together_end_at_the_latest() {
    let pipeline = Pipeline::start().await;
    let mut flags = pipeline.flags_probe("u-fix").await;
    let batch_route = "/v1/forms/household-finance/responses:batch";
    // Revision 1 of every response; even ones flagged.
    let first: Vec<Value> = (0..60)
        .map(|i| envelope(&format!("m-{i}"), 1, if i % 2 == 0 { -1.0 } else { 100.0 }))
        .collect();
    assert_eq!(
        pipeline.post(batch_route, &json!(first)).await.status(),
        202
    );
    for i in 0..60 {
        pipeline.stored(&format!("m-{i}"), 1).await;
    }
    // Then, in one request: the correction, revision 1 again (stale), the correction again
    // (a redelivery), for every response.
    let mut second = Vec::new();
    for i in 0..60 {
        let id = format!("m-{i}");
        second.push(envelope(&id, 2, 100.0));
        second.push(envelope(&id, 1, -1.0));
        second.push(envelope(&id, 2, 100.0));
    }
    assert_eq!(
        pipeline.post(batch_route, &json!(second)).await.status(),
        202
    );
    for i in 0..60 {
        let stored = pipeline.stored(&format!("m-{i}"), 2).await;
        assert_eq!(stored["status"], "valid", "m-{i}");
    }
    // Events: flagged at revision 1 and cleared at revision 2 for the even ones (a redelivered
    // revision publishes its event again); nothing for the odd ones.
    let mut events = std::collections::BTreeSet::new();
    while let Some(event) = flags.next_within(Duration::from_secs(2)).await {
        let id = event.body["response_id"].as_str().unwrap().to_owned();
        let kind = event.body["type"].as_str().unwrap().to_owned();
        events.insert((id, kind, event.body["revision"].as_u64().unwrap()));
    }
    let expected: std::collections::BTreeSet<_> = (0..60)
        .filter(|i| i % 2 == 0)
        .flat_map(|i| {
            [
                (format!("m-{i}"), "flagged".to_owned(), 1),
                (format!("m-{i}"), "cleared".to_owned(), 2),
            ]
        })
        .collect();
    assert_eq!(events, expected);
    pipeline.stop().await;
}
