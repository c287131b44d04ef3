//! What people do to a sheet (sort, insert and delete rows and columns, clear rows, delete or
//! rename tabs), over HTTP and through the in-process methods, with the exact cells after each.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use sheets_emulator::Emulator;
use support::{SPREADSHEET, start};

fn emulator_with(rows: Value) -> Emulator {
    let emulator = Emulator::new();
    emulator.create_spreadsheet(SPREADSHEET);
    emulator
        .update_values(
            SPREADSHEET,
            "Sheet1!A1",
            serde_json::from_value(rows).unwrap(),
        )
        .unwrap();
    emulator
}

fn values(emulator: &Emulator) -> Value {
    json!(emulator.tab_values(SPREADSHEET, "Sheet1").unwrap())
}

#[test]
fn in_process_methods_write_clear_and_describe_tabs() {
    let emulator = Emulator::new();
    emulator.create_spreadsheet(SPREADSHEET);
    assert_eq!(emulator.sheet_id(SPREADSHEET, "Sheet1"), Some(0));
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((1000, 26)));
    assert_eq!(emulator.sheet_id(SPREADSHEET, "Nope"), None);
    assert_eq!(emulator.grid_size("missing", "Sheet1"), None);

    let replies = emulator
        .batch_update(
            SPREADSHEET,
            vec![
                json!({"addSheet": {"properties": {"title": "My tab", "sheetId": 42,
                "gridProperties": {"rowCount": 5, "columnCount": 3}}}}),
            ],
        )
        .unwrap();
    assert_eq!(replies[0]["addSheet"]["properties"]["sheetId"], 42);
    assert_eq!(emulator.sheet_id(SPREADSHEET, "My tab"), Some(42));
    assert_eq!(emulator.grid_size(SPREADSHEET, "My tab"), Some((5, 3)));

    // RAW: "=1+1" and "42" stay text.
    emulator
        .update_values(
            SPREADSHEET,
            "'My tab'!B2",
            vec![
                vec![json!("=1+1"), json!("42")],
                vec![json!(7), json!(true)],
            ],
        )
        .unwrap();
    assert_eq!(
        emulator.tab_values(SPREADSHEET, "My tab").unwrap(),
        vec![
            vec![],
            vec![json!(""), json!("=1+1"), json!("42")],
            vec![json!(""), json!(7), json!(true)]
        ]
    );
    let cells = emulator.tab_cells(SPREADSHEET, "My tab").unwrap();
    assert_eq!(cells[1][1], sheets_emulator::Cell::Text("=1+1".into()));

    emulator
        .clear_values(SPREADSHEET, "'My tab'!B2:C2")
        .unwrap();
    assert_eq!(
        emulator.tab_values(SPREADSHEET, "My tab").unwrap(),
        vec![vec![], vec![], vec![json!(""), json!(7), json!(true)]]
    );

    // Errors are Google's messages.
    assert_eq!(
        emulator.update_values(SPREADSHEET, "'My tab'!A6", vec![vec![json!("x")]]),
        Err("Range ('My tab'!A6) exceeds grid limits. Max rows: 5, max columns: 3".into())
    );
    assert_eq!(
        emulator.update_values(
            SPREADSHEET,
            "Tab!A1:B1",
            vec![vec![json!(1), json!(2), json!(3)]]
        ),
        Err("Unable to parse range: Tab!A1:B1".into())
    );
    assert_eq!(
        emulator.update_values(
            SPREADSHEET,
            "Sheet1!A1:B1",
            vec![vec![json!(1), json!(2), json!(3)]]
        ),
        Err(
            "Requested writing within range ['Sheet1'!A1:B1], but tried writing to column [C]"
                .into()
        )
    );
    assert_eq!(
        emulator.clear_values("missing", "Sheet1"),
        Err("Requested entity was not found.".into())
    );
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![json!({"deleteSheet": {"sheetId": 7}})]),
        Err("Invalid requests[0].deleteSheet: No sheet with id: 7".into())
    );
}

