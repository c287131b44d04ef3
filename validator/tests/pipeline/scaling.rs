use serde_json::{Value, json};

use super::helpers::{Pipeline, start_validator, validator_config};

#[tokio::test]
async fn two_validators_store_every_response_once_at_its_latest_revision() {
    let mut pipeline = Pipeline::start_with(2).await;
    let _ = &mut pipeline;
    let total = 300;
    // Every response in three revisions, sent newest first for some, oldest first for others.
    let envelope = |i: usize, revision: u64| {
        let savings = if revision == 3 { 1000 } else { -1 };
        json!({
            "response_id": format!("r-{i}"),
            "revision": revision,
            "collector": {"user_id": format!("u-{}", i % 7)},
            "answers": {"name": "n", "gender": "g", "age": 30, "monthly_income": 50000,
                        "monthly_savings": savings, "monthly_expenditure": 30000, "food": 1,
                        "cable": 1, "healthcare": 1, "fuel": 1}
        })
    };
    let mut batch: Vec<Value> = Vec::new();
    for i in 0..total {
        let order: [u64; 3] = if i % 2 == 0 { [1, 2, 3] } else { [3, 1, 2] };
        batch.extend(order.iter().map(|revision| envelope(i, *revision)));
    }
    for chunk in batch.chunks(900) {
        let response = pipeline
            .post("/v1/forms/household-finance/responses:batch", &json!(chunk))
            .await;
        assert_eq!(response.status(), 202);
    }

    for i in 0..total {
        let stored = pipeline.stored(&format!("r-{i}"), 3).await;
        assert_eq!(stored["status"], "valid", "r-{i}");
    }
    let pool = collect_testkit::database_pool(&pipeline.database_url).await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT response_id) FROM responses")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (total as i64, total as i64));
    let not_latest =
        collect_testkit::count(&pool, "SELECT count(*) FROM responses WHERE revision <> 3")
            .await
            .unwrap();
    assert_eq!(not_latest, 0);
    pool.close().await;

    // A third one joining late is harmless.
    let extra = start_validator(validator_config(
        &pipeline.namespace,
        &pipeline.database_url,
        &collect_testkit::amqp_url(),
    ))
    .await;
    extra.stop().await;
    pipeline.stop().await;
}
