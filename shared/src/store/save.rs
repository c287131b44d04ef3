//! Saving a batch of responses, decided before a row is written: which responses are new,
//! which replace the stored revision, which are redeliveries and which are stale, what flag
//! event each written revision causes, and what each save returns. Pure (no database), so
//! the revision rules over a whole batch are unit-tested here. Each engine's
//! `save_responses` only reads the stored revisions, asks [`Prepared::decide`], writes the
//! rows it names and returns [`SaveDecision::outcomes`].

use crate::store::StoreError;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};

use super::responses::{NewResponse, SaveOutcome};
use crate::domain::{Decision, decide};
use crate::messages::{FlagEvent, FlagEventKind, ResponseMessage, ResponseStatus, StoredResponse};

/// A response's key: its form and its id within the form.
pub(crate) type Key<'a> = (&'a str, &'a str);

/// What the store holds of a response: its revision and whether it is flagged.
pub(crate) type Held = (i64, bool);

pub(crate) fn key(message: &ResponseMessage) -> Key<'_> {
    (message.form_id.as_str(), message.response_id.as_str())
}

pub(crate) fn owned_key(message: &ResponseMessage) -> (String, String) {
    let (form, id) = key(message);
    (form.to_owned(), id.to_owned())
}

/// A batch checked before it reaches the database: each response's status, and the batch's
/// indexes in key order (rows are locked and written in that order, so two concurrent
/// batches never deadlock).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    statuses: Vec<ResponseStatus>,
    order: Vec<usize>,
}

impl Prepared {
    /// Refuses a batch in which a response appears twice.
    pub fn new(batch: &[NewResponse<'_>]) -> Result<Self, StoreError> {
        let mut seen = HashSet::with_capacity(batch.len());
        if let Some(twice) = batch.iter().find(|new| !seen.insert(key(new.message))) {
            return Err(StoreError::TwiceInBatch {
                form_id: twice.message.form_id.to_string(),
                response_id: twice.message.response_id.to_string(),
            });
        }
        let statuses = batch
            .iter()
            .map(|new| ResponseStatus::of(new.flags))
            .collect();
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| key(batch[i].message));
        Ok(Self { statuses, order })
    }