#[test]
fn sort_range_puts_numbers_then_text_then_booleans_and_empty_cells_last() {
    let emulator = emulator_with(json!([
        ["id", "score"],
        ["a", "n/a"],
        ["b", 10],
        ["c", ""],
        ["d", true],
        ["e", -1.5],
        ["f", "Apple"],
        ["g", 10],
    ]));
    // The header row stays out of the range; columns unbounded.
    let sort = |order: &str| {
        json!({"sortRange": {
            "range": {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 8},
            "sortSpecs": [{"dimensionIndex": 1, "sortOrder": order}],
        }})
    };
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![sort("ASCENDING")]),
        Ok(vec![json!({})])
    );
    assert_eq!(
        values(&emulator),
        json!([
            ["id", "score"],
            ["e", -1.5],
            ["b", 10],
            ["g", 10],
            ["f", "Apple"],
            ["a", "n/a"],
            ["d", true],
            ["c"],
        ])
    );
    emulator
        .batch_update(SPREADSHEET, vec![sort("DESCENDING")])
        .unwrap();
    assert_eq!(
        values(&emulator),
        json!([
            ["id", "score"],
            ["d", true],
            ["a", "n/a"],
            ["f", "Apple"],
            ["b", 10],
            ["g", 10],
            ["e", -1.5],
            ["c"],
        ])
    );
}

#[test]
fn sort_range_moves_only_the_range_and_applies_specs_in_order() {
    let emulator = emulator_with(json!([
        ["x", 2, "b", "keep1"],
        ["y", 1, "b", "keep2"],
        ["z", 2, "a", "keep3"],
        ["w", 1, "a", "keep4"],
    ]));
    // A1:C4 only; column D stays put. By B ascending, then C descending.
    emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {
                "range": {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 4,
                          "startColumnIndex": 0, "endColumnIndex": 3},
                "sortSpecs": [
                    {"dimensionIndex": 1, "sortOrder": "ASCENDING"},
                    {"dimensionIndex": 2, "sortOrder": "DESCENDING"},
                ],
            }})],
        )
        .unwrap();
    assert_eq!(
        values(&emulator),
        json!([
            ["y", 1, "b", "keep1"],
            ["w", 1, "a", "keep2"],
            ["x", 2, "b", "keep3"],
            ["z", 2, "a", "keep4"],
        ])
    );
    // Past the grid, or a column outside the range: refused, nothing moves.
    let error = emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {
                "range": {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 1001},
                "sortSpecs": [{"dimensionIndex": 0}],
            }})],
        )
        .unwrap_err();
    assert_eq!(
        error,
        "Invalid requests[0].sortRange: Range ('Sheet1'!A1:Z1001) exceeds grid limits. Max rows: 1000, max columns: 26"
    );
    let error = emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {
                "range": {"sheetId": 0, "startColumnIndex": 0, "endColumnIndex": 2},
                "sortSpecs": [{"dimensionIndex": 3}],
            }})],
        )
        .unwrap_err();
    assert!(
        error.starts_with("Invalid requests[0].sortRange: "),
        "{error}"
    );
    let error = emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {"range": {"sheetId": 9}, "sortSpecs": []}})],
        )
        .unwrap_err();
    assert_eq!(error, "Invalid requests[0].sortRange: No grid with id: 9");
    let error = emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"sortRange": {"range": {"sheetId": 0},
                "sortSpecs": [{"dimensionIndex": 0, "sortOrder": "UP"}]}})],
        )
        .unwrap_err();
    assert_eq!(
        error,
        "Invalid value at 'requests[0].sort_range.sort_specs[0].sort_order' (type.googleapis.com/google.apps.sheets.v4.SortOrder), \"UP\""
    );
}

