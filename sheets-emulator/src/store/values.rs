//! `spreadsheets.values`: reading, updating, appending and clearing cells. A write is planned
//! and checked whole before any cell changes.

use super::*;

impl Spreadsheet {
    /// The tab and cells `input` names: `Tab!A1:B2`, `Tab`, or `A1:B2` on the first tab. A bare
    /// word is a tab's name when there is such a tab, even if it also reads as cells.
    pub(super) fn resolve(&self, input: &str) -> Result<(usize, CellRange), GoogleError> {
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
    pub(super) fn clip_for_read(
        &self,
        sheet: usize,
        cells: CellRange,
    ) -> Result<Rect, GoogleError> {
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
            return Err(GoogleError::invalid_argument(past_the_grid(
                &grid.title,
                shown,
                grid.row_count,
                grid.column_count,
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

    pub(super) fn value_range(
        &self,
        sheet: usize,
        rect: Rect,
        major: Major,
        render: RenderOption,
    ) -> Value {
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
    pub(super) fn cells_from(
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
    pub(super) fn plan_update(
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
    pub(super) fn commit(&mut self, plans: &[Planned], max_cells: u64) -> Result<(), GoogleError> {
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
                return Err(GoogleError::invalid_argument(past_the_grid(
                    &self.sheets[plan.sheet].title,
                    rect,
                    *rows,
                    *cols,
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

    pub(super) fn updated_data(&self, plan: &Planned, render: RenderOption) -> Value {
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
        let search = grid.within(&bounds);
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
        let rect = grid.within(&bounds);
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
}
