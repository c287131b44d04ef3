//! Spreadsheets in memory and what the API does to them. Every operation validates fully before
//! it changes anything, so a refused request leaves no trace (Sheets applies requests
//! atomically).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::a1::{self, CellRange, Rect};
use crate::cell::{Cell, InputError, InputOption, RenderOption};
use crate::edits::At;
use crate::error::GoogleError;

mod grid;
mod tabs;
mod values;

use grid::*;
use tabs::*;

/// Google's limit on the cells of a spreadsheet (all tabs, the whole grid, empty or not).
pub const DEFAULT_MAX_CELLS: u64 = 10_000_000;
/// A new tab's grid, as in Sheets.
const DEFAULT_ROWS: u32 = 1000;
const DEFAULT_COLUMNS: u32 = 26;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    Rows,
    Columns,
}

impl Major {
    pub fn parse(value: Option<&str>) -> Result<Self, GoogleError> {
        match value {
            None | Some("ROWS") | Some("DIMENSION_UNSPECIFIED") => Ok(Self::Rows),
            Some("COLUMNS") => Ok(Self::Columns),
            Some(other) => Err(invalid_enum("major_dimension", "Dimension", other)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rows => "ROWS",
            Self::Columns => "COLUMNS",
        }
    }
}

/// Google's message for an enum value it does not know.
/// Google's message for a range past a tab's grid: `Range ('Tab'!A1:B2) exceeds grid limits.
/// Max rows: 1000, max columns: 26`.
pub fn past_the_grid(
    title: &str,
    rect: Rect,
    rows: impl std::fmt::Display,
    columns: impl std::fmt::Display,
) -> String {
    format!(
        "Range ('{}'!{}) exceeds grid limits. Max rows: {rows}, max columns: {columns}",
        title.replace('\'', "''"),
        a1::format_cells(rect),
    )
}

pub fn invalid_enum(field: &str, kind: &str, value: &str) -> GoogleError {
    GoogleError::invalid_argument(format!(
        "Invalid value at '{field}' (type.googleapis.com/google.apps.sheets.v4.{kind}), \"{value}\""
    ))
}

#[derive(Default)]
pub struct Store {
    spreadsheets: HashMap<String, Spreadsheet>,
}

#[derive(Debug, Clone)]
pub struct Spreadsheet {
    pub id: String,
    pub title: String,
    pub sheets: Vec<Sheet>,
}

#[derive(Debug, Clone)]
pub struct Sheet {
    pub id: i64,
    pub title: String,
    pub row_count: u32,
    pub column_count: u32,
    /// Rows up to the last one ever written; each row up to its last written cell. Shared so
    /// that a structural `batchUpdate` can work on a cheap copy.
    pub data: Arc<Vec<Vec<Cell>>>,
}

/// One write, checked and ready: cells by position from `row`/`col` (`None` leaves a cell as is).
struct Planned {
    sheet: usize,
    row: u32,
    col: u32,
    cells: Vec<Vec<Option<Cell>>>,
    /// Rows to insert at `row` first (`INSERT_ROWS`).
    insert_rows: u32,
    /// Whether the grid may grow to fit (append does; update refuses to write past the grid).
    grows: bool,
}

impl Planned {
    fn height(&self) -> u32 {
        self.cells.len() as u32
    }

    fn width(&self) -> u32 {
        self.cells.iter().map(Vec::len).max().unwrap_or(0) as u32
    }

    fn rect(&self) -> Rect {
        Rect {
            start_row: self.row,
            end_row: self.row + self.height().max(1),
            start_col: self.col,
            end_col: self.col + self.width().max(1),
        }
    }

