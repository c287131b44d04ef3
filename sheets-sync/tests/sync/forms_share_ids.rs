//! Response ids are unique within a form, not across forms: the seed system used integer
//! ids, so two forms' ids collide. Each form keeps its own response, revision and sheet row,
//! and its own tab.

use std::time::Duration;

use collect_testkit::eventually;
use serde_json::{Value, json};

use super::helpers::{Pipeline, SPREADSHEET, envelope, rows_by_id};

fn visits_form() -> Value {
    json!({
        "title": "Store visits",
        "questions": [{"id": "visits", "label": "How many visits?", "type": "integer"}],
        "sheet": {"tab": "visits"}
    })
}

async fn accepted(pipeline: &Pipeline, path: &str, response: Value) {
    let answer = pipeline.post(path, &response).await;
    assert_eq!(answer.status(), 202, "{response}");
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

/// A tab is one form's. ingest refuses a second form naming a tab of the same spreadsheet, but
/// cannot tell when one names the default spreadsheet by its id and the other names none (only
/// sheets-sync knows the default), nor stop two `PUT`s racing; and forms stored before it
/// checked may share a tab. sheets-sync writes such a tab only for the form created first:
/// the other's rows wait, its sheet route says why, and they flow once it names another tab.
#[tokio::test]
async fn a_tab_two_forms_name_is_written_only_for_the_first() {
    let pipeline = Pipeline::start().await;
    let household = "/v1/forms/household-finance/responses";
    let visits = "/v1/forms/visits/responses";
    accepted(&pipeline, household, envelope("r-1", 5, 8000)).await;
    pipeline.tab_with_rows("household-finance", 1).await;
    // The built-in form's tab, in another case, of the default spreadsheet named by its id.
    let mut form = visits_form();
    form["sheet"] = json!({"spreadsheet_id": SPREADSHEET, "tab": "Household-Finance"});
    assert_eq!(pipeline.put("/v1/forms/visits", &form).await.status(), 201);
    for (id, count) in [("r-1", 3), ("r-2", 4)] {
        accepted(&pipeline, visits, visit(id, 9, count)).await;
    }
    let (_, sheet) = eventually(Duration::from_secs(30), "visits failing", || async {
        let (status, body) = pipeline.get("/v1/forms/visits/sheet").await;
        (status == 200 && body["status"] == "failing" && body["rows_waiting"] == 2)
            .then_some((status, body))
    })
    .await;
    assert_eq!(sheet["failure"]["about_this_sheet"], true, "{sheet}");
    assert_eq!(sheet["failure"]["tab"], "Household-Finance", "{sheet}");
    let reason = sheet["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("form household-finance"), "{reason}");
    // The first form's rows still flow, and its tab holds only its own.
    accepted(&pipeline, household, envelope("r-1", 6, 9000)).await;
    accepted(&pipeline, household, envelope("r-3", 1, 100)).await;
    let cells = eventually(Duration::from_secs(30), "household's rows", || async {
        let cells = pipeline.tab("household-finance");
        (cells.len() == 3 && rows_by_id(&cells)["r-1"][1] == json!(6)).then_some(cells)
    })
    .await;
    assert_eq!(cells[0][0], json!("response_id"));
    assert!(
        !cells[0].contains(&json!("How many visits?")),
        "{:?}",
        cells[0]
    );
    let titles = pipeline.emulator.tab_titles(SPREADSHEET).unwrap();
    let named = titles
        .iter()
        .filter(|title| title.to_lowercase() == "household-finance");
    assert_eq!(named.count(), 1, "{titles:?}");

    // Given a tab of its own, the second form's rows land there.
    form["sheet"]["tab"] = json!("visits");
    assert_eq!(pipeline.put("/v1/forms/visits", &form).await.status(), 200);
    let visit_rows = rows_by_id(&pipeline.tab_with_rows("visits", 2).await);
    assert_eq!(
        (&visit_rows["r-1"][1], &visit_rows["r-2"][1]),
        (&json!(9), &json!(9))
    );
    let household_rows = rows_by_id(&pipeline.tab("household-finance"));
    assert_eq!(household_rows.len(), 2);
    assert_eq!(household_rows["r-1"][1], json!(6));
    eventually(Duration::from_secs(30), "visits writing", || async {
        let (_, body) = pipeline.get("/v1/forms/visits/sheet").await;
        (body["status"] == "writing" && body["rows_waiting"] == 0).then_some(())
    })
    .await;
    pipeline.stop().await;
}