    /// The batch's indexes in key order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// What each response of `batch` does, given what the store holds of it (`None`: nothing).
    pub fn decide(
        &self,
        batch: &[NewResponse<'_>],
        held: impl Fn(Key<'_>) -> Option<Held>,
    ) -> SaveDecision {
        let (decisions, replaces) = batch
            .iter()
            .zip(&self.statuses)
            .map(|(new, &status)| {
                let held = held(key(new.message));
                (
                    decide(held, new.message.revision.as_i64(), status),
                    held.is_some(),
                )
            })
            .unzip();
        SaveDecision {
            prepared: self.clone(),
            decisions,
            replaces,
        }
    }
}

/// What saving a batch does, response by response.
#[derive(Debug)]
pub(crate) struct SaveDecision {
    prepared: Prepared,
    /// In batch order.
    decisions: Vec<Decision>,
    /// In batch order: whether the store held the response (a write then replaces it).
    replaces: Vec<bool>,
}

impl SaveDecision {
    /// The responses seen for the first time, in key order: rows to insert.
    pub fn inserts(&self) -> Vec<usize> {
        self.in_order(|decision, replaces| matches!(decision, Decision::Write(_)) && !replaces)
    }

    /// The newer revisions of stored responses, in key order: rows to replace.
    pub fn updates(&self) -> Vec<usize> {
        self.in_order(|decision, replaces| matches!(decision, Decision::Write(_)) && replaces)
    }

    /// The revisions stored before (redeliveries), in key order.
    pub fn duplicates(&self) -> Vec<usize> {
        self.in_order(|decision, _| decision == Decision::Duplicate)
    }

    /// The keys of the revisions written, in key order: those a sheet must show now.
    pub fn written_keys<'a>(&self, batch: &'a [NewResponse<'_>]) -> Vec<Key<'a>> {
        self.in_order(|decision, _| matches!(decision, Decision::Write(_)))
            .into_iter()
            .map(|i| key(batch[i].message))
            .collect()
    }

    /// The status of response `i` of the batch.
    pub fn status(&self, i: usize) -> ResponseStatus {
        self.prepared.statuses[i]
    }

    /// The flag event that writing response `i` records (none unless it is written).
    pub fn event(&self, i: usize) -> Option<FlagEventKind> {
        match self.decisions[i] {
            Decision::Write(event) => event,
            _ => None,
        }
    }

    /// What saving returns, in batch order, once the rows are written: `written_at` is when a
    /// written response was stored, `duplicate` what the store holds of a redelivered one.
    /// Either missing means a row the decision counted on is not there: an error, never a
    /// guess.
    pub fn outcomes(
        &self,
        batch: &[NewResponse<'_>],
        written_at: impl Fn(usize) -> Option<DateTime<Utc>>,
        mut duplicate: impl FnMut(usize) -> Option<(StoredResponse, Option<FlagEventKind>)>,
    ) -> Result<Vec<SaveOutcome>, StoreError> {
        self.decisions
            .iter()
            .enumerate()
            .map(|(i, decision)| {
                Ok(match *decision {
                    Decision::Write(event) => SaveOutcome::Written {
                        stored: stored_response(
                            &batch[i],
                            self.status(i),
                            written_at(i).ok_or(StoreError::Missing)?,
                        ),
                        event,
                    },
                    Decision::Duplicate => {
                        let (stored, event) = duplicate(i).ok_or(StoreError::Missing)?;
                        SaveOutcome::Duplicate { stored, event }
                    }
                    Decision::Stale(stored_revision) => SaveOutcome::Stale { stored_revision },
                })
            })
            .collect()
    }

    fn in_order(&self, wanted: impl Fn(Decision, bool) -> bool) -> Vec<usize> {
        self.prepared
            .order
            .iter()
            .copied()
            .filter(|&i| wanted(self.decisions[i], self.replaces[i]))
            .collect()
    }
}

/// The flag events of the revisions written now, for the collector's history.
pub(crate) fn written_events(outcomes: &[SaveOutcome]) -> Vec<FlagEvent> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            SaveOutcome::Written {
                stored,
                event: Some(kind),
            } => Some(FlagEvent::new(*kind, stored, stored.stored_at)),
            _ => None,
        })
        .collect()
}

/// `stored_at` by key, for [`SaveDecision::outcomes`].
pub(crate) fn written_at<'m>(
    batch: &[NewResponse<'_>],
    stored_at: &'m HashMap<(String, String), DateTime<Utc>>,
) -> impl Fn(usize) -> Option<DateTime<Utc>> + 'm {
    let keys: Vec<(String, String)> = batch.iter().map(|new| owned_key(new.message)).collect();
    move |i| stored_at.get(&keys[i]).copied()
}

