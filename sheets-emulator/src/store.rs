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

impl Sheet {
    fn new(id: i64, title: String, row_count: u32, column_count: u32) -> Self {
        Self {
            id,
            title,
            row_count,
            column_count,
            data: Arc::new(Vec::new()),
        }
    }

    fn cell(&self, row: u32, col: u32) -> &Cell {
        static EMPTY: Cell = Cell::Empty;
        self.data
            .get(row as usize)
            .and_then(|cells| cells.get(col as usize))
            .unwrap_or(&EMPTY)
    }

    /// Whether row `row` has a value in columns `from..to`.
    fn row_has_data(&self, row: u32, from: u32, to: u32) -> bool {
        self.data.get(row as usize).is_some_and(|cells| {
            let end = (to as usize).min(cells.len());
            let start = (from as usize).min(end);
            cells[start..end].iter().any(|cell| !cell.is_empty())
        })
    }

    fn col_has_data(&self, col: u32, from_row: u32, to_row: u32) -> bool {
        (from_row..to_row.min(self.data.len() as u32)).any(|row| !self.cell(row, col).is_empty())
    }

    pub fn properties(&self, index: usize) -> Value {
        json!({
            "sheetId": self.id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {
                "rowCount": self.row_count,
                "columnCount": self.column_count,
            },
        })
    }

    /// Stored values, trailing empty rows and cells left out.
    pub fn stored_rows(&self) -> Vec<Vec<Cell>> {
        let mut rows: Vec<Vec<Cell>> = self
            .data
            .iter()
            .map(|row| {
                let len = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
                row[..len].to_vec()
            })
            .collect();
        while rows.last().is_some_and(Vec::is_empty) {
            rows.pop();
        }
        rows
    }

    fn cells(&self) -> u64 {
        u64::from(self.row_count) * u64::from(self.column_count)
    }

    /// Writes `planned` (grid already checked), growing the grid as Sheets does.
    fn apply(&mut self, planned: &Planned) {
        let data = Arc::make_mut(&mut self.data);
        if planned.insert_rows > 0 {
            let at = planned.row as usize;
            if at < data.len() {
                data.splice(at..at, (0..planned.insert_rows).map(|_| Vec::new()));
            }
            self.row_count += planned.insert_rows;
        }
        self.row_count = self.row_count.max(planned.row + planned.height());
        self.column_count = self.column_count.max(planned.col + planned.width());
        for (offset, row) in planned.cells.iter().enumerate() {
            let index = planned.row as usize + offset;
            if row.iter().all(Option::is_none) {
                continue;
            }
            if data.len() <= index {
                data.resize_with(index + 1, Vec::new);
            }
            let target = &mut data[index];
            for (col_offset, cell) in row.iter().enumerate() {
                let Some(cell) = cell else { continue };
                let col = planned.col as usize + col_offset;
                if target.len() <= col {
                    if cell.is_empty() {
                        continue;
                    }
                    target.resize_with(col + 1, Cell::default);
                }
                target[col] = cell.clone();
            }
        }
    }

    /// The values of `rect` as the API returns them: trailing empty cells of a row and trailing
    /// empty rows (columns, for `COLUMNS`) left out; an empty row inside stays as `[]`.
    fn render(&self, rect: Rect, major: Major, render: RenderOption) -> Vec<Vec<Value>> {
        // Nothing is stored past the data: stop there rather than walk a million empty rows.
        let rows = rect.start_row..rect.end_row.min(self.data.len() as u32).max(rect.start_row);
        let mut lines: Vec<Vec<Value>> = match major {
            Major::Rows => rows
                .map(|row| {
                    let cells = &self.data[row as usize];
                    let end = rect.end_col.min(cells.len() as u32).max(rect.start_col);
                    line(cells[rect.start_col as usize..end as usize].iter(), render)
                })
                .collect(),
            Major::Columns => (rect.start_col..rect.end_col)
                .map(|col| line(rows.clone().map(|row| self.cell(row, col)), render))
                .collect(),
        };
        while lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        lines
    }
}