    /// `UpdateValuesResponse` without `updatedData`.
    fn response(&self, spreadsheet: &Spreadsheet) -> Value {
        let sheet = &spreadsheet.sheets[self.sheet];
        let mut columns = std::collections::BTreeSet::new();
        let mut rows = 0u32;
        let mut cells = 0u64;
        for row in &self.cells {
            let mut touched = false;
            for (offset, cell) in row.iter().enumerate() {
                if cell.is_some() {
                    touched = true;
                    cells += 1;
                    columns.insert(offset);
                }
            }
            rows += u32::from(touched);
        }
        json!({
            "spreadsheetId": spreadsheet.id,
            "updatedRange": a1::format_range(&sheet.title, self.rect()),
            "updatedRows": rows,
            "updatedColumns": columns.len(),
            "updatedCells": cells,
        })
    }
}

impl Store {
    pub fn get(&self, id: &str) -> Result<&Spreadsheet, GoogleError> {
        self.spreadsheets.get(id).ok_or_else(GoogleError::not_found)
    }

    pub fn get_mut(&mut self, id: &str) -> Result<&mut Spreadsheet, GoogleError> {
        self.spreadsheets
            .get_mut(id)
            .ok_or_else(GoogleError::not_found)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.spreadsheets.contains_key(id)
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.spreadsheets.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// `spreadsheets.create` from a `Spreadsheet` body (only titles and grid sizes are used).
    pub fn create(
        &mut self,
        id: String,
        body: &Value,
        max_cells: u64,
        mut new_sheet_id: impl FnMut() -> i64,
    ) -> Result<&Spreadsheet, GoogleError> {
        let title = body["properties"]["title"]
            .as_str()
            .unwrap_or("Untitled spreadsheet")
            .to_owned();
        let mut sheets: Vec<Sheet> = Vec::new();
        if let Some(requested) = body["sheets"].as_array() {
            for (index, sheet) in requested.iter().enumerate() {
                let properties = &sheet["properties"];
                let title = match properties["title"].as_str() {
                    Some(title) => title.to_owned(),
                    None => default_title(&sheets),
                };
                if find_title(&sheets, &title).is_some() {
                    return Err(GoogleError::invalid_argument(format!(
                        "Invalid sheets[{index}]: A sheet with the name \"{title}\" already exists. Please enter another name."
                    )));
                }
                let id = match properties["sheetId"].as_i64() {
                    Some(id) => id,
                    None if sheets.is_empty() => 0,
                    None => unused_sheet_id(&sheets, &mut new_sheet_id),
                };
                let (row_count, column_count) = grid_size(&properties["gridProperties"]);
                sheets.push(Sheet::new(id, title, row_count, column_count));
            }
        }
        if sheets.is_empty() {
            sheets.push(Sheet::new(
                0,
                "Sheet1".into(),
                DEFAULT_ROWS,
                DEFAULT_COLUMNS,
            ));
        }
        let spreadsheet = Spreadsheet {
            id: id.clone(),
            title,
            sheets,
        };
        if spreadsheet.total_cells() > max_cells {
            return Err(GoogleError::cell_limit(max_cells));
        }
        Ok(self.spreadsheets.entry(id).or_insert(spreadsheet))
    }
}

impl Spreadsheet {
    pub fn total_cells(&self) -> u64 {
        self.sheets.iter().map(Sheet::cells).sum()
    }

    pub fn sheet_index(&self, title: &str) -> Option<usize> {
        find_title(&self.sheets, title)
    }