/// What a later read of a response written now will say.
fn stored_response(
    new: &NewResponse<'_>,
    status: ResponseStatus,
    stored_at: DateTime<Utc>,
) -> StoredResponse {
    let message = new.message;
    StoredResponse {
        response_id: message.response_id.clone(),
        form_id: message.form_id.clone(),
        revision: message.revision,
        form_version: new.form_version,
        status,
        flags: new.flags.to_vec(),
        collector: message.collector.clone(),
        // Both engines keep microseconds.
        submitted_at: message.submitted_at.map(|t| t.trunc_subsecs(6)),
        answers: message.answers.clone(),
        metadata: message.metadata.clone(),
        received_at: message.received_at.map(|t| t.trunc_subsecs(6)),
        stored_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Flag, Revision, Severity};
    use crate::messages::{Collector, FormId, ResponseId, UserId};

    fn message(form: &str, id: &str, revision: i64) -> ResponseMessage {
        ResponseMessage {
            form_id: FormId::parse(form.to_owned()).expect("a form id"),
            response_id: ResponseId::parse(id.to_owned()).expect("a response id"),
            revision: Revision::saturating_from_i64(revision),
            collector: Collector {
                user_id: UserId::parse("u-1".to_owned()).expect("a user id"),
                username: None,
            },
            submitted_at: None,
            answers: Default::default(),
            metadata: Default::default(),
            received_at: None,
        }
    }

    fn flagged() -> Vec<Flag> {
        vec![Flag {
            rule_id: "r".into(),
            message: "m".into(),
            severity: Severity::Error,
        }]
    }

    fn warned() -> Vec<Flag> {
        vec![Flag {
            rule_id: "w".into(),
            message: "m".into(),
            severity: Severity::Warning,
        }]
    }

    fn batch<'a>(items: &'a [(ResponseMessage, Vec<Flag>)]) -> Vec<NewResponse<'a>> {
        items
            .iter()
            .map(|(message, flags)| NewResponse {
                message,
                form_version: 1,
                flags,
            })
            .collect()
    }

    #[test]
    fn a_batch_is_decided_response_by_response_in_key_order() {
        let items = [
            (message("f", "new-flagged", 0), flagged()),
            (message("f", "cleared", 2), warned()),
            (message("f", "redelivered", 1), flagged()),
            (message("e", "stale", 1), Vec::new()),
            (message("e", "new", 0), Vec::new()),
        ];
        let batch = batch(&items);
        let held: HashMap<(&str, &str), Held> = [
            (("f", "cleared"), (1, true)),
            (("f", "redelivered"), (1, true)),
            (("e", "stale"), (3, false)),
        ]
        .into();
        let prepared = Prepared::new(&batch).expect("no response twice");
        assert_eq!(prepared.order(), [4, 3, 1, 0, 2], "by form, then id");
        let decision = prepared.decide(&batch, |key| held.get(&key).copied());

        assert_eq!(decision.inserts(), [4, 0]);
        assert_eq!(decision.updates(), [1]);
        assert_eq!(decision.duplicates(), [2]);
        assert_eq!(
            decision.written_keys(&batch),
            [("e", "new"), ("f", "cleared"), ("f", "new-flagged")]
        );
        assert_eq!(decision.status(0), ResponseStatus::Flagged);
        assert_eq!(decision.status(1), ResponseStatus::Valid, "a warning");
        assert_eq!(decision.event(0), Some(FlagEventKind::Flagged));
        assert_eq!(decision.event(1), Some(FlagEventKind::Cleared));
        assert_eq!(decision.event(2), None, "a redelivery records nothing");
        assert_eq!(decision.event(4), None);

        let at = DateTime::<Utc>::from_timestamp_micros(1_795_169_700_000_001).expect("a time");
        let before = DateTime::<Utc>::UNIX_EPOCH;
        let first = StoredResponse {
            status: ResponseStatus::Flagged,
            ..stored_response(&batch[2], ResponseStatus::Flagged, before)
        };
        let outcomes = decision
            .outcomes(
                &batch,
                |_| Some(at),
                |i| (i == 2).then(|| (first.clone(), Some(FlagEventKind::Flagged))),
            )
            .expect("every row there");
        assert_eq!(
            outcomes[1],
            SaveOutcome::Written {
                stored: stored_response(&batch[1], ResponseStatus::Valid, at),
                event: Some(FlagEventKind::Cleared),
            }
        );
        assert_eq!(
            outcomes[2],
            SaveOutcome::Duplicate {
                stored: first,
                event: Some(FlagEventKind::Flagged),
            }
        );
        assert_eq!(
            outcomes[3],
            SaveOutcome::Stale {
                stored_revision: Revision::saturating_from_i64(3)
            }
        );
        let events = written_events(&outcomes);
        let recorded: Vec<(&str, FlagEventKind)> = events
            .iter()
            .map(|event| (event.response_id.as_str(), event.kind))
            .collect();
        assert_eq!(
            recorded,
            [
                ("new-flagged", FlagEventKind::Flagged),
                ("cleared", FlagEventKind::Cleared)
            ]
        );
    }

    #[test]
    fn a_response_twice_in_a_batch_is_refused() {
        let items = [
            (message("f", "r", 0), Vec::new()),
            (message("f", "r", 1), Vec::new()),
        ];
        assert!(Prepared::new(&batch(&items)).is_err());
        let items = [
            (message("f", "r", 0), Vec::new()),
            (message("g", "r", 0), Vec::new()),
        ];
        assert!(Prepared::new(&batch(&items)).is_ok(), "two forms, one id");
    }

    #[test]
    fn a_row_the_decision_counted_on_must_be_there() {
        let items = [(message("f", "r", 1), Vec::new())];
        let batch = batch(&items);
        let prepared = Prepared::new(&batch).expect("prepared");
        let written = prepared.decide(&batch, |_| None);
        assert!(written.outcomes(&batch, |_| None, |_| None).is_err());
        let redelivered = prepared.decide(&batch, |_| Some((1, false)));
        assert!(
            redelivered
                .outcomes(&batch, |_| Some(Utc::now()), |_| None)
                .is_err()
        );
    }
}