/// Rendered cells up to the last non-empty one.
fn line<'a>(cells: impl Iterator<Item = &'a Cell>, render: RenderOption) -> Vec<Value> {
    let mut out = Vec::new();
    let mut kept = 0;
    for cell in cells {
        out.push(cell.render(render));
        if !cell.is_empty() {
            kept = out.len();
        }
    }
    out.truncate(kept);
    out
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

    /// The tab and cells `input` names: `Tab!A1:B2`, `Tab`, or `A1:B2` on the first tab. A bare
    /// word is a tab's name when there is such a tab, even if it also reads as cells.
    fn resolve(&self, input: &str) -> Result<(usize, CellRange), GoogleError> {
        let parsed = a1::parse(input).map_err(|_| GoogleError::unable_to_parse(input))?;
        match parsed.sheet {
            None => match self.sheet_index(input.trim()) {
                Some(index) => Ok((index, CellRange::default())),
                None => Ok((0, parsed.cells.unwrap_or_default())),
            },
            Some(name) => {
                let index = self
                    .sheet_index(&name)
                    .ok_or_else(|| GoogleError::unable_to_parse(input))?;
                Ok((index, parsed.cells.unwrap_or_default()))
            }
        }
    }

    /// Open sides of `cells` closed at the grid's edge; a bound past the edge is refused as
    /// Sheets refuses it on reads.
    fn clip_for_read(&self, sheet: usize, cells: CellRange) -> Result<Rect, GoogleError> {
        let grid = &self.sheets[sheet];
        let rect = Rect {
            start_row: cells.start_row.unwrap_or(0),
            end_row: cells.end_row.unwrap_or(grid.row_count),
            start_col: cells.start_col.unwrap_or(0),
            end_col: cells.end_col.unwrap_or(grid.column_count),
        };
        if rect.end_row > grid.row_count
            || rect.end_col > grid.column_count
            || rect.start_row >= grid.row_count.max(1)
            || rect.start_col >= grid.column_count.max(1)
        {
            let shown = Rect {
                end_row: rect.end_row.max(rect.start_row + 1),
                end_col: rect.end_col.max(rect.start_col + 1),
                ..rect
            };
            return Err(GoogleError::invalid_argument(format!(
                "Range ('{}'!{}) exceeds grid limits. Max rows: {}, max columns: {}",
                grid.title.replace('\'', "''"),
                a1::format_cells(shown),
                grid.row_count,
                grid.column_count
            )));
        }
        Ok(rect)
    }

    /// `values.get`: a `ValueRange`.
    pub fn read(
        &self,
        range: &str,
        major: Major,
        render: RenderOption,
    ) -> Result<Value, GoogleError> {
        let (sheet, cells) = self.resolve(range)?;
        let rect = self.clip_for_read(sheet, cells)?;
        Ok(self.value_range(sheet, rect, major, render))
    }

    fn value_range(&self, sheet: usize, rect: Rect, major: Major, render: RenderOption) -> Value {
        let grid = &self.sheets[sheet];
        let values = grid.render(rect, major, render);
        let mut body = json!({
            "range": a1::format_range(&grid.title, rect),
            "majorDimension": major.name(),
        });
        if !values.is_empty() {
            body["values"] = json!(values);
        }
        body
    }

    /// Turns written values into cells, checking each (`values[i][j]` positions as sent).
    fn cells_from(
        values: &[Vec<Value>],
        major: Major,
        input: InputOption,
    ) -> Result<Vec<Vec<Option<Cell>>>, GoogleError> {
        let mut converted = Vec::with_capacity(values.len());
        for (i, line) in values.iter().enumerate() {
            let mut cells = Vec::with_capacity(line.len());
            for (j, value) in line.iter().enumerate() {
                match Cell::from_input(value, input) {
                    Ok(cell) => cells.push(cell),
                    Err(InputError::TooLong) => {
                        return Err(GoogleError::invalid_argument(
                            "Your input contains more than the maximum of 50000 characters in a single cell.",
                        ));
                    }
                    Err(InputError::NotAScalar) => {
                        return Err(GoogleError::invalid_argument(format!(
                            "Invalid values[{i}][{j}]: {value}"
                        )));
                    }
                }
            }
            converted.push(cells);
        }
        Ok(match major {
            Major::Rows => converted,
            Major::Columns => transpose(converted),
        })
    }

    /// Plans a `values.update` of `range` (data must fit the range where the range is bounded).
    fn plan_update(
        &self,
        range: &str,
        values: &[Vec<Value>],
        major: Major,
        input: InputOption,
    ) -> Result<Planned, GoogleError> {
        let (sheet, mut bounds) = self.resolve(range)?;
        // A single cell is only where the data starts (`A1` takes a table of any size).
        if bounds
            .end_row
            .zip(bounds.start_row)
            .is_some_and(|(e, s)| e == s + 1)
            && bounds
                .end_col
                .zip(bounds.start_col)
                .is_some_and(|(e, s)| e == s + 1)
        {
            bounds.end_row = None;
            bounds.end_col = None;
        }
        let cells = Self::cells_from(values, major, input)?;
        let planned = Planned {
            sheet,
            row: bounds.start_row.unwrap_or(0),
            col: bounds.start_col.unwrap_or(0),
            cells,
            insert_rows: 0,
            grows: false,
        };
        let written = || {
            let title = self.sheets[sheet].title.replace('\'', "''");
            let rect = Rect {
                start_row: planned.row,
                end_row: bounds.end_row.unwrap_or(planned.row + 1),
                start_col: planned.col,
                end_col: bounds.end_col.unwrap_or(planned.col + 1),
            };
            format!("'{title}'!{}", a1::format_cells(rect))
        };
        if let Some(end) = bounds.end_row {
            if planned.row + planned.height() > end {
                return Err(GoogleError::invalid_argument(format!(
                    "Requested writing within range [{}], but tried writing to row [{}]",
                    written(),
                    end + 1
                )));
            }
        }
        if let Some(end) = bounds.end_col {
            if planned.col + planned.width() > end {
                return Err(GoogleError::invalid_argument(format!(
                    "Requested writing within range [{}], but tried writing to column [{}]",
                    written(),
                    a1::column_name(end)
                )));
            }
        }
        Ok(planned)
    }

    /// Checks `plans` against the grid and the cell limit together, then applies them in order.
    fn commit(&mut self, plans: &[Planned], max_cells: u64) -> Result<(), GoogleError> {
        let mut grids: Vec<(u64, u64)> = self
            .sheets
            .iter()
            .map(|s| (u64::from(s.row_count), u64::from(s.column_count)))
            .collect();
        for plan in plans {
            let (rows, cols) = &mut grids[plan.sheet];
            let rect = plan.rect();
            let outside = u64::from(rect.end_row) > *rows || u64::from(rect.end_col) > *cols;
            if !plan.grows && outside && !plan.cells.is_empty() {
                return Err(GoogleError::invalid_argument(format!(
                    "Range ('{}'!{}) exceeds grid limits. Max rows: {rows}, max columns: {cols}",
                    self.sheets[plan.sheet].title.replace('\'', "''"),
                    a1::format_cells(rect),
                )));
            }
            *rows += u64::from(plan.insert_rows);
            *rows = (*rows).max(u64::from(plan.row + plan.height()));
            *cols = (*cols).max(u64::from(plan.col + plan.width()));
        }
        let total: u64 = grids.iter().map(|(rows, cols)| rows * cols).sum();
        if total > max_cells {
            return Err(GoogleError::cell_limit(max_cells));
        }
        for plan in plans {
            self.sheets[plan.sheet].apply(plan);
        }
        Ok(())
    }

    fn updated_data(&self, plan: &Planned, render: RenderOption) -> Value {
        self.value_range(plan.sheet, plan.rect(), Major::Rows, render)
    }

    /// `values.update`: an `UpdateValuesResponse`.
    pub fn update(
        &mut self,
        range: &str,
        values: &[Vec<Value>],
        major: Major,
        input: InputOption,
        include_values: Option<RenderOption>,
        max_cells: u64,
    ) -> Result<Value, GoogleError> {
        let plan = self.plan_update(range, values, major, input)?;
        self.commit(std::slice::from_ref(&plan), max_cells)?;
        let mut response = plan.response(self);
        if let Some(render) = include_values {
            response["updatedData"] = self.updated_data(&plan, render);
        }
        Ok(response)
    }

    /// `values.batchUpdate`: all ranges or none.
    pub fn batch_update_values(
        &mut self,
        data: &[(String, Vec<Vec<Value>>, Major)],
        input: InputOption,
        include_values: Option<RenderOption>,
        max_cells: u64,
    ) -> Result<Value, GoogleError> {
        let mut plans = Vec::with_capacity(data.len());
        for (range, values, major) in data {
            plans.push(self.plan_update(range, values, *major, input)?);
        }
        self.commit(&plans, max_cells)?;
        let mut responses = Vec::with_capacity(plans.len());
        let (mut rows, mut cols, mut cells) = (0u64, 0u64, 0u64);
        let mut sheets = std::collections::BTreeSet::new();
        for plan in &plans {
            let mut response = plan.response(self);
            rows += response["updatedRows"].as_u64().unwrap_or(0);
            cols += response["updatedColumns"].as_u64().unwrap_or(0);
            cells += response["updatedCells"].as_u64().unwrap_or(0);
            if response["updatedCells"].as_u64().unwrap_or(0) > 0 {
                sheets.insert(plan.sheet);
            }
            if let Some(render) = include_values {
                response["updatedData"] = self.updated_data(plan, render);
            }
            responses.push(response);
        }
        Ok(json!({
            "spreadsheetId": self.id,
            "totalUpdatedRows": rows,
            "totalUpdatedColumns": cols,
            "totalUpdatedCells": cells,
            "totalUpdatedSheets": sheets.len(),
            "responses": responses,
        }))
    }

    /// `values.append`. The range only says where to look for the table: the table is the block
    /// of data around the first value found in the range (it may extend past the range), and the
    /// rows go after its last row, from its first column. With no value in the range, they go
    /// to the range's top-left cell.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        range: &str,
        values: &[Vec<Value>],
        major: Major,
        input: InputOption,
        insert_rows: bool,
        include_values: Option<RenderOption>,
        max_cells: u64,
    ) -> Result<Value, GoogleError> {
        let (sheet, bounds) = self.resolve(range)?;
        let cells = Self::cells_from(values, major, input)?;
        let grid = &self.sheets[sheet];
        let search = Rect {
            start_row: bounds.start_row.unwrap_or(0),
            end_row: bounds.end_row.unwrap_or(grid.row_count).min(grid.row_count),
            start_col: bounds.start_col.unwrap_or(0),
            end_col: bounds
                .end_col
                .unwrap_or(grid.column_count)
                .min(grid.column_count),
        };
        let table = find_table(grid, search);
        let (row, col) = match table {
            Some(table) => (table.end_row, table.start_col),
            None => (search.start_row, search.start_col),
        };
        let mut plan = Planned {
            sheet,
            row,
            col,
            cells,
            insert_rows: 0,
            grows: true,
        };
        if insert_rows {
            plan.insert_rows = plan.height();
        }
        self.commit(std::slice::from_ref(&plan), max_cells)?;
        let mut updates = plan.response(self);
        if let Some(render) = include_values {
            updates["updatedData"] = self.updated_data(&plan, render);
        }
        let mut response = json!({ "spreadsheetId": self.id, "updates": updates });
        if let Some(table) = table {
            response["tableRange"] = json!(a1::format_range(&self.sheets[sheet].title, table));
        }
        Ok(response)
    }

    /// `values.clear`: the cleared range (values only; the grid stays).
    pub fn clear(&mut self, range: &str) -> Result<String, GoogleError> {
        let (sheet, bounds) = self.resolve(range)?;
        let grid = &mut self.sheets[sheet];
        let rect = Rect {
            start_row: bounds.start_row.unwrap_or(0),
            end_row: bounds.end_row.unwrap_or(grid.row_count).min(grid.row_count),
            start_col: bounds.start_col.unwrap_or(0),
            end_col: bounds
                .end_col
                .unwrap_or(grid.column_count)
                .min(grid.column_count),
        };
        let data = Arc::make_mut(&mut grid.data);
        for row in data
            .iter_mut()
            .skip(rect.start_row as usize)
            .take(rect.rows() as usize)
        {
            for cell in row
                .iter_mut()
                .skip(rect.start_col as usize)
                .take(rect.cols() as usize)
            {
                *cell = Cell::Empty;
            }
        }
        Ok(a1::format_range(&grid.title, rect))
    }

    /// `spreadsheets.batchUpdate` for `addSheet`, `updateSheetProperties`, `deleteSheet`,
    /// `sortRange`, `deleteDimension`, `insertDimension` and `appendDimension` (the last four in
    /// [`crate::edits`]): the replies, in order. All requests apply or none does.
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

    fn add_sheet(
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

    fn update_sheet_properties(
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

    fn delete_sheet(
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

/// A request of `spreadsheets.batchUpdate` that the emulator supports. Google's `Request` is a
/// union: exactly one of its fields is set, named for the request; each body is read by its
/// handler, with Google's messages for what it refuses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Request {
    AddSheet(Value),
    UpdateSheetProperties(Value),
    DeleteSheet(Value),
    SortRange(Value),
    DeleteDimension(Value),
    InsertDimension(Value),
    AppendDimension(Value),
}

impl Request {
    /// `requests[index]`, and the name of its field.
    fn parse(index: usize, request: &Value) -> Result<(String, Self), GoogleError> {
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
                "Invalid requests[{index}]: the emulator does not support '{kind}' (it supports addSheet, updateSheetProperties, deleteSheet, sortRange, deleteDimension, insertDimension and appendDimension)."
            ))),
        }
    }
}

