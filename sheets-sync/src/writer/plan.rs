//! What a batch does to its tab, decided before a request is sent, and pure (unit-tested
//! without the emulator): which rows to read first (those it would overwrite), whether they
//! moved since they were written, and the [`RowPlan`]: the rows to update in place, the rows
//! to append, those whose revision the tab holds already, and whether some wait for the next
//! batch.

use super::*;
use collect_shared::messages::StoredResponse;

/// Where `sheet_rows` says each response is: `response_id → (row, revision written there)`.
pub(super) type Known = HashMap<String, (i32, i64)>;

/// The row a pending response would overwrite: its row holds another revision, or an export
/// rewrites it.
fn overwrites(pending: &PendingRow, known: &Known) -> Option<i32> {
    let (row, written) = known.get(pending.response.response_id.as_str())?;
    (*written != pending.response.revision.as_i64() || pending.force).then_some(*row)
}

/// The rows this batch would overwrite: each is read first, to be sure it still holds its
/// response.
pub(super) fn rows_to_verify(rows: &[PendingRow], known: &Known) -> Vec<i32> {
    rows.iter()
        .filter_map(|pending| overwrites(pending, known))
        .collect()
}

/// Whether a row this batch would overwrite no longer holds its response (`holds`: the
/// `response_id` read in each row): someone sorted, inserted, deleted or cleared rows.
pub(super) fn moved(rows: &[PendingRow], known: &Known, holds: &HashMap<i32, String>) -> bool {
    rows.iter().any(|pending| {
        overwrites(pending, known).is_some_and(|row| {
            holds.get(&row).map(String::as_str) != Some(pending.response.response_id.as_str())
        })
    })
}

/// What a batch writes.
pub(super) struct RowPlan {
    /// Rows overwritten where `sheet_rows` says they are.
    pub(super) updates: Vec<Item>,
    /// Responses without a row.
    pub(super) appends: Vec<Item>,
    /// Responses whose revision the tab holds already: off the outbox, nothing written.
    pub(super) done: Vec<(String, DateTime<Utc>)>,
    /// Some rows did not fit under the byte cap and wait for the next batch.
    pub(super) left: bool,
}

/// The bytes a request carries besides its rows.
pub(super) const REQUEST_OVERHEAD_BYTES: usize = 1024;

