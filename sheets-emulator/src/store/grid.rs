//! A tab's grid: its cells, what it holds, how it renders, and where a table ends.

use super::*;

impl Sheet {
    pub(super) fn new(id: i64, title: String, row_count: u32, column_count: u32) -> Self {
        Self {
            id,
            title,
            row_count,
            column_count,
            data: Arc::new(Vec::new()),
        }
    }

    /// The cells of `bounds` inside the grid; an open side reaches the grid's edge.
    pub(super) fn within(&self, bounds: &CellRange) -> Rect {
        Rect {
            start_row: bounds.start_row.unwrap_or(0),
            end_row: bounds.end_row.unwrap_or(self.row_count).min(self.row_count),
            start_col: bounds.start_col.unwrap_or(0),
            end_col: bounds
                .end_col
                .unwrap_or(self.column_count)
                .min(self.column_count),
        }
    }

    pub(super) fn cell(&self, row: u32, col: u32) -> &Cell {
        static EMPTY: Cell = Cell::Empty;
        self.data
            .get(row as usize)
            .and_then(|cells| cells.get(col as usize))
            .unwrap_or(&EMPTY)
    }

    /// Whether row `row` has a value in columns `from..to`.
    pub(super) fn row_has_data(&self, row: u32, from: u32, to: u32) -> bool {
        self.data.get(row as usize).is_some_and(|cells| {
            let end = (to as usize).min(cells.len());
            let start = (from as usize).min(end);
            cells[start..end].iter().any(|cell| !cell.is_empty())
        })
    }

    pub(super) fn col_has_data(&self, col: u32, from_row: u32, to_row: u32) -> bool {
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

    pub(super) fn cells(&self) -> u64 {
        u64::from(self.row_count) * u64::from(self.column_count)
    }

    /// Writes `planned` (grid already checked), growing the grid as Sheets does.
    pub(super) fn apply(&mut self, planned: &Planned) {
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
    pub(super) fn render(&self, rect: Rect, major: Major, render: RenderOption) -> Vec<Vec<Value>> {
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
pub(super) fn line<'a>(cells: impl Iterator<Item = &'a Cell>, render: RenderOption) -> Vec<Value> {
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

/// Excel's "current region": grow from the first value in `search` while any cell bordering
/// the block (diagonals included) holds a value.
pub(super) fn find_table(sheet: &Sheet, search: Rect) -> Option<Rect> {
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

pub(super) fn transpose(columns: Vec<Vec<Option<Cell>>>) -> Vec<Vec<Option<Cell>>> {
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
