//! Sheets that people use: they sort the tab, clear and delete rows, add columns of their own,
//! copy rows, delete or empty the tab. A response's row is found by its `response_id`, never
//! by a row number alone; a person's cells are never written; a lost tab is refilled.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::helpers::{Pipeline, SPREADSHEET, column, envelope, eventually_tab, send};

const TAB: &str = "household-finance";
const BATCH: &str = "/v1/forms/household-finance/responses:batch";
const SAVINGS: &str = "what is the monthly savings?";

/// `'household-finance'!<cells>`.
fn range(cells: &str) -> String {
    format!("'{TAB}'!{cells}")
}

/// How many rows hold each response id (column `response_id`, wherever it is).
fn id_counts(cells: &[Vec<Value>]) -> HashMap<String, usize> {
    let at = column(&cells[0], "response_id");
    let mut counts = HashMap::new();
    for row in &cells[1..] {
        if let Some(Value::String(id)) = row.get(at) {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// The rows by response id (the first row of each), with their row numbers (1-based).
fn rows_by_id(cells: &[Vec<Value>]) -> HashMap<String, (usize, Vec<Value>)> {
    let at = column(&cells[0], "response_id");
    let mut rows = HashMap::new();
    for (index, row) in cells.iter().enumerate().skip(1) {
        if let Some(Value::String(id)) = row.get(at) {
            rows.entry(id.clone()).or_insert((index + 1, row.clone()));
        }
    }
    rows
}

/// Every id of `expected` exactly once, at its revision, and no other id.
fn holds_exactly(cells: &[Vec<Value>], expected: &HashMap<String, u64>) -> bool {
    if cells.is_empty() || !cells[0].contains(&json!("response_id")) {
        return false;
    }
    let counts = id_counts(cells);
    let revision = column(&cells[0], "revision");
    let rows = rows_by_id(cells);
    counts.len() == expected.len()
        && counts.values().all(|count| *count == 1)
        && expected.iter().all(|(id, wanted)| {
            rows.get(id)
                .is_some_and(|(_, row)| row.get(revision) == Some(&json!(wanted)))
        })
}

async fn post(pipeline: &Pipeline, batch: Vec<Value>) {
    assert_eq!(pipeline.post(BATCH, &json!(batch)).await.status(), 202);
}

/// r-0 to r-2 (savings 100) posted and in the tab: the tab's cells.
async fn three_rows(pipeline: &Pipeline) -> Vec<Vec<Value>> {
    post(
        pipeline,
        (0..3)
            .map(|i| envelope(&format!("r-{i}"), 1, 100))
            .collect(),
    )
    .await;
    pipeline.tab_with_rows(TAB, 3).await
}

/// r-1 is corrected (savings 100 → 900, a new flag-free revision), r-3 is new (after r-0 to
/// r-2 at revision 1): the revisions the tab should then hold.
async fn correct_r1_and_add_r3(pipeline: &Pipeline) -> HashMap<String, u64> {
    post(
        pipeline,
        vec![envelope("r-1", 2, 900), envelope("r-3", 1, 100)],
    )
    .await;
    [("r-0", 1), ("r-1", 2), ("r-2", 1), ("r-3", 1)]
        .into_iter()
        .map(|(id, revision)| (id.to_owned(), revision))
        .collect()
}

#[tokio::test]
async fn rows_sorted_cleared_and_deleted_by_a_person_are_found_by_response_id() {
    let pipeline = Pipeline::start().await;
    // Savings 100 × i, so sorting by savings (descending) reverses them.
    post(
        &pipeline,
        (0..10)
            .map(|i| envelope(&format!("r-{i}"), 1, 100 * i))
            .collect(),
    )
    .await;
    let cells = pipeline.tab_with_rows(TAB, 10).await;
    let header = cells[0].clone();
    let sheet_id = pipeline.emulator.sheet_id(SPREADSHEET, TAB).unwrap();

    // A person sorts the data rows by savings, descending: r-9 in row 2 ... r-0 in row 11.
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {
                "range": {"sheetId": sheet_id, "startRowIndex": 1, "endRowIndex": 11,
                          "startColumnIndex": 0, "endColumnIndex": header.len()},
                "sortSpecs": [{"dimensionIndex": column(&header, SAVINGS), "sortOrder": "DESCENDING"}]
            }})],
        )
        .unwrap();
    let sorted = pipeline.tab(TAB);
    let order: Vec<&Value> = sorted[1..].iter().map(|row| &row[0]).collect();
    assert_eq!(order[0], "r-9");
    assert_eq!(order[9], "r-0");
    // Clears row 5 (r-6), then deletes row 3 (r-8).
    assert_eq!(sorted[4][0], "r-6");
    assert_eq!(sorted[2][0], "r-8");
    pipeline
        .emulator
        .clear_values(SPREADSHEET, &range("5:5"))
        .unwrap();
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"deleteDimension": {"range": {
                "sheetId": sheet_id, "dimension": "ROWS", "startIndex": 2, "endIndex": 3
            }}})],
        )
        .unwrap();

    // Five corrections (the deleted and the cleared response among them) and five new ones,
    // together: the new rows go into the gap the cleared row left (values.append inserts
    // there), moving every row below it.
    let corrected = ["r-8", "r-6", "r-9", "r-3", "r-0"];
    let mut batch: Vec<Value> = corrected.iter().map(|id| envelope(id, 2, 5000)).collect();
    batch.extend((10..15).map(|i| envelope(&format!("r-{i}"), 1, 100 * i)));
    post(&pipeline, batch).await;

    let mut expected: HashMap<String, u64> = (0..15).map(|i| (format!("r-{i}"), 1)).collect();
    for id in corrected {
        expected.insert(id.into(), 2);
    }
    let cells = eventually_tab(&pipeline, TAB, |cells| holds_exactly(cells, &expected)).await;
    assert_eq!(cells[0], header, "the header is intact in row 1");
    let rows = rows_by_id(&cells);
    let savings = column(&header, SAVINGS);
    for i in 0..15 {
        let id = format!("r-{i}");
        let (_, row) = &rows[&id];
        let wanted = if corrected.contains(&id.as_str()) {
            5000
        } else {
            100 * i
        };
        assert_eq!(row[savings], json!(wanted), "{id}");
        assert_eq!(row[column(&header, "status")], "valid", "{id}");
        assert_eq!(row[column(&header, "name")], "Asha", "{id}");
    }

    // The rows the appends moved are corrected where they are now.
    post(
        &pipeline,
        vec![
            envelope("r-1", 3, 7000),
            envelope("r-5", 3, 7001),
            envelope("r-12", 3, 7002),
        ],
    )
    .await;
    for id in ["r-1", "r-5", "r-12"] {
        expected.insert(id.into(), 3);
    }
    let cells = eventually_tab(&pipeline, TAB, |cells| holds_exactly(cells, &expected)).await;
    assert_eq!(cells[0], header);
    let rows = rows_by_id(&cells);
    assert_eq!(rows["r-1"].1[savings], json!(7000));
    assert_eq!(rows["r-5"].1[savings], json!(7001));
    assert_eq!(rows["r-12"].1[savings], json!(7002));
    assert_eq!(rows["r-2"].1[savings], json!(200));
    pipeline.stop().await;
}