#[test]
fn delete_dimension_removes_rows_and_columns_and_shrinks_the_grid() {
    let emulator = emulator_with(json!([
        ["h1", "h2", "h3"],
        ["r1", 1, "x"],
        ["r2", 2, "y"],
        ["r3", 3, "z"],
    ]));
    emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"deleteDimension": {"range":
                {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 3}}})],
        )
        .unwrap();
    assert_eq!(
        values(&emulator),
        json!([["h1", "h2", "h3"], ["r3", 3, "z"]])
    );
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((998, 26)));

    emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"deleteDimension": {"range":
                {"sheetId": 0, "dimension": "COLUMNS", "startIndex": 0, "endIndex": 1}}})],
        )
        .unwrap();
    assert_eq!(values(&emulator), json!([["h2", "h3"], [3, "z"]]));
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((998, 25)));

    // Unbounded end: everything from startIndex on.
    emulator
        .batch_update(
            SPREADSHEET,
            vec![json!({"deleteDimension": {"range":
                {"sheetId": 0, "dimension": "ROWS", "startIndex": 1}}})],
        )
        .unwrap();
    assert_eq!(values(&emulator), json!([["h2", "h3"]]));
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((1, 25)));
}

#[test]
fn deleting_every_row_or_rows_past_the_grid_is_refused_and_a_batch_is_all_or_nothing() {
    let emulator = emulator_with(json!([["a"], ["b"], ["c"]]));
    let delete = |dimension: &str, start: Value, end: Value| {
        json!({"deleteDimension": {"range":
            {"sheetId": 0, "dimension": dimension, "startIndex": start, "endIndex": end}}})
    };
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![delete("ROWS", json!(0), json!(1000))]),
        Err(
            "Invalid requests[0].deleteDimension: You can't delete all the rows on the sheet."
                .into()
        )
    );
    assert_eq!(
        emulator.batch_update(
            SPREADSHEET,
            vec![delete("COLUMNS", Value::Null, Value::Null)]
        ),
        Err(
            "Invalid requests[0].deleteDimension: You can't delete all the columns on the sheet."
                .into()
        )
    );
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![delete("ROWS", json!(999), json!(1001))]),
        Err("Invalid requests[0].deleteDimension: Cannot delete a row that doesn't exist. Tried to delete row index 1000 but there are only 1000 rows.".into())
    );
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![delete("ROWS", json!(-1), json!(2))]),
        Err("Invalid requests[0].deleteDimension: DimensionRange indexes must be >= 0".into())
    );
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![delete("ROW", json!(0), json!(1))]),
        Err("Invalid value at 'requests[0].delete_dimension.range.dimension' (type.googleapis.com/google.apps.sheets.v4.Dimension), \"ROW\"".into())
    );
    // The first request is fine, the second is not: neither applies.
    let error = emulator
        .batch_update(
            SPREADSHEET,
            vec![
                delete("ROWS", json!(0), json!(1)),
                delete("COLUMNS", json!(0), json!(27)),
            ],
        )
        .unwrap_err();
    assert_eq!(
        error,
        "Invalid requests[1].deleteDimension: Cannot delete a column that doesn't exist. Tried to delete column index 26 but there are only 26 columns."
    );
    assert_eq!(values(&emulator), json!([["a"], ["b"], ["c"]]));
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((1000, 26)));
}

