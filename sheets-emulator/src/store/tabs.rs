//! `spreadsheets.batchUpdate` for tabs: adding, changing and deleting them (the requests that
//! move cells are in [`crate::edits`]).

use super::*;
use crate::cell::MAX_CELL_CHARS;

impl Spreadsheet {
    /// `spreadsheets.batchUpdate` for `addSheet`, `updateSheetProperties`, `deleteSheet`,
    /// `updateCells`, `sortRange`, `deleteDimension`, `insertDimension` and `appendDimension`
    /// (the last four in [`crate::edits`]): the replies, in order. All requests apply or none
    /// does, each seeing what the ones before it did (an `addSheet` with a chosen `sheetId`,
    /// then an `updateCells` into it).
    pub fn batch_update(
        &mut self,
        requests: &[Value],
        max_cells: u64,
        mut new_sheet_id: impl FnMut() -> i64,
    ) -> Result<Vec<Value>, GoogleError> {
        let mut draft = self.clone();
        let mut replies = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let (kind, request) = Request::parse(index, request)?;
            let kind = kind.as_str();
            let fail = |message: String| {
                GoogleError::invalid_argument(format!(
                    "Invalid requests[{index}].{kind}: {message}"
                ))
            };
            let at = At { index, kind };
            let reply = match request {
                Request::AddSheet(body) => {
                    draft.add_sheet(&body["properties"], &mut new_sheet_id, fail)?
                }
                Request::UpdateSheetProperties(body) => {
                    draft.update_sheet_properties(&body, fail)?
                }
                Request::DeleteSheet(body) => draft.delete_sheet(&body, fail)?,
                Request::UpdateCells(body) => draft.update_cells(&body, fail)?,
                Request::SortRange(body) => draft.sort_range(&body, &at)?,
                Request::DeleteDimension(body) => draft.delete_dimension(&body, &at)?,
                Request::InsertDimension(body) => draft.insert_dimension(&body, &at)?,
                Request::AppendDimension(body) => draft.append_dimension(&body, &at)?,
            };
            replies.push(reply);
        }
        if draft.total_cells() > max_cells {
            return Err(GoogleError::cell_limit(max_cells));
        }
        *self = draft;
        Ok(replies)
    }

    pub(super) fn add_sheet(
        &mut self,
        properties: &Value,
        new_sheet_id: &mut impl FnMut() -> i64,
        fail: impl Fn(String) -> GoogleError,
    ) -> Result<Value, GoogleError> {
        let title = match properties["title"].as_str() {
            Some(title) => title.to_owned(),
            None => default_title(&self.sheets),
        };
        if title.trim().is_empty() {
            return Err(fail("The sheet name cannot be empty.".into()));
        }
        if self.sheet_index(&title).is_some() {
            return Err(fail(format!(
                "A sheet with the name \"{title}\" already exists. Please enter another name."
            )));
        }
        let id = match properties["sheetId"].as_i64() {
            Some(id) if self.sheets.iter().any(|s| s.id == id) => {
                return Err(fail(format!("Sheet with id {id} already exists.")));
            }
            Some(id) => id,
            None => unused_sheet_id(&self.sheets, new_sheet_id),
        };
        let (rows, columns) = grid_size(&properties["gridProperties"]);
        let index = properties["index"]
            .as_u64()
            .map_or(self.sheets.len(), |i| (i as usize).min(self.sheets.len()));
        self.sheets
            .insert(index, Sheet::new(id, title, rows, columns));
        Ok(json!({ "addSheet": { "properties": self.sheets[index].properties(index) } }))
    }

    pub(super) fn update_sheet_properties(
        &mut self,
        body: &Value,
        fail: impl Fn(String) -> GoogleError,
    ) -> Result<Value, GoogleError> {
        let properties = &body["properties"];
        let id = properties["sheetId"].as_i64().unwrap_or(0);
        let index = self
            .sheets
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| fail(format!("No grid with id: {id}")))?;
        let fields = body["fields"].as_str().unwrap_or("");
        if fields.trim().is_empty() {
            return Err(fail("At least one field must be updated.".into()));
        }
        let all = fields.trim() == "*";
        for field in fields.split(',').map(str::trim) {
            if !matches!(
                field,
                "*" | "title"
                    | "index"
                    | "gridProperties"
                    | "gridProperties.rowCount"
                    | "gridProperties.columnCount"
            ) {
                return Err(fail(format!(
                    "the emulator does not support updating '{field}'."
                )));
            }
        }
        let wants = |name: &str| all || fields.split(',').any(|f| f.trim() == name);
        if wants("title") {
            let title = properties["title"].as_str().unwrap_or("").to_owned();
            if title.trim().is_empty() {
                return Err(fail("The sheet name cannot be empty.".into()));
            }
            if self.sheet_index(&title).is_some_and(|other| other != index) {
                return Err(fail(format!(
                    "A sheet with the name \"{title}\" already exists. Please enter another name."
                )));
            }
            self.sheets[index].title = title;
        }
        let grid = &properties["gridProperties"];
        if wants("gridProperties") || wants("gridProperties.rowCount") {
            let rows = grid["rowCount"].as_u64().unwrap_or(0) as u32;
            let sheet = &mut self.sheets[index];
            sheet.row_count = rows;
            Arc::make_mut(&mut sheet.data).truncate(rows as usize);
        }
        if wants("gridProperties") || wants("gridProperties.columnCount") {
            let columns = grid["columnCount"].as_u64().unwrap_or(0) as u32;
            let sheet = &mut self.sheets[index];
            sheet.column_count = columns;
            for row in Arc::make_mut(&mut sheet.data).iter_mut() {
                row.truncate(columns as usize);
            }
        }
        if wants("index") {
            let to =
                (properties["index"].as_u64().unwrap_or(0) as usize).min(self.sheets.len() - 1);
            let sheet = self.sheets.remove(index);
            self.sheets.insert(to, sheet);
        }
        Ok(json!({}))
    }

    pub(super) fn delete_sheet(
        &mut self,
        body: &Value,
        fail: impl Fn(String) -> GoogleError,
    ) -> Result<Value, GoogleError> {
        let id = body["sheetId"].as_i64().unwrap_or(0);
        let index = self
            .sheets
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| fail(format!("No sheet with id: {id}")))?;
        if self.sheets.len() == 1 {
            return Err(fail(
                "You can't remove all the sheets in a document.".into(),
            ));
        }
        self.sheets.remove(index);
        Ok(json!({}))
    }
}

