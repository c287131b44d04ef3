//! Reconciling a tab: reading its `response_id` column and making `sheet_rows` say what it
//! holds, after an unknown outcome, a takeover, or rows a person moved.

use super::*;

/// What reading the `response_id` column found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reconciled {
    /// `sheet_rows` now says where each response is.
    Synced,
    /// No response left in the tab, while `sheet_rows` says rows were written to it.
    Emptied,
}

/// Reads the tab's `response_id` column and makes `sheet_rows` say what it holds: a response
/// found is recorded at its row (a row a person moved by sorting, inserting or deleting rows;
/// a row written but not recorded, after an append whose reply was lost: its revision is then
/// unknown, -1, so the next batch rewrites it), a response recorded but not found is forgotten
/// (its row was deleted or cleared: a new revision or an export appends it again). A response
/// whose id is in several rows (a person copied a row) is taken to be the topmost; the copies
/// are left alone.
pub(super) async fn reconcile(
    api: &SheetsApi,
    store: &Store,
    form_id: &FormId,
    target: &Target,
    tab: &TabState,
) -> Result<Reconciled, BatchError> {
    let column = column_letters(tab.response_id_column);
    let cells = api
        .read(
            &target.spreadsheet_id,
            &tab.range(&format!("{column}:{column}")),
        )
        .await?;
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut copies = 0;
    for (index, row) in cells.iter().enumerate().skip(1) {
        let Some(id) = row.first().and_then(id_text) else {
            continue;
        };
        if seen.insert(id.clone()) {
            found.push((id, index as i32 + 1));
        } else {
            copies += 1;
        }
    }
    if found.is_empty()
        && store
            .sheet_row_count(&target.spreadsheet_id, &target.tab)
            .await?
            > 0
    {
        // Refilling writes every response again: make sure the column read was the id column
        // (a person may have moved it since the header was read).
        let header = read_first_row(api, target, tab).await?;
        let position = header_names(&header)
            .iter()
            .position(|name| name == "response_id");
        if position.is_some_and(|position| position != tab.response_id_column) {
            return Err(BatchError::Api(ApiFailure {
                reason: format!(
                    "the response_id column of {} moved while it was read; reading it again",
                    target.tab
                ),
                ..ApiFailure::default()
            }));
        }
        return Ok(Reconciled::Emptied);
    }
    let forgotten = store.resync_sheet_rows(target.of(form_id), &found).await?;
    if forgotten > 0 || copies > 0 {
        warn!(
            spreadsheet = %target.spreadsheet_id,
            tab = %target.tab,
            forgotten,
            copies,
            "rows were deleted or cleared in the sheet (forgotten: a new revision or an export writes them again), or copied (the topmost row of an id is updated)"
        );
    }
    info!(
        spreadsheet = %target.spreadsheet_id,
        tab = %target.tab,
        rows = found.len(),
        "found the tab's rows by response_id"
    );
    Ok(Reconciled::Synced)
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
pub(super) fn column_letters(index: usize) -> String {
    let mut index = index + 1;
    let mut letters = Vec::new();
    while index > 0 {
        let rest = (index - 1) % 26;
        letters.push(b'A' + rest as u8);
        index = (index - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// A `response_id` cell as text (`None` when empty).
pub(super) fn id_text(cell: &Value) -> Option<String> {
    match cell {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The runs of rows to read to check `rows` (1-based) in one request: rows close together
/// share a range (a few cells more are cheaper than a longer URL), and there are never many
/// ranges. Rows past the grid are left out (they cannot hold anything: a mismatch).
pub(super) fn id_ranges(rows: &[i32], row_count: i32) -> Vec<(i32, i32)> {
    const GAP: i32 = 20;
    const MAX_RANGES: usize = 40;
    let mut rows: Vec<i32> = rows
        .iter()
        .copied()
        .filter(|row| *row >= 2 && *row <= row_count)
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let mut ranges: Vec<(i32, i32)> = Vec::new();
    for row in rows {
        match ranges.last_mut() {
            Some((_, last)) if row - *last <= GAP => *last = row,
            _ => ranges.push((row, row)),
        }
    }
    if ranges.len() > MAX_RANGES {
        let first = ranges.first().map_or(2, |r| r.0);
        let last = ranges.last().map_or(2, |r| r.1);
        ranges = vec![(first, last)];
    }
    ranges
}
