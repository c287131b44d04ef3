//! The `spreadsheets.batchUpdate` requests that change a tab's shape or order, as a person does
//! in the UI: `sortRange`, `deleteDimension`, `insertDimension`, `appendDimension`. Each works on
//! the draft [`Spreadsheet::batch_update`] commits only when every request of the batch passed,
//! and each replies `{}` (Google's `Response` has no field for them).
//!
//! Messages are Google's where one is known (see the README's emulator section); the others
//! follow their style and say so in a comment.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::a1::Rect;
use crate::cell::Cell;
use crate::error::GoogleError;
use crate::store::{Sheet, Spreadsheet, invalid_enum, past_the_grid};

/// A request's entry in the batch's `replies`, or why the batch fails.
type Reply = Result<Value, GoogleError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Rows,
    Columns,
}

impl Dimension {
    fn singular(self) -> &'static str {
        match self {
            Self::Rows => "row",
            Self::Columns => "column",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Rows => "rows",
            Self::Columns => "columns",
        }
    }

    /// The grid's number of rows or columns.
    fn count(self, grid: &mut Sheet) -> &mut u32 {
        match self {
            Self::Rows => &mut grid.row_count,
            Self::Columns => &mut grid.column_count,
        }
    }
}

/// `deleteDimension` → `delete_dimension`, as Google names fields in enum errors.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a request sits, for messages: `requests[2]` and `deleteDimension`.
pub(crate) struct At<'a> {
    pub index: usize,
    pub kind: &'a str,
}

impl At<'_> {
    fn fail(&self, message: impl std::fmt::Display) -> GoogleError {
        GoogleError::invalid_argument(format!(
            "Invalid requests[{}].{}: {message}",
            self.index, self.kind
        ))
    }

    /// Google's message for an enum value it does not know, at `field` under this request.
    fn bad_enum(&self, field: &str, kind: &str, value: &str) -> GoogleError {
        invalid_enum(
            &format!("requests[{}].{}.{field}", self.index, snake(self.kind)),
            kind,
            value,
        )
    }

    /// An optional non-negative index (`startIndex`, `endRowIndex`...).
    fn index(&self, body: &Value, field: &str, what: &str) -> Result<Option<u32>, GoogleError> {
        match &body[field] {
            Value::Null => Ok(None),
            value => match value.as_i64() {
                Some(n) if n < 0 => Err(self.fail(format!("{what} indexes must be >= 0"))),
                Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
                None => Err(GoogleError::invalid_argument(format!(
                    "Invalid value at 'requests[{}].{}.{}' (TYPE_INT32), {value}",
                    self.index,
                    snake(self.kind),
                    snake(field)
                ))),
            },
        }
    }

    fn dimension(&self, body: &Value, field: &str) -> Result<Dimension, GoogleError> {
        match body["dimension"].as_str() {
            Some("ROWS") => Ok(Dimension::Rows),
            Some("COLUMNS") => Ok(Dimension::Columns),
            // Unverified wording: Google's text for a missing dimension is not documented.
            None | Some("DIMENSION_UNSPECIFIED") => {
                Err(self.fail(format!("{field}dimension must be ROWS or COLUMNS.")))
            }
            Some(other) => {
                Err(self.bad_enum(&format!("{}dimension", snake(field)), "Dimension", other))
            }
        }
    }
}

/// A request's `range` (a `DimensionRange`): the grid (its index in the spreadsheet), rows or
/// columns, the ends as given, and the grid's size along that dimension.
struct DimensionRange {
    sheet: usize,
    dimension: Dimension,
    start: Option<u32>,
    end: Option<u32>,
    count: u32,
}

impl Spreadsheet {
    /// The request's `range`, read and checked.
    fn dimension_range(
        &mut self,
        body: &Value,
        at: &At<'_>,
    ) -> Result<DimensionRange, GoogleError> {
        let range = &body["range"];
        let sheet = self.sheet_by_id(range["sheetId"].as_i64().unwrap_or(0), at)?;
        let dimension = at.dimension(range, "range.")?;
        Ok(DimensionRange {
            sheet,
            dimension,
            start: at.index(range, "startIndex", "DimensionRange")?,
            end: at.index(range, "endIndex", "DimensionRange")?,
            count: *dimension.count(&mut self.sheets[sheet]),
        })
    }

