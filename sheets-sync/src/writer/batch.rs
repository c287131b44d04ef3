//! A batch on its way to a tab: its rows, what it achieved so far, and a refused request
//! split until the refused rows are alone.

use super::*;

/// A row on its way to the sheet.
pub(super) struct Item {
    pub(super) id: String,
    pub(super) revision: i64,
    pub(super) enqueued_at: DateTime<Utc>,
    /// Its cells as JSON text, as they travel in the request: a few hundred bytes a row of
    /// the seed form, where a `Vec<Value>` of them took several times that, and a batch holds
    /// thousands of rows while the client builds its request. See [`Item::cells`].
    pub(super) json: Box<str>,
    /// Its row, for an update.
    pub(super) row: i32,
}

impl Item {
    pub(super) fn new(
        id: String,
        revision: i64,
        enqueued_at: DateTime<Utc>,
        cells: &[Value],
    ) -> Self {
        Self {
            id,
            revision,
            enqueued_at,
            // Serialising JSON values to text cannot fail.
            json: serde_json::to_string(cells).unwrap_or_default().into(),
            row: 0,
        }
    }

    /// The row's length as JSON, as it travels in the request body.
    pub(super) fn bytes(&self) -> usize {
        self.json.len()
    }

    /// Its cells (`null` marks a cell that is not the form's: a person's column).
    pub(super) fn cells(&self) -> Vec<Value> {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// What a batch achieved so far, recorded even when a later request fails.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) written: Vec<(String, i32, i64)>,
    pub(super) done: Vec<(String, DateTime<Utc>)>,
    pub(super) parked: Vec<ParkRow>,
}

impl Progress {
    pub(super) fn wrote(&mut self, row: i32, item: Item) {
        self.done.push((item.id.clone(), item.enqueued_at));
        self.written.push((item.id, row, item.revision));
    }
}

/// After a refusal: a request refused for its content is split in halves (queued first, in
/// order), a row refused alone is parked; any other failure is returned.
pub(super) fn split(
    groups: &mut VecDeque<Vec<Item>>,
    progress: &mut Progress,
    mut group: Vec<Item>,
    refusal: ApiFailure,
) -> Result<(), ApiFailure> {
    if !refusal.refuses_content {
        return Err(refusal);
    }
    if group.len() > 1 {
        let second = group.split_off(group.len() / 2);
        groups.push_front(second);
        groups.push_front(group);
        return Ok(());
    }
    for item in group {
        progress.parked.push(ParkRow {
            response_id: item.id,
            revision: item.revision,
            reason: refusal.reason.clone(),
            enqueued_at: item.enqueued_at,
        });
    }
    Ok(())
}

/// The runs of the form's own cells in a row (`null` marks another column: a person's):
/// `(first column index, cells)`.
pub(super) fn owned_runs(cells: &[Value]) -> Vec<(usize, Vec<Value>)> {
    let mut runs: Vec<(usize, Vec<Value>)> = Vec::new();
    let mut open = false;
    for (index, cell) in cells.iter().enumerate() {
        if cell.is_null() {
            open = false;
            continue;
        }
        match runs.last_mut() {
            Some((_, run)) if open => run.push(cell.clone()),
            _ => runs.push((index, vec![cell.clone()])),
        }
        open = true;
    }
    runs
}