#[tokio::test]
async fn a_column_a_person_adds_keeps_its_values() {
    let pipeline = Pipeline::start().await;
    let cells = three_rows(&pipeline).await;
    let collect_header = cells[0].clone();
    let sheet_id = pipeline.emulator.sheet_id(SPREADSHEET, TAB).unwrap();
    let (_, columns) = pipeline.emulator.grid_size(SPREADSHEET, TAB).unwrap();
    assert_eq!(
        columns as usize,
        collect_header.len(),
        "a new tab is only as wide as its header"
    );

    // A person inserts "reviewer notes" between status and flags (column D), and adds
    // "checked by" after Collect's last column; writes in both for r-1's row.
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![
                json!({"insertDimension": {"range": {
                    "sheetId": sheet_id, "dimension": "COLUMNS", "startIndex": 3, "endIndex": 4
                }, "inheritFromBefore": true}}),
                json!({"appendDimension": {"sheetId": sheet_id, "dimension": "COLUMNS", "length": 1}}),
            ],
        )
        .unwrap();
    let last = sheets_emulator_column(collect_header.len() + 1);
    let row = rows_by_id(&pipeline.tab(TAB))["r-1"].0;
    for (cell, text) in [
        ("D1".to_owned(), "reviewer notes"),
        (format!("{last}1"), "checked by"),
        (format!("D{row}"), "called her back, income confirmed"),
        (format!("{last}{row}"), "Ravi"),
    ] {
        pipeline
            .emulator
            .update_values(SPREADSHEET, &range(&cell), vec![vec![json!(text)]])
            .unwrap();
    }

    let expected = correct_r1_and_add_r3(&pipeline).await;
    let cells = eventually_tab(&pipeline, TAB, |cells| holds_exactly(cells, &expected)).await;
    let header = &cells[0];
    let mut wanted_header = collect_header.clone();
    wanted_header.insert(3, json!("reviewer notes"));
    wanted_header.push(json!("checked by"));
    assert_eq!(
        header, &wanted_header,
        "the person's columns stay where they are"
    );
    let rows = rows_by_id(&cells);
    let (at, corrected) = &rows["r-1"];
    assert_eq!(*at, row, "corrected in place");
    assert_eq!(corrected[3], "called her back, income confirmed");
    assert_eq!(corrected[header.len() - 1], "Ravi");
    assert_eq!(corrected[column(header, "revision")], json!(2));
    assert_eq!(corrected[column(header, SAVINGS)], json!(900));
    assert_eq!(corrected[column(header, "flags")], "");
    assert_eq!(corrected[column(header, "location")], "Pune");
    // The other rows' cells of the person's columns stay empty; Collect's are right.
    let (_, new) = &rows["r-3"];
    assert_eq!(new.get(3).cloned().unwrap_or(json!("")), "");
    assert_eq!(new[column(header, SAVINGS)], json!(100));
    assert_eq!(new[column(header, "status")], "valid");
    pipeline.stop().await;
}

