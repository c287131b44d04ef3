use serde_json::{Value, json};
use sheets_emulator::Faults;

use crate::helpers::{Pipeline, envelope, rows_by_id};

const TAB: &str = "household-finance";
const BATCH: &str = "/v1/forms/household-finance/responses:batch";

async fn send(pipeline: &Pipeline, total: usize) {
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| envelope(&format!("r-{i}"), 1, 10))
            .collect();
        assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);
    }
}

#[tokio::test]
async fn with_30_percent_of_calls_refused_every_row_lands_once() {
    let pipeline = Pipeline::start().await;
    pipeline.emulator.set_faults(Faults {
        error_rate: 0.3,
        error_status: 429,
        retry_after_seconds: Some(1),
        seed: Some(7),
        ..Faults::default()
    });
    send(&pipeline, 600).await;
    let cells = pipeline.tab_with_rows(TAB, 600).await;
    assert_eq!(rows_by_id(&cells).len(), 600);
    pipeline.stop().await;
}

#[tokio::test]
async fn replies_lost_after_the_write_never_duplicate_a_row() {
    let pipeline = Pipeline::start().await;
    // One reply in four lost after the write was applied (far more than Google ever does).
    pipeline.emulator.set_faults(Faults {
        drop_reply_rate: 0.25,
        seed: Some(7),
        ..Faults::default()
    });
    send(&pipeline, 600).await;
    let cells = pipeline.tab_with_rows(TAB, 600).await;
    assert_eq!(rows_by_id(&cells).len(), 600);
    pipeline.stop().await;
}
