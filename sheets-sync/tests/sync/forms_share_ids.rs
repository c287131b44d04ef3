//! Response ids are unique within a form, not across forms: the seed system used integer
//! ids, so two forms' ids collide. Each form keeps its own response, revision and sheet row.

use serde_json::{Value, json};

use super::helpers::{Pipeline, envelope, rows_by_id};

fn visits_form() -> Value {
    json!({
        "title": "Store visits",
        "questions": [{"id": "visits", "label": "How many visits?", "type": "integer"}],
        "sheet": {"tab": "visits"}
    })
}

fn visit(response_id: &str, revision: u64, visits: u64) -> Value {
    json!({"response_id": response_id, "revision": revision, "collector": {"user_id": "u-2"},
           "answers": {"visits": visits}})
}

#[tokio::test]
async fn the_same_response_id_in_two_forms_is_two_responses_with_their_own_rows() {
    let pipeline = Pipeline::start().await;
    assert_eq!(
        pipeline
            .put("/v1/forms/visits", &visits_form())
            .await
            .status(),
        201
    );
    let household = "/v1/forms/household-finance/responses";
    let visits = "/v1/forms/visits/responses";
    // r-1: the second form's at a higher revision (it used to move the first form's response).
    assert_eq!(
        pipeline
            .post(household, &envelope("r-1", 5, 8000))
            .await
            .status(),
        202
    );
    let tab = pipeline.tab_with_rows("household-finance", 1).await;
    assert_eq!(rows_by_id(&tab)["r-1"][1], json!(5));
    assert_eq!(
        pipeline.post(visits, &visit("r-1", 9, 3)).await.status(),
        202
    );
    // r-2: the second form's at a lower revision (it used to be dropped as stale).
    assert_eq!(
        pipeline
            .post(household, &envelope("r-2", 7, 8000))
            .await
            .status(),
        202
    );
    pipeline.tab_with_rows("household-finance", 2).await;
    assert_eq!(
        pipeline.post(visits, &visit("r-2", 1, 4)).await.status(),
        202
    );
    // An id only one form has.
    assert_eq!(
        pipeline.post(visits, &visit("r-3", 1, 5)).await.status(),
        202
    );
    let visit_rows = rows_by_id(&pipeline.tab_with_rows("visits", 3).await);
    assert_eq!(visit_rows["r-1"][1], json!(9));
    assert_eq!(visit_rows["r-2"][1], json!(1));

    // A correction of the first form's r-1 rewrites its row, not the other form's.
    assert_eq!(
        pipeline
            .post(household, &envelope("r-1", 6, 9000))
            .await
            .status(),
        202
    );
    let household_rows = rows_by_id(
        &super::helpers::eventually_tab(&pipeline, "household-finance", |rows| {
            rows.len() == 3 && rows_by_id(rows)["r-1"][1] == json!(6)
        })
        .await,
    );
    assert_eq!(household_rows.len(), 2);
    assert_eq!(household_rows["r-2"][1], json!(7));
    let visit_rows = rows_by_id(&pipeline.tab("visits"));
    assert_eq!(visit_rows.len(), 3);
    assert_eq!(visit_rows["r-1"][1], json!(9));

    for (form, id, revision, tab) in [
        ("household-finance", "r-1", 6, "household-finance"),
        ("visits", "r-1", 9, "visits"),
        ("visits", "r-2", 1, "visits"),
        ("household-finance", "r-2", 7, "household-finance"),
    ] {
        let (status, body) = pipeline
            .get(&format!("/v1/forms/{form}/responses/{id}"))
            .await;
        assert_eq!(status, 200, "{form}/{id}: {body}");
        assert_eq!(
            (&body["form_id"], &body["revision"], &body["sheet"]["tab"]),
            (&json!(form), &json!(revision), &json!(tab)),
            "{body}"
        );
    }
    let (_, body) = pipeline.get("/v1/forms/visits/responses/r-1").await;
    assert_eq!(body["answers"], json!({"visits": 3}));

    // The route without the form answers where the id is unambiguous, and says when it is not.
    let (status, body) = pipeline.get("/v1/responses/r-3").await;
    assert_eq!((status, &body["form_id"]), (200, &json!("visits")));
    let (status, body) = pipeline.get("/v1/responses/r-1").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "ambiguous_response");
    assert_eq!(body["error"]["field"], "response_id");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("household-finance, visits"), "{message}");
    let (status, body) = pipeline.get("/v1/forms/visits/responses/r-404").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_response"))
    );
    let (status, body) = pipeline.get("/v1/forms/no-such-form/responses/r-1").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_form"))
    );
    pipeline.stop().await;
}