#[test]
fn insert_dimension_shifts_cells_and_grows_the_grid() {
    let emulator = emulator_with(json!([["h1", "h2"], ["r1", 1], ["r2", 2]]));
    emulator
        .batch_update(
            SPREADSHEET,
            vec![
                json!({"insertDimension": {"range":
                    {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 3},
                    "inheritFromBefore": true}}),
                json!({"insertDimension": {"range":
                    {"sheetId": 0, "dimension": "COLUMNS", "startIndex": 0, "endIndex": 1}}}),
            ],
        )
        .unwrap();
    assert_eq!(
        values(&emulator),
        json!([["", "h1", "h2"], [], [], ["", "r1", 1], ["", "r2", 2]])
    );
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((1002, 27)));

    let insert = |start: Value, end: Value, before: bool| {
        json!({"insertDimension": {"range":
            {"sheetId": 0, "dimension": "ROWS", "startIndex": start, "endIndex": end},
            "inheritFromBefore": before}})
    };
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![insert(json!(1002), json!(1003), false)]),
        Err("Invalid requests[0].insertDimension: range.startIndex must be less than the grid size (1002) if inheritFromBefore is false.".into())
    );
    // At the very end, inheriting from the row before, is how a person adds rows at the bottom.
    emulator
        .batch_update(SPREADSHEET, vec![insert(json!(1002), json!(1003), true)])
        .unwrap();
    assert_eq!(emulator.grid_size(SPREADSHEET, "Sheet1"), Some((1003, 27)));
    let error = emulator
        .batch_update(SPREADSHEET, vec![insert(json!(0), json!(1), true)])
        .unwrap_err();
    assert!(
        error.starts_with(
            "Invalid requests[0].insertDimension: range.startIndex must be greater than 0"
        ),
        "{error}"
    );
    assert_eq!(
        emulator.batch_update(SPREADSHEET, vec![insert(Value::Null, json!(1), false)]),
        Err("Invalid requests[0].insertDimension: range.startIndex must be set".into())
    );
}