impl Spreadsheet {
    /// `updateCells`: `rows` of `CellData` written from `start` (a `GridCoordinate`), or over
    /// `range` (a `GridRange`: cells of the range the rows do not cover are cleared, as Google
    /// documents). The emulator keeps values, not formats, so `fields` must be
    /// `userEnteredValue` or `*`; a cell without `userEnteredValue` is cleared. A
    /// `userEnteredValue` is an `ExtendedValue`: `stringValue` is stored as it is (never parsed,
    /// `=1+1` stays text), `numberValue`, `boolValue`, `formulaValue`. Writing past the grid is
    /// refused (the grid does not grow, unlike an append). The reply is `{}`: Google's
    /// `Response` has no field for it.
    pub(super) fn update_cells(
        &mut self,
        body: &Value,
        fail: impl Fn(String) -> GoogleError,
    ) -> Result<Value, GoogleError> {
        let fields = body["fields"].as_str().unwrap_or("").trim();
        if fields.is_empty() {
            // Google's message (seen in node-google-spreadsheet#308).
            return Err(fail(
                "At least one field must be listed in 'fields'. (Use '*' to indicate all fields.)"
                    .into(),
            ));
        }
        for field in fields.split(',').map(str::trim) {
            if !matches!(field, "*" | "userEnteredValue") {
                return Err(fail(format!(
                    "the emulator does not support updating '{field}' (it keeps values: userEnteredValue or *)."
                )));
            }
        }
        let (area, covers) = match (&body["start"], &body["range"]) {
            (Value::Null, Value::Null) => {
                // Unverified wording: Google's text for neither is not documented.
                return Err(fail("one of start or range must be set.".into()));
            }
            (Value::Null, range) => (range, true),
            (start, Value::Null) => (start, false),
            _ => {
                // The proto JSON parser's message for a second member of a oneof.
                return Err(GoogleError::invalid_argument(
                    "Invalid JSON payload received. Oneof field 'area' is already set. Cannot set 'range'",
                ));
            }
        };
        let id = area["sheetId"].as_i64().unwrap_or(0);
        let Some(sheet) = self.sheets.iter().position(|s| s.id == id) else {
            return Err(fail(format!("No grid with id: {id}")));
        };
        let index = |field: &str| -> Result<Option<u32>, GoogleError> {
            match &area[field] {
                Value::Null => Ok(None),
                value => match value.as_i64() {
                    Some(n) if n >= 0 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                    _ => Err(fail(format!(
                        "{field} must be a non-negative index, not {value}."
                    ))),
                },
            }
        };
        let mut cells = Vec::new();
        for (i, row) in body["rows"].as_array().into_iter().flatten().enumerate() {
            let mut line = Vec::new();
            for (j, cell) in row["values"].as_array().into_iter().flatten().enumerate() {
                line.push(Some(extended_value(&cell["userEnteredValue"]).map_err(
                    |message| fail(format!("rows[{i}].values[{j}]: {message}")),
                )?));
            }
            cells.push(line);
        }
        let grid = &self.sheets[sheet];
        let (row, col) = if covers {
            let (row, col) = (
                index("startRowIndex")?.unwrap_or(0),
                index("startColumnIndex")?.unwrap_or(0),
            );
            let end_row = index("endRowIndex")?.unwrap_or(grid.row_count).max(row);
            let end_col = index("endColumnIndex")?
                .unwrap_or(grid.column_count)
                .max(col);
            let (height, width) = ((end_row - row) as usize, (end_col - col) as usize);
            if cells.len() > height || cells.iter().any(|line| line.len() > width) {
                // Unverified wording: the emulator's own.
                return Err(fail("the rows do not fit in the range.".into()));
            }
            cells.resize_with(height, Vec::new);
            for line in &mut cells {
                line.resize(width, Some(Cell::Empty));
            }
            (row, col)
        } else {
            (
                index("rowIndex")?.unwrap_or(0),
                index("columnIndex")?.unwrap_or(0),
            )
        };
        let planned = Planned {
            sheet,
            row,
            col,
            cells,
            insert_rows: 0,
            grows: false,
        };
        if planned.cells.iter().any(|line| !line.is_empty()) {
            let rect = planned.rect();
            if rect.end_row > grid.row_count || rect.end_col > grid.column_count {
                return Err(fail(past_the_grid(
                    &grid.title,
                    rect,
                    grid.row_count,
                    grid.column_count,
                )));
            }
            self.sheets[sheet].apply(&planned);
        }
        Ok(json!({}))
    }
}