/// `0` → `A` (as the emulator's and Google's A1 notation).
fn sheets_emulator_column(index: usize) -> String {
    let mut index = index + 1;
    let mut letters = Vec::new();
    while index > 0 {
        letters.push(b'A' + ((index - 1) % 26) as u8);
        index = (index - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap()
}

#[tokio::test]
async fn a_copied_row_is_left_alone_and_the_topmost_updated() {
    let pipeline = Pipeline::start().await;
    let cells = three_rows(&pipeline).await;
    let header = cells[0].clone();
    // A person copies r-0's row below the table, then sorts the data by response_id
    // descending, so the recorded row numbers are all wrong.
    let copy = cells
        .iter()
        .find(|row| row[0] == "r-0")
        .expect("r-0 in the tab")
        .clone();
    pipeline
        .emulator
        .update_values(SPREADSHEET, &range("A5"), vec![copy.clone()])
        .unwrap();
    let sheet_id = pipeline.emulator.sheet_id(SPREADSHEET, TAB).unwrap();
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {
                "range": {"sheetId": sheet_id, "startRowIndex": 1, "endRowIndex": 5,
                          "startColumnIndex": 0, "endColumnIndex": header.len()},
                "sortSpecs": [{"dimensionIndex": 0, "sortOrder": "DESCENDING"}]
            }})],
        )
        .unwrap();
    // r-2, r-1, r-0, r-0 (the copy).
    post(&pipeline, vec![envelope("r-0", 2, 900)]).await;
    let savings = column(&header, SAVINGS);
    let cells = eventually_tab(&pipeline, TAB, |cells| {
        cells.get(3).and_then(|row| row.get(1)) == Some(&json!(2))
    })
    .await;
    assert_eq!(cells.len(), 5, "nothing appended");
    assert_eq!(cells[3][0], "r-0");
    assert_eq!(cells[3][savings], json!(900), "the topmost row is updated");
    assert_eq!(cells[4], copy, "the copy is left as it is");
    assert_eq!(cells[1][0], "r-2");
    assert_eq!(cells[2][0], "r-1");
    pipeline.stop().await;
}