/// Excel's "current region": grow from the first value in `search` while any cell bordering
/// the block (diagonals included) holds a value.
fn find_table(sheet: &Sheet, search: Rect) -> Option<Rect> {
    let last_row = search.end_row.min(sheet.data.len() as u32);
    let first = (search.start_row..last_row).find_map(|row| {
        (search.start_col..search.end_col)
            .find(|&col| !sheet.cell(row, col).is_empty())
            .map(|col| (row, col))
    })?;
    let mut table = Rect {
        start_row: first.0,
        end_row: first.0 + 1,
        start_col: first.1,
        end_col: first.1 + 1,
    };
    loop {
        let before = table;
        let left = table.start_col.saturating_sub(1);
        let right = (table.end_col + 1).min(sheet.column_count.max(table.end_col));
        // Down, as far as it goes, in one sweep: tables are long.
        while sheet.row_has_data(table.end_row, left, right) {
            table.end_row += 1;
        }
        if table.start_row > 0 && sheet.row_has_data(table.start_row - 1, left, right) {
            table.start_row -= 1;
        }
        let top = table.start_row.saturating_sub(1);
        let bottom = table.end_row + 1;
        if table.start_col > 0 && sheet.col_has_data(table.start_col - 1, top, bottom) {
            table.start_col -= 1;
        }
        while sheet.col_has_data(table.end_col, top, bottom) {
            table.end_col += 1;
        }
        if table == before {
            return Some(table);
        }
    }
}