    fn sheet_by_id(&self, id: i64, at: &At<'_>) -> Result<usize, GoogleError> {
        self.sheets
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| at.fail(format!("No grid with id: {id}")))
    }

    /// `deleteDimension`: removes the rows or columns of `range` (a `DimensionRange`; an
    /// unbounded side reaches the grid's edge) and shrinks the grid by as many.
    pub(crate) fn delete_dimension(&mut self, body: &Value, at: &At<'_>) -> Reply {
        let range = self.dimension_range(body, at)?;
        let (dimension, count) = (range.dimension, range.count);
        let start = range.start.unwrap_or(0);
        let end = range.end.unwrap_or(count);
        let grid = &mut self.sheets[range.sheet];
        if end > count {
            // Google's words (seen in the wild for rows; columns by analogy).
            return Err(at.fail(format!(
                "Cannot delete a {} that doesn't exist. Tried to delete {} index {} but there are only {count} {}.",
                dimension.singular(),
                dimension.singular(),
                end - 1,
                dimension.plural()
            )));
        }
        if start >= end {
            // Unverified wording.
            return Err(at.fail("range.startIndex must be less than range.endIndex."));
        }
        if start == 0 && end == count {
            // Google's words (rows seen in the wild; columns by analogy).
            return Err(at.fail(format!(
                "You can't delete all the {} on the sheet.",
                dimension.plural()
            )));
        }
        let data = Arc::make_mut(&mut grid.data);
        match dimension {
            Dimension::Rows => {
                let from = (start as usize).min(data.len());
                let to = (end as usize).min(data.len());
                data.drain(from..to);
            }
            Dimension::Columns => {
                for row in data.iter_mut() {
                    let from = (start as usize).min(row.len());
                    let to = (end as usize).min(row.len());
                    row.drain(from..to);
                }
            }
        }
        *dimension.count(grid) = count - (end - start);
        Ok(json!({}))
    }

    /// `insertDimension`: empty rows or columns at `range` (both ends bounded), the grid grows.
    /// `inheritFromBefore` only chooses whose formatting the new ones take (not emulated), but
    /// Google checks the index against it.
    pub(crate) fn insert_dimension(&mut self, body: &Value, at: &At<'_>) -> Reply {
        let range = self.dimension_range(body, at)?;
        let (dimension, count) = (range.dimension, range.count);
        let inherit_before = body["inheritFromBefore"].as_bool().unwrap_or(false);
        // Google's words.
        let start = range
            .start
            .ok_or_else(|| at.fail("range.startIndex must be set"))?;
        // By analogy with startIndex.
        let end = range
            .end
            .ok_or_else(|| at.fail("range.endIndex must be set"))?;
        let grid = &mut self.sheets[range.sheet];
        if !inherit_before && start >= count {
            // Google's words.
            return Err(at.fail(format!(
                "range.startIndex must be less than the grid size ({count}) if inheritFromBefore is false."
            )));
        }
        if inherit_before && start == 0 {
            // The reference: "in which case the start index must be greater than 0"; wording
            // by analogy.
            return Err(
                at.fail("range.startIndex must be greater than 0 if inheritFromBefore is true.")
            );
        }
        if inherit_before && start > count {
            // By analogy.
            return Err(at.fail(format!(
                "range.startIndex must be less than or equal to the grid size ({count}) if inheritFromBefore is true."
            )));
        }
        if end <= start {
            // Unverified wording.
            return Err(at.fail("range.startIndex must be less than range.endIndex."));
        }
        let added = end - start;
        let data = Arc::make_mut(&mut grid.data);
        match dimension {
            Dimension::Rows => {
                let at_row = start as usize;
                if at_row < data.len() {
                    data.splice(at_row..at_row, (0..added).map(|_| Vec::new()));
                }
            }
            Dimension::Columns => {
                let at_col = start as usize;
                for row in data.iter_mut() {
                    if at_col < row.len() {
                        row.splice(at_col..at_col, (0..added).map(|_| Cell::Empty));
                    }
                }
            }
        }
        *dimension.count(grid) = count.saturating_add(added);
        Ok(json!({}))
    }

    /// `appendDimension`: `length` empty rows or columns at the end of the grid.
    pub(crate) fn append_dimension(&mut self, body: &Value, at: &At<'_>) -> Reply {
        let sheet = self.sheet_by_id(body["sheetId"].as_i64().unwrap_or(0), at)?;
        let dimension = at.dimension(body, "")?;
        let length = match body["length"].as_i64() {
            Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
            // Unverified wording.
            _ => return Err(at.fail("length must be greater than 0.")),
        };
        let grid = &mut self.sheets[sheet];
        let count = dimension.count(grid);
        *count = count.saturating_add(length);
        Ok(json!({}))
    }

    /// `sortRange`: reorders the rows of `range` (a `GridRange`; an unbounded side reaches the
    /// grid's edge) by `sortSpecs`, first spec first. Only the range's cells move. Order: numbers,
    /// then text (case-insensitive), then booleans (FALSE before TRUE); `DESCENDING` reverses
    /// that; empty cells go last either way. Ties keep their order (the sort is stable).
    /// Formulas are never evaluated here, so they sort as their text.
    pub(crate) fn sort_range(&mut self, body: &Value, at: &At<'_>) -> Reply {
        let range = &body["range"];
        let sheet = self.sheet_by_id(range["sheetId"].as_i64().unwrap_or(0), at)?;
        let start_row = at.index(range, "startRowIndex", "GridRange")?;
        let end_row = at.index(range, "endRowIndex", "GridRange")?;
        let start_col = at.index(range, "startColumnIndex", "GridRange")?;
        let end_col = at.index(range, "endColumnIndex", "GridRange")?;
        let grid = &self.sheets[sheet];
        let rect = Rect {
            start_row: start_row.unwrap_or(0),
            end_row: end_row.unwrap_or(grid.row_count),
            start_col: start_col.unwrap_or(0),
            end_col: end_col.unwrap_or(grid.column_count),
        };
        if rect.end_row > grid.row_count || rect.end_col > grid.column_count {
            // The wording Google uses for values ranges past the grid.
            return Err(at.fail(past_the_grid(
                &grid.title,
                rect,
                grid.row_count,
                grid.column_count,
            )));
        }
        let mut specs = Vec::new();
        for (i, spec) in body["sortSpecs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let column = match spec["dimensionIndex"].as_i64() {
                Some(c) if c >= 0 => u32::try_from(c).unwrap_or(u32::MAX),
                // Unverified wording.
                _ => {
                    return Err(at.fail(format!(
                        "sortSpecs[{i}].dimensionIndex must be set and >= 0."
                    )));
                }
            };
            if column < rect.start_col || column >= rect.end_col {
                // Unverified wording.
                return Err(at.fail(format!(
                    "sortSpecs[{i}].dimensionIndex {column} is outside the range's columns."
                )));
            }
            let descending = match spec["sortOrder"].as_str() {
                None | Some("ASCENDING") | Some("SORT_ORDER_UNSPECIFIED") => false,
                Some("DESCENDING") => true,
                Some(other) => {
                    return Err(at.bad_enum(
                        &format!("sort_specs[{i}].sort_order"),
                        "SortOrder",
                        other,
                    ));
                }
            };
            specs.push((column, descending));
        }
        if specs.is_empty() || rect.start_row >= rect.end_row || rect.start_col >= rect.end_col {
            return Ok(json!({}));
        }
        let grid = &mut self.sheets[sheet];
        let data = Arc::make_mut(&mut grid.data);
        // Rows past the stored data are empty and stay where they are (last).
        let last = (rect.end_row as usize).min(data.len());
        let first = (rect.start_row as usize).min(last);
        let width = rect.cols() as usize;
        let from = rect.start_col as usize;
        let mut blocks: Vec<Vec<Cell>> = data[first..last]
            .iter()
            .map(|row| {
                (from..from + width)
                    .map(|col| row.get(col).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
        blocks.sort_by(|a, b| {
            for &(column, descending) in &specs {
                let offset = (column - rect.start_col) as usize;
                let ordering = compare(&a[offset], &b[offset], descending);
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
        for (row, block) in data[first..last].iter_mut().zip(blocks) {
            if row.len() < from + width {
                row.resize_with(from + width, Cell::default);
            }
            for (offset, cell) in block.into_iter().enumerate() {
                row[from + offset] = cell;
            }
            let used = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
            row.truncate(used);
        }
        Ok(json!({}))
    }
}

/// Type rank then value; empty last whatever the order.
fn compare(a: &Cell, b: &Cell, descending: bool) -> Ordering {
    fn rank(cell: &Cell) -> u8 {
        match cell {
            Cell::Number(_) => 0,
            Cell::Text(_) | Cell::Formula(_) => 1,
            Cell::Bool(_) => 2,
            Cell::Empty => 3,
        }
    }
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let ordering = rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Cell::Number(x), Cell::Number(y)) => x.total_cmp(y),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Text(x) | Cell::Formula(x), Cell::Text(y) | Cell::Formula(y)) => {
            x.to_lowercase().cmp(&y.to_lowercase())
        }
        _ => Ordering::Equal,
    });
    if descending {
        ordering.reverse()
    } else {
        ordering
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_text_booleans_then_empty_both_ways() {
        let mut cells = vec![
            Cell::Empty,
            Cell::Bool(true),
            Cell::Text("banana".into()),
            Cell::Number(10.0),
            Cell::Text("Apple".into()),
            Cell::Bool(false),
            Cell::Number(-2.0),
        ];
        cells.sort_by(|a, b| compare(a, b, false));
        assert_eq!(
            cells,
            vec![
                Cell::Number(-2.0),
                Cell::Number(10.0),
                Cell::Text("Apple".into()),
                Cell::Text("banana".into()),
                Cell::Bool(false),
                Cell::Bool(true),
                Cell::Empty,
            ]
        );
        cells.sort_by(|a, b| compare(a, b, true));
        assert_eq!(
            cells,
            vec![
                Cell::Bool(true),
                Cell::Bool(false),
                Cell::Text("banana".into()),
                Cell::Text("Apple".into()),
                Cell::Number(10.0),
                Cell::Number(-2.0),
                Cell::Empty,
            ]
        );
    }

    #[test]
    fn snake_names_fields_like_google() {
        assert_eq!(snake("deleteDimension"), "delete_dimension");
        assert_eq!(snake("sortRange"), "sort_range");
    }
}