impl RowPlan {
    /// Each response once (its first row in the batch), its cells made by `cells`; the
    /// updates, and the appends, each within `max_bytes` (an update's ranges name `tab`, and
    /// travel with it). A first row always fits: a request of one row too big is the API's
    /// to refuse (and the row's to be parked).
    pub(super) fn new(
        rows: &[PendingRow],
        known: &Known,
        tab: &str,
        max_bytes: usize,
        cells: impl Fn(&StoredResponse) -> Vec<Value>,
    ) -> Self {
        let mut plan = Self {
            updates: Vec::new(),
            appends: Vec::new(),
            done: Vec::new(),
            left: false,
        };
        let mut seen = HashSet::new();
        let (mut update_bytes, mut append_bytes) = (0, 0);
        let fits = |used: usize, bytes: usize| {
            used == 0 || used + bytes + REQUEST_OVERHEAD_BYTES <= max_bytes
        };
        for pending in rows {
            let response = &pending.response;
            let id = response.response_id.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let revision = response.revision.as_i64();
            if known
                .get(&id)
                .is_some_and(|&(_, written)| written == revision)
                && !pending.force
            {
                plan.done.push((id, pending.enqueued_at));
                continue;
            }
            let cells = cells(response);
            let item = Item::new(id, revision, pending.enqueued_at, &cells);
            match known.get(&item.id) {
                Some(&(row, _)) => {
                    // The ranges and their wrappers travel with each update.
                    let bytes = item.bytes() + (tab.len() + 64) * owned_runs(&cells).len();
                    if fits(update_bytes, item.bytes()) {
                        update_bytes += bytes;
                        plan.updates.push(Item { row, ..item });
                    } else {
                        plan.left = true;
                    }
                }
                None => {
                    if fits(append_bytes, item.bytes()) {
                        append_bytes += item.bytes() + 1;
                        plan.appends.push(item);
                    } else {
                        plan.left = true;
                    }
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collect_shared::messages::{Collector, ResponseId, ResponseStatus, Revision, UserId};

    fn pending(id: &str, revision: i64, force: bool) -> PendingRow {
        PendingRow {
            response: StoredResponse {
                response_id: ResponseId::parse(id).expect("an id"),
                form_id: FormId::parse("f").expect("a form id"),
                revision: Revision::saturating_from_i64(revision),
                form_version: 1,
                status: ResponseStatus::Valid,
                flags: Vec::new(),
                collector: Collector {
                    user_id: UserId::parse("u-1").expect("a user id"),
                    username: None,
                },
                submitted_at: None,
                answers: Default::default(),
                metadata: Default::default(),
                received_at: None,
                stored_at: DateTime::<Utc>::UNIX_EPOCH,
            },
            force,
            enqueued_at: DateTime::<Utc>::UNIX_EPOCH,
            document_bytes: 0,
        }
    }

    fn known() -> Known {
        [
            ("same".to_owned(), (2, 1)),
            ("newer".to_owned(), (3, 1)),
            ("exported".to_owned(), (4, 1)),
        ]
        .into()
    }

    fn batch() -> Vec<PendingRow> {
        vec![
            pending("same", 1, false),
            pending("newer", 2, false),
            pending("exported", 1, true),
            pending("new", 0, false),
            pending("newer", 3, false),
        ]
    }

    fn ids(items: &[Item]) -> Vec<(&str, i32)> {
        items
            .iter()
            .map(|item| (item.id.as_str(), item.row))
            .collect()
    }

    #[test]
    fn only_rows_it_would_overwrite_are_verified() {
        assert_eq!(rows_to_verify(&batch(), &known()), [3, 4, 3]);
        let holds: HashMap<i32, String> =
            [(3, "newer".to_owned()), (4, "exported".to_owned())].into();
        assert!(!moved(&batch(), &known(), &holds));
        let sorted: HashMap<i32, String> =
            [(3, "exported".to_owned()), (4, "newer".to_owned())].into();
        assert!(moved(&batch(), &known(), &sorted));
        let cleared: HashMap<i32, String> = [(4, "exported".to_owned())].into();
        assert!(moved(&batch(), &known(), &cleared));
    }

    #[test]
    fn a_batch_is_planned_row_by_row() {
        let plan = RowPlan::new(&batch(), &known(), "Responses", 1 << 20, |response| {
            vec![Value::from(response.response_id.as_str()), Value::Null]
        });
        assert_eq!(ids(&plan.updates), [("newer", 3), ("exported", 4)]);
        assert_eq!(
            plan.updates[0].revision, 2,
            "the first of a response's rows in the batch"
        );
        assert_eq!(ids(&plan.appends), [("new", 0)]);
        let done: Vec<&str> = plan.done.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(done, ["same"]);
        assert!(!plan.left);
        assert_eq!(plan.appends[0].bytes(), r#"["new",null]"#.len());
    }

    #[test]
    fn what_is_over_the_byte_cap_waits_for_the_next_batch() {
        let rows: Vec<PendingRow> = (0..4)
            .map(|i| pending(&format!("r-{i}"), 0, false))
            .collect();
        let big = |_: &StoredResponse| vec![Value::from("x".repeat(600))];
        // A row is 604 bytes, and 1 for the comma after it.
        let cap = 605 + 604 + REQUEST_OVERHEAD_BYTES;
        let plan = RowPlan::new(&rows, &Known::new(), "T", cap, big);
        assert_eq!(ids(&plan.appends), [("r-0", 0), ("r-1", 0)]);
        assert!(plan.left);
        // A first row always goes, however big: the API refuses it, and it is parked.
        let plan = RowPlan::new(&rows[..1], &Known::new(), "T", 10, big);
        assert_eq!(plan.appends.len(), 1);
        assert!(!plan.left);
    }
}