    /// The `Spreadsheet` resource.
    pub fn to_json(&self) -> Value {
        json!({
            "spreadsheetId": self.id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Etc/GMT",
            },
            "sheets": self
                .sheets
                .iter()
                .enumerate()
                .map(|(index, sheet)| json!({ "properties": sheet.properties(index) }))
                .collect::<Vec<_>>(),
            "spreadsheetUrl": format!("https://docs.google.com/spreadsheets/d/{}/edit", self.id),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spreadsheet() -> Spreadsheet {
        let mut store = Store::default();
        store
            .create("s".into(), &json!({}), DEFAULT_MAX_CELLS, || 7)
            .cloned()
            .unwrap()
    }

    /// `values.append` of raw values after the table `range` finds, overwriting.
    fn append_raw(s: &mut Spreadsheet, range: &str, values: &[Vec<Value>]) -> Value {
        let raw = InputOption::Raw;
        s.append(range, values, Major::Rows, raw, false, None, u64::MAX)
            .unwrap()
    }

    #[test]
    fn batch_update_reads_each_request_as_one_of_the_supported_kinds() {
        let mut sheet = spreadsheet();
        let refused = |sheet: &mut Spreadsheet, requests: Value| {
            let requests = requests.as_array().cloned().unwrap();
            sheet
                .batch_update(&requests, DEFAULT_MAX_CELLS, || 9)
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused(&mut sheet, json!([{}])),
            "Invalid requests[0]: No request set."
        );
        assert_eq!(
            refused(
                &mut sheet,
                json!([{"deleteSheet": {"sheetId": 0}, "addSheet": {}}])
            ),
            "Invalid requests[0]: No request set."
        );
        // Nothing of a batch applies when one request is refused: the tab added first is not
        // there after.
        let message = refused(
            &mut sheet,
            json!([{"addSheet": {"properties": {"title": "A"}}}, {"mergeCells": {}}]),
        );
        assert!(
            message.starts_with("Invalid requests[1]: the emulator does not support 'mergeCells'"),
            "{message}"
        );
        assert_eq!(sheet.sheet_index("A"), None);
        let replies = sheet
            .batch_update(
                &[json!({"addSheet": {"properties": {"title": "A"}}})],
                DEFAULT_MAX_CELLS,
                || 9,
            )
            .unwrap();
        assert_eq!(replies[0]["addSheet"]["properties"]["title"], "A");
        assert_eq!(replies[0]["addSheet"]["properties"]["sheetId"], 9);
    }

    #[test]
    fn update_cells_writes_into_a_tab_added_in_the_same_batch() {
        let mut sheet = spreadsheet();
        let header = |title: &str, id: i64, start: Value| {
            vec![
                json!({"addSheet": {"properties": {"title": title, "sheetId": id,
                    "gridProperties": {"rowCount": 3, "columnCount": 4}}}}),
                json!({"updateCells": {
                    "rows": [{"values": [
                        {"userEnteredValue": {"stringValue": "response_id"}},
                        {"userEnteredValue": {"stringValue": "=1+1"}},
                        {"userEnteredValue": {"numberValue": 42}},
                        {"userEnteredValue": {"boolValue": true}},
                    ]}],
                    "fields": "userEnteredValue",
                    "start": start,
                }}),
            ]
        };
        let replies = sheet
            .batch_update(
                &header(
                    "A",
                    77,
                    json!({"sheetId": 77, "rowIndex": 0, "columnIndex": 0}),
                ),
                DEFAULT_MAX_CELLS,
                || 9,
            )
            .unwrap();
        assert_eq!(replies[0]["addSheet"]["properties"]["sheetId"], 77);
        assert_eq!(replies[1], json!({}));
        let read = |sheet: &Spreadsheet, range: &str| {
            sheet
                .read(range, Major::Rows, RenderOption::Unformatted)
                .unwrap()["values"]
                .clone()
        };
        // A stringValue is never parsed: "=1+1" stays text.
        assert_eq!(
            read(&sheet, "A!A1:D1"),
            json!([["response_id", "=1+1", 42, true]])
        );

        // Past the grid (4 columns, from column B): refused, and the tab added before it in
        // the batch is not there either.
        let error = sheet
            .batch_update(
                &header("B", 78, json!({"sheetId": 78, "columnIndex": 1})),
                DEFAULT_MAX_CELLS,
                || 9,
            )
            .unwrap_err();
        assert_eq!(
            error.message,
            "Invalid requests[1].updateCells: Range ('B'!B1:E1) exceeds grid limits. Max rows: 3, max columns: 4"
        );
        assert_eq!(sheet.sheet_index("B"), None);

        // A range clears what the rows do not cover; a cell without a value is cleared.
        sheet
            .batch_update(
                &[json!({"updateCells": {
                    "rows": [{"values": [{}, {"userEnteredValue": {"stringValue": "x"}}]}],
                    "fields": "*",
                    "range": {"sheetId": 77, "startRowIndex": 0, "endRowIndex": 1,
                        "startColumnIndex": 0, "endColumnIndex": 3},
                }})],
                DEFAULT_MAX_CELLS,
                || 9,
            )
            .unwrap();
        assert_eq!(read(&sheet, "A!A1:D1"), json!([["", "x", "", true]]));

        let refused = |sheet: &mut Spreadsheet, body: Value| {
            sheet
                .batch_update(&[json!({ "updateCells": body })], DEFAULT_MAX_CELLS, || 9)
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused(
                &mut sheet,
                json!({"rows": [], "fields": "", "start": {"sheetId": 77}})
            ),
            "Invalid requests[0].updateCells: At least one field must be listed in 'fields'. (Use '*' to indicate all fields.)"
        );
        assert_eq!(
            refused(
                &mut sheet,
                json!({"rows": [], "fields": "*", "start": {"sheetId": 5}})
            ),
            "Invalid requests[0].updateCells: No grid with id: 5"
        );
        let message = refused(
            &mut sheet,
            json!({"rows": [], "fields": "userEnteredFormat", "start": {"sheetId": 77}}),
        );
        assert!(
            message.contains("does not support updating 'userEnteredFormat'"),
            "{message}"
        );
    }

    fn rows(n: usize, width: usize) -> Vec<Vec<Value>> {
        (0..n)
            .map(|r| (0..width).map(|c| json!(format!("r{r}c{c}"))).collect())
            .collect()
    }

    #[test]
    fn appends_after_the_table_from_its_first_column() {
        let mut s = spreadsheet();
        let raw = InputOption::Raw;
        s.update("Sheet1!B1", &rows(10, 3), Major::Rows, raw, None, u64::MAX)
            .unwrap();
        let reply = append_raw(&mut s, "Sheet1!A:Z", &rows(2, 3));
        assert_eq!(reply["tableRange"], json!("Sheet1!B1:D10"));
        assert_eq!(reply["updates"]["updatedRange"], json!("Sheet1!B11:D12"));
        // A range of one cell still finds the whole table.
        let reply = append_raw(&mut s, "Sheet1!B1", &rows(1, 3));
        assert_eq!(reply["updates"]["updatedRange"], json!("Sheet1!B13:D13"));
    }

    #[test]
    fn update_refuses_data_beyond_the_range() {
        let mut s = spreadsheet();
        let error = s
            .update(
                "Sheet1!A1:B2",
                &rows(3, 2),
                Major::Rows,
                InputOption::Raw,
                None,
                u64::MAX,
            )
            .err()
            .map(|e| e.message);
        assert_eq!(
            error.as_deref(),
            Some("Requested writing within range ['Sheet1'!A1:B2], but tried writing to row [3]")
        );
    }

    #[test]
    fn reads_trim_like_google() {
        let mut s = spreadsheet();
        s.update(
            "Sheet1!A1",
            &[
                vec![json!("a"), json!(""), json!("c"), json!("")],
                vec![],
                vec![json!(""), json!("x")],
                vec![json!("")],
            ],
            Major::Rows,
            InputOption::Raw,
            None,
            u64::MAX,
        )
        .unwrap();
        let read = s
            .read("Sheet1", Major::Rows, RenderOption::Formatted)
            .unwrap();
        assert_eq!(read["range"], json!("Sheet1!A1:Z1000"));
        assert_eq!(read["values"], json!([["a", "", "c"], [], ["", "x"]]));
        let columns = s
            .read("Sheet1!A1:C3", Major::Columns, RenderOption::Formatted)
            .unwrap();
        assert_eq!(columns["values"], json!([["a"], ["", "", "x"], ["c"]]));
        let empty = s
            .read("Sheet1!D5:E6", Major::Rows, RenderOption::Formatted)
            .unwrap();
        assert_eq!(
            empty,
            json!({"range": "Sheet1!D5:E6", "majorDimension": "ROWS"})
        );
    }
}