/// 1,200 responses in the tab; `lose` does to the tab what a person does; a correction of
/// r-5 follows. Afterwards the tab holds its header and each of the 1,200 once.
async fn lose_the_tab_and_get_it_back(lose: impl FnOnce(&Pipeline)) {
    let pipeline = Pipeline::start().await;
    let total = 1200;
    send(&pipeline, total).await;
    let cells = pipeline.tab_with_rows(TAB, total).await;
    let header = cells[0].clone();

    lose(&pipeline);
    post(&pipeline, vec![envelope("r-5", 2, 900)]).await;

    let mut expected: HashMap<String, u64> = (0..total).map(|i| (format!("r-{i}"), 1)).collect();
    expected.insert("r-5".into(), 2);
    let cells = eventually_tab(&pipeline, TAB, |cells| {
        cells.len() == total + 1 && holds_exactly(cells, &expected)
    })
    .await;
    assert_eq!(cells[0], header);
    let rows = rows_by_id(&cells);
    let savings = column(&header, SAVINGS);
    assert_eq!(rows["r-5"].1[savings], json!(900));
    assert_eq!(rows["r-1199"].1[savings], json!(10));
    assert_eq!(rows["r-1199"].1[column(&header, "location")], "Pune");
    // Large enough for its rows, no wider than its header.
    let (grid_rows, grid_columns) = pipeline.emulator.grid_size(SPREADSHEET, TAB).unwrap();
    assert!(grid_rows > total as u64, "{grid_rows} rows");
    assert!(grid_columns >= header.len() as u64);

    // The spreadsheet's cells are exported for the 10-million-cell alert.
    let metrics = pipeline.sheets_sync_metrics().await;
    assert!(
        metrics
            .lines()
            .any(|line| line
                .starts_with("collect_sheets_spreadsheet_cells{spreadsheet_id=\"sheet-1\"}")),
        "{metrics}"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_tab_a_person_deleted_is_recreated_and_refilled() {
    lose_the_tab_and_get_it_back(|pipeline| pipeline.delete_tab(TAB)).await;
}

#[tokio::test]
async fn a_tab_a_person_emptied_is_refilled() {
    lose_the_tab_and_get_it_back(|pipeline| {
        pipeline
            .emulator
            .clear_values(SPREADSHEET, &format!("'{TAB}'"))
            .unwrap();
        assert!(pipeline.tab(TAB).is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_deleted_header_row_is_written_back() {
    let pipeline = Pipeline::start().await;
    let cells = three_rows(&pipeline).await;
    let header = cells[0].clone();
    let sheet_id = pipeline.emulator.sheet_id(SPREADSHEET, TAB).unwrap();
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"deleteDimension": {"range": {
                "sheetId": sheet_id, "dimension": "ROWS", "startIndex": 0, "endIndex": 1
            }}})],
        )
        .unwrap();
    post(
        &pipeline,
        vec![envelope("r-2", 2, 900), envelope("r-3", 1, 100)],
    )
    .await;
    let expected: HashMap<String, u64> = [("r-0", 1), ("r-1", 1), ("r-2", 2), ("r-3", 1)]
        .into_iter()
        .map(|(id, revision)| (id.to_owned(), revision))
        .collect();
    let cells = eventually_tab(&pipeline, TAB, |cells| holds_exactly(cells, &expected)).await;
    assert_eq!(cells[0], header);
    assert_eq!(cells.len(), 5);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_tab_a_person_renamed_in_another_case_is_still_the_forms_tab() {
    // Google's tab names are unique whatever their case:
    // `household-finance` renamed `Household-Finance` is the same tab, not a lost one (it
    // cannot be created again beside it). The tab is looked up before every batch here.
    let pipeline = Pipeline::start_with(false)
        .await
        .with_sheets_sync(|config| config.tab_check_ms = 0)
        .await;
    let header = three_rows(&pipeline).await[0].clone();
    let sheet_id = pipeline.emulator.sheet_id(SPREADSHEET, TAB).unwrap();
    pipeline
        .emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"updateSheetProperties": {
                "properties": {"sheetId": sheet_id, "title": "Household-Finance"},
                "fields": "title",
            }})],
        )
        .unwrap();

    let expected = correct_r1_and_add_r3(&pipeline).await;
    let cells = eventually_tab(&pipeline, "Household-Finance", |cells| {
        cells.len() == 5 && holds_exactly(cells, &expected)
    })
    .await;
    assert_eq!(cells[0], header);
    assert_eq!(
        rows_by_id(&cells)["r-1"].1[column(&header, SAVINGS)],
        json!(900)
    );
    let titles = pipeline.emulator.tab_titles(SPREADSHEET).unwrap();
    assert!(
        titles.contains(&"Household-Finance".to_owned()),
        "{titles:?}"
    );
    assert!(
        !titles.contains(&TAB.to_owned()),
        "the person's name is kept: {titles:?}"
    );
    assert_eq!(
        pipeline.emulator.sheet_id(SPREADSHEET, "Household-Finance"),
        Some(sheet_id)
    );
    let (_, status) = pipeline.get("/v1/forms/household-finance/sheet").await;
    assert_eq!(status["status"], "writing", "{status}");
    assert_eq!(status["rows_waiting"], 0, "{status}");
    pipeline.stop().await;
}