#[tokio::test]
async fn a_write_past_the_grid_is_refused_until_append_dimension_grows_it() {
    let server = start().await;
    let (status, reply) = server
        .put(
            "/values/Sheet1!A1001?valueInputOption=RAW",
            json!({"values": [["late"]]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply,
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Range ('Sheet1'!A1001) exceeds grid limits. Max rows: 1000, max columns: 26"}})
    );
    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({"requests": [
                {"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 5}},
                {"appendDimension": {"sheetId": 0, "dimension": "COLUMNS", "length": 1}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"spreadsheetId": SPREADSHEET, "replies": [{}, {}]})
    );
    let (_, described) = server.get("").await;
    assert_eq!(
        described["sheets"][0]["properties"]["gridProperties"],
        json!({"rowCount": 1005, "columnCount": 27})
    );
    let (status, reply) = server
        .put(
            "/values/Sheet1!AA1005?valueInputOption=RAW",
            json!({"values": [["late"]]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let stored = server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap();
    assert_eq!(stored.len(), 1005);
    assert_eq!(stored[1004][26], json!("late"));

    // A person deletes rows: the same write is now past the grid again.
    let (status, _) = server
        .post(
            ":batchUpdate",
            json!({"requests": [{"deleteDimension": {"range":
                {"sheetId": 0, "dimension": "ROWS", "startIndex": 10, "endIndex": 20}}}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = server
        .put(
            "/values/Sheet1!AA1005?valueInputOption=RAW",
            json!({"values": [["again"]]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Range ('Sheet1'!AA1005) exceeds grid limits. Max rows: 995, max columns: 27"
    );
    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({"requests": [{"appendDimension": {"sheetId": 0, "dimension": "ROWS", "length": 0}}]}),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
}

#[tokio::test]
async fn append_after_a_cleared_middle_row_writes_into_the_gap() {
    // Google's append looks for the table from the first value in the range and writes after
    // its last row; an empty row ends the table, so a cleared middle row is where the next
    // append lands (and with INSERT_ROWS the rows below it move down).
    let server = start().await;
    let (status, _) = server
        .put(
            "/values/Sheet1!A1?valueInputOption=RAW",
            json!({"values": [["id", "v"], ["r1", 1], ["r2", 2], ["r3", 3], ["r4", 4]]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = server.post("/values/Sheet1!A3:B3:clear", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"spreadsheetId": SPREADSHEET, "clearedRange": "Sheet1!A3:B3"})
    );
    assert_eq!(
        json!(server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap()),
        json!([["id", "v"], ["r1", 1], [], ["r3", 3], ["r4", 4]])
    );

    // OVERWRITE: the gap is filled.
    let (status, reply) = server
        .post(
            "/values/Sheet1:append?valueInputOption=RAW&insertDataOption=OVERWRITE",
            json!({"values": [["r5", 5]]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["tableRange"], "Sheet1!A1:B2");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A3:B3");
    assert_eq!(
        json!(server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap()),
        json!([["id", "v"], ["r1", 1], ["r5", 5], ["r3", 3], ["r4", 4]])
    );

    // The table now runs to row 5: the next append goes after it.
    let (_, reply) = server.append("Sheet1", json!([["r6", 6]])).await;
    assert_eq!(reply["tableRange"], "Sheet1!A1:B5");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A6:B6");

    // INSERT_ROWS into a gap: new rows go in at the gap and push the rest down.
    server
        .emulator
        .clear_values(SPREADSHEET, "Sheet1!2:2")
        .unwrap();
    let (_, reply) = server
        .append("Sheet1!A:B", json!([["r7", 7], ["r8", 8]]))
        .await;
    assert_eq!(reply["tableRange"], "Sheet1!A1:B1");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A2:B3");
    assert_eq!(
        json!(server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap()),
        json!([
            ["id", "v"],
            ["r7", 7],
            ["r8", 8],
            [],
            ["r5", 5],
            ["r3", 3],
            ["r4", 4],
            ["r6", 6]
        ])
    );
    // INSERT_ROWS added a row for r6 and two for r7 and r8.
    assert_eq!(
        server.emulator.grid_size(SPREADSHEET, "Sheet1"),
        Some((1003, 26))
    );
}

#[tokio::test]
async fn append_to_a_fully_cleared_tab_writes_at_row_1() {
    let server = start().await;
    server
        .append("Sheet1", json!([["id"], ["r1"], ["r2"]]))
        .await;
    let (status, reply) = server.post("/values/Sheet1:clear", json!({})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["clearedRange"], "Sheet1!A1:Z1003");
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        Vec::<Vec<Value>>::new()
    );
    let (_, reply) = server.append("Sheet1!A:Z", json!([["again"]])).await;
    assert!(reply.get("tableRange").is_none(), "{reply}");
    assert_eq!(reply["updates"]["updatedRange"], "Sheet1!A1");
    assert_eq!(
        server.emulator.tab_values(SPREADSHEET, "Sheet1").unwrap(),
        vec![vec![json!("again")]]
    );
}

#[tokio::test]
async fn a_deleted_tab_is_gone_and_a_renamed_tab_answers_only_to_its_new_name() {
    let server = start().await;
    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({"requests": [
                {"addSheet": {"properties": {"title": "Responses", "sheetId": 11}}},
                {"addSheet": {"properties": {"title": "Old", "sheetId": 12}}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    server.append("Responses", json!([["id"], ["r1"]])).await;

    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({"requests": [{"updateSheetProperties": {
                "properties": {"sheetId": 11, "title": "Responses (2024)"}, "fields": "title"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["replies"], json!([{}]));
    let (status, reply) = server.get("/values/Responses!A1").await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Unable to parse range: Responses!A1"
    );
    let (status, reply) = server.get("/values/'Responses%20(2024)'!A1:A2").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["values"], json!([["id"], ["r1"]]));
    assert_eq!(
        server.emulator.sheet_id(SPREADSHEET, "Responses (2024)"),
        Some(11)
    );

    let (status, _) = server
        .post(
            ":batchUpdate",
            json!({"requests": [{"deleteSheet": {"sheetId": 12}}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.emulator.tab_titles(SPREADSHEET).unwrap(),
        vec!["Sheet1".to_owned(), "Responses (2024)".to_owned()]
    );
    let (status, reply) = server.append("Old", json!([["x"]])).await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"]["message"], "Unable to parse range: Old");
    let (status, reply) = server
        .post(
            ":batchUpdate",
            json!({"requests": [{"sortRange": {"range": {"sheetId": 12}, "sortSpecs": [{"dimensionIndex": 0}]}}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["error"]["message"],
        "Invalid requests[0].sortRange: No grid with id: 12"
    );
}