/// A `CellData.userEnteredValue` (an `ExtendedValue`, one member set) as a cell; absent, the
/// cell is cleared.
fn extended_value(value: &Value) -> Result<Cell, String> {
    let Some(object) = value.as_object() else {
        return match value {
            Value::Null => Ok(Cell::Empty),
            other => Err(format!(
                "userEnteredValue must be an ExtendedValue, not {other}"
            )),
        };
    };
    if object.len() != 1 {
        return Err("userEnteredValue must set exactly one of numberValue, stringValue, boolValue, formulaValue.".into());
    }
    let (kind, inner) = object.iter().next().expect("one member");
    match (kind.as_str(), inner) {
        ("stringValue", Value::String(text)) if text.chars().count() > MAX_CELL_CHARS => Err(
            "Your input contains more than the maximum of 50000 characters in a single cell."
                .into(),
        ),
        ("stringValue", Value::String(text)) if text.is_empty() => Ok(Cell::Empty),
        ("stringValue", Value::String(text)) => Ok(Cell::Text(text.clone())),
        ("numberValue", Value::Number(n)) => Ok(Cell::Number(n.as_f64().unwrap_or(0.0))),
        ("boolValue", Value::Bool(b)) => Ok(Cell::Bool(*b)),
        ("formulaValue", Value::String(text)) => Ok(Cell::Formula(text.clone())),
        (kind, inner) => Err(format!(
            "the emulator does not support userEnteredValue.{kind} = {inner}"
        )),
    }
}

/// A request of `spreadsheets.batchUpdate` that the emulator supports. Google's `Request` is a
/// union: exactly one of its fields is set, named for the request; each body is read by its
/// handler, with Google's messages for what it refuses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Request {
    AddSheet(Value),
    UpdateSheetProperties(Value),
    DeleteSheet(Value),
    UpdateCells(Value),
    SortRange(Value),
    DeleteDimension(Value),
    InsertDimension(Value),
    AppendDimension(Value),
}

impl Request {
    /// `requests[index]`, and the name of its field.
    pub(super) fn parse(index: usize, request: &Value) -> Result<(String, Self), GoogleError> {
        let Some((kind, _)) = request
            .as_object()
            .filter(|object| object.len() == 1)
            .and_then(|object| object.iter().next())
        else {
            return Err(GoogleError::invalid_argument(format!(
                "Invalid requests[{index}]: No request set."
            )));
        };
        match Self::deserialize(request) {
            Ok(parsed) => Ok((kind.clone(), parsed)),
            Err(_) => Err(GoogleError::invalid_argument(format!(
                "Invalid requests[{index}]: the emulator does not support '{kind}' (it supports addSheet, updateSheetProperties, deleteSheet, updateCells, sortRange, deleteDimension, insertDimension and appendDimension)."
            ))),
        }
    }
}

/// Tab names are unique regardless of case; an exact match wins.
pub(super) fn find_title(sheets: &[Sheet], title: &str) -> Option<usize> {
    sheets.iter().position(|s| s.title == title).or_else(|| {
        sheets
            .iter()
            .position(|s| s.title.to_lowercase() == title.to_lowercase())
    })
}

/// `SheetN` for the first free N, as the UI names new tabs.
pub(super) fn default_title(sheets: &[Sheet]) -> String {
    (1..)
        .map(|n| format!("Sheet{n}"))
        .find(|title| find_title(sheets, title).is_none())
        .unwrap_or_else(|| "Sheet".into())
}

pub(super) fn unused_sheet_id(sheets: &[Sheet], new_sheet_id: &mut impl FnMut() -> i64) -> i64 {
    loop {
        let id = new_sheet_id();
        if !sheets.iter().any(|s| s.id == id) {
            return id;
        }
    }
}

pub(super) fn grid_size(grid: &Value) -> (u32, u32) {
    let rows = grid["rowCount"].as_u64().map_or(DEFAULT_ROWS, |n| n as u32);
    let columns = grid["columnCount"]
        .as_u64()
        .map_or(DEFAULT_COLUMNS, |n| n as u32);
    (rows, columns)
}
