use std::time::Duration;

use serde_json::{Value, json};

use sheets_emulator::Cell;

use super::helpers::{Pipeline, SPREADSHEET, column, envelope, rows_by_id};

const TAB: &str = "household-finance";
const BATCH: &str = "/v1/forms/household-finance/responses:batch";

#[tokio::test]
async fn every_response_is_one_row_with_its_cells_in_column_order() {
    let pipeline = Pipeline::start().await;
    let total = 500;
    let batch: Vec<Value> = (0..total)
        .map(|i| envelope(&format!("r-{i}"), 1, 8000))
        .collect();
    assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);

    let cells = pipeline.tab_with_rows(TAB, total).await;
    let header = &cells[0];
    let expected_header: Vec<Value> = [
        "response_id",
        "revision",
        "status",
        "flags",
        "response_family_id",
        "user_id",
        "username",
        "location",
        "submitted_time",
        "synced_time",
        "last_modified_time",
        "name",
        "email",
        "mobile_number",
        "gender",
        "age",
        "what is the monthly income?",
        "what is the monthly savings?",
        "what is the monthly expenditure?",
        "How much money do you spend monthly on food?",
        "How much money do you spend monthly on your cable service?",
        "How much money do you spend monthly on healthcare?",
        "How much money do you spend monthly on fuel for your car?",
    ]
    .iter()
    .map(|name| json!(name))
    .collect();
    assert_eq!(header, &expected_header);
    let rows = rows_by_id(&cells);
    assert_eq!(rows.len(), total);
    let row = &rows["r-7"];
    for (name, value) in [
        ("revision", json!(1)),
        ("status", json!("valid")),
        ("user_id", json!("u-1")),
        ("username", json!("asha")),
        ("location", json!("Pune")),
        ("name", json!("Asha")),
        ("age", json!(34)),
        ("what is the monthly income?", json!(52000)),
        ("what is the monthly savings?", json!(8000)),
        (
            "How much money do you spend monthly on fuel for your car?",
            json!(3000),
        ),
    ] {
        assert_eq!(row[column(header, name)], value, "{name}");
    }

    // The response knows its row.
    let (_, stored) = pipeline.get("/v1/responses/r-7").await;
    let position = &stored["sheet"];
    assert_eq!(position["spreadsheet_id"], SPREADSHEET);
    assert_eq!(position["tab"], TAB);
    let row_number = position["row"].as_u64().unwrap() as usize;
    assert_eq!(cells[row_number - 1][0], "r-7");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_formula_stays_text_and_a_correction_rewrites_its_row() {
    let pipeline = Pipeline::start().await;
    let formula = r#"=IMPORTXML("http://x","//a")"#;
    let mut first = envelope("r-1", 1, -1);
    first["answers"]["name"] = json!(formula);
    let batch = json!([first, envelope("r-2", 1, 5)]);
    assert_eq!(pipeline.post(BATCH, &batch).await.status(), 202);
    let cells = pipeline.tab_with_rows(TAB, 2).await;
    let header = cells[0].clone();
    let rows = rows_by_id(&cells);
    assert_eq!(rows["r-1"][column(&header, "name")], json!(formula));
    // Stored as text (RAW), not as a live formula.
    let stored = pipeline.emulator.tab_cells(SPREADSHEET, TAB).unwrap();
    let row = stored
        .iter()
        .find(|row| row.first() == Some(&Cell::Text("r-1".into())))
        .unwrap();
    assert_eq!(row[column(&header, "name")], Cell::Text(formula.into()));
    assert_eq!(rows["r-1"][column(&header, "status")], "flagged");
    assert!(
        rows["r-1"][column(&header, "flags")]
            .as_str()
            .unwrap()
            .starts_with("savings_within_surplus: ")
    );

    // The correction overwrites the row in place.
    let position = cells.iter().position(|row| row[0] == "r-1").unwrap();
    let mut fixed = envelope("r-1", 2, 100);
    fixed["answers"]["name"] = json!("Asha");
    assert_eq!(pipeline.post(BATCH, &json!([fixed])).await.status(), 202);
    let cells =
        collect_testkit::eventually(Duration::from_secs(30), "the row rewritten", || async {
            let cells = pipeline.tab(TAB);
            (cells.get(position)?.get(1)? == &json!(2)).then_some(cells)
        })
        .await;
    assert_eq!(cells.len(), 3, "no row added");
    let row = &cells[position];
    assert_eq!(row[0], "r-1");
    assert_eq!(row[column(&header, "status")], "valid");
    assert_eq!(row[column(&header, "name")], "Asha");
    assert_eq!(
        row[column(&header, "what is the monthly savings?")],
        json!(100)
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_question_added_to_the_form_becomes_a_new_column() {
    let pipeline = Pipeline::start().await;
    let mut form = json!({
        "title": "Visits",
        "questions": [{"id": "visits", "label": "Visits", "type": "integer", "required": true}],
        "sheet": {"tab": "Store visits"}
    });
    assert_eq!(pipeline.put("/v1/forms/visits", &form).await.status(), 201);
    let route = "/v1/forms/visits/responses";
    let submit = |id: &str, answers: Value| json!({"response_id": id, "collector": {"user_id": "u"}, "answers": answers});
    assert_eq!(
        pipeline
            .post(route, &submit("v-1", json!({"visits": 3})))
            .await
            .status(),
        202
    );
    let cells = pipeline.tab_with_rows("Store visits", 1).await;
    assert_eq!(cells[0].last().unwrap(), "Visits");

    form["questions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "spend", "label": "Spend", "type": "number"}));
    assert_eq!(pipeline.put("/v1/forms/visits", &form).await.status(), 200);
    // Until the validator sees version 2 (within seconds), responses are checked against 1.
    let mut attempt = 0;
    let cells = collect_testkit::eventually(Duration::from_secs(30), "the new column", || {
        attempt += 1;
        let pipeline = &pipeline;
        async move {
            let id = format!("v-{}", attempt + 1);
            let body = submit(&id, json!({"visits": 1, "spend": 12.5}));
            assert_eq!(pipeline.post(route, &body).await.status(), 202);
            let cells = pipeline.tab_with_rows("Store visits", attempt + 1).await;
            let row = cells.iter().find(|row| row[0] == json!(id))?.clone();
            (row.last() == Some(&json!(12.5))).then_some(cells)
        }
    })
    .await;
    assert_eq!(cells[0][cells[0].len() - 2], "Visits");
    assert_eq!(cells[0].last().unwrap(), "Spend");
    pipeline.stop().await;
}

#[tokio::test]
async fn an_export_rewrites_the_sheet_from_the_database_without_duplicates() {
    let pipeline = Pipeline::start().await;
    let batch: Vec<Value> = (0..50)
        .map(|i| envelope(&format!("r-{i}"), 1, 10))
        .collect();
    assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);
    pipeline.tab_with_rows(TAB, 50).await;

    let response = pipeline
        .post("/google-sheet", &json!({"table_name": TAB}))
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"form_id": TAB, "responses": 50, "status": "queued"})
    );
    let response = pipeline
        .post("/v1/forms/household-finance/sheet:export", &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let cells = pipeline.tab_with_rows(TAB, 50).await;
    assert_eq!(rows_by_id(&cells).len(), 50);

    let response = pipeline
        .post("/google-sheet", &json!({"table_name": "nope"}))
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["field"],
        "table_name"
    );
    let response = pipeline.post("/google-sheet", &json!({"table": TAB})).await;
    assert_eq!(response.status(), 422);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_form_wider_than_a_new_tab_gets_all_its_columns() {
    let pipeline = Pipeline::start().await;
    let questions: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("q{i}"), "label": format!("Question {i}"), "type": "number"}))
        .collect();
    let form = json!({"title": "Wide", "questions": questions});
    assert_eq!(pipeline.put("/v1/forms/wide", &form).await.status(), 201);
    let answers: serde_json::Map<String, Value> =
        (0..30).map(|i| (format!("q{i}"), json!(i))).collect();
    let body = json!({"response_id": "w-1", "collector": {"user_id": "u"}, "answers": answers});
    assert_eq!(
        pipeline
            .post("/v1/forms/wide/responses", &body)
            .await
            .status(),
        202
    );
    let cells = pipeline.tab_with_rows("wide", 1).await;
    assert_eq!(cells[0].len(), 34);
    assert_eq!(cells[0][33], "Question 29");
    assert_eq!(cells[1][33], json!(29));
    pipeline.stop().await;
}