fn transpose(columns: Vec<Vec<Option<Cell>>>) -> Vec<Vec<Option<Cell>>> {
    let height = columns.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows: Vec<Vec<Option<Cell>>> = vec![Vec::new(); height];
    for (col, column) in columns.into_iter().enumerate() {
        for (row, cell) in column.into_iter().enumerate() {
            let target = &mut rows[row];
            target.resize(col, None);
            target.push(cell);
        }
    }
    rows
}

/// Tab names are unique regardless of case; an exact match wins.
fn find_title(sheets: &[Sheet], title: &str) -> Option<usize> {
    sheets.iter().position(|s| s.title == title).or_else(|| {
        sheets
            .iter()
            .position(|s| s.title.to_lowercase() == title.to_lowercase())
    })
}

/// `SheetN` for the first free N, as the UI names new tabs.
fn default_title(sheets: &[Sheet]) -> String {
    (1..)
        .map(|n| format!("Sheet{n}"))
        .find(|title| find_title(sheets, title).is_none())
        .unwrap_or_else(|| "Sheet".into())
}

fn unused_sheet_id(sheets: &[Sheet], new_sheet_id: &mut impl FnMut() -> i64) -> i64 {
    loop {
        let id = new_sheet_id();
        if !sheets.iter().any(|s| s.id == id) {
            return id;
        }
    }
}

fn grid_size(grid: &Value) -> (u32, u32) {
    let rows = grid["rowCount"].as_u64().map_or(DEFAULT_ROWS, |n| n as u32);
    let columns = grid["columnCount"]
        .as_u64()
        .map_or(DEFAULT_COLUMNS, |n| n as u32);
    (rows, columns)
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
        let reply = s
            .append(
                "Sheet1!A:Z",
                &rows(2, 3),
                Major::Rows,
                raw,
                false,
                None,
                u64::MAX,
            )
            .unwrap();
        assert_eq!(reply["tableRange"], json!("Sheet1!B1:D10"));
        assert_eq!(reply["updates"]["updatedRange"], json!("Sheet1!B11:D12"));
        // A range of one cell still finds the whole table.
        let reply = s
            .append(
                "Sheet1!B1",
                &rows(1, 3),
                Major::Rows,
                raw,
                false,
                None,
                u64::MAX,
            )
            .unwrap();
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
