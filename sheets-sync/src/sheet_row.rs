//! A form's sheet: the header row and one row per response, one column per question.

use collect_shared::forms::{Form, Severity};
use collect_shared::messages::StoredResponse;
use serde_json::Value;

/// Google's limit on one cell's text.
pub const MAX_CELL_CHARS: usize = 50_000;

/// What ends a cut cell, within the limit.
pub const TRUNCATED: &str = "…[truncated]";

/// The columns before the metadata fields.
const FIXED: [&str; 4] = ["response_id", "revision", "status", "flags"];

/// Where a column's cells come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Fixed(&'static str),
    Metadata(String),
    Question(String),
}

/// The form's columns and their sources, in order: `response_id`, `revision`, `status`,
/// `flags`, the metadata fields, then every question. A question column is headed by its
/// label, unless the label is already a column (`status`, a metadata field, ...): then
/// `<label> (question)`, so that its answer is not hidden behind the other column.
fn columns(form: &Form) -> Vec<(String, Source)> {
    let mut columns: Vec<(String, Source)> = FIXED
        .iter()
        .map(|name| ((*name).to_owned(), Source::Fixed(name)))
        .collect();
    for field in &form.definition.metadata {
        if !columns.iter().any(|(name, _)| name == field) {
            columns.push((field.clone(), Source::Metadata(field.clone())));
        }
    }
    let reserved: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
    for question in &form.definition.questions {
        let label = &question.label;
        let taken = |name: &str, columns: &[(String, Source)]| {
            reserved.iter().any(|r| r == name) || columns.iter().any(|(c, _)| c == name)
        };
        let name = if !taken(label, &columns) {
            label.clone()
        } else if !taken(&format!("{label} (question)"), &columns) {
            format!("{label} (question)")
        } else {
            format!("{label} (question {})", question.id)
        };
        columns.push((name, Source::Question(question.id.clone())));
    }
    columns
}

/// The columns a form wants, in order (see [`columns`]).
pub fn wanted_columns(form: &Form) -> Vec<String> {
    columns(form).into_iter().map(|(name, _)| name).collect()
}

/// The header to keep: what the sheet has, plus what the form wants and it lacks, on the
/// right. A question added later becomes a new column; nothing already there moves.
pub fn merged_header(existing: &[String], wanted: &[String]) -> Vec<String> {
    let mut header: Vec<String> = existing.to_vec();
    while header.last().is_some_and(String::is_empty) {
        header.pop();
    }
    for column in wanted {
        if !header.contains(column) {
            header.push(column.clone());
        }
    }
    header
}

/// The response's cells under `header`, each within Google's cell limit. Only the form's own
/// columns get a value: any other column (one a person added, such as "reviewer notes", or
/// one of a question since removed from the form) gets `null`, and the writer leaves those
/// cells out of what it writes, so what the sheet holds there stays.
pub fn row(form: &Form, header: &[String], response: &StoredResponse) -> Vec<Value> {
    let sources: std::collections::HashMap<String, Source> = columns(form).into_iter().collect();
    header
        .iter()
        .map(|column| fit(cell(sources.get(column), column, response)))
        .collect()
}

fn cell(source: Option<&Source>, column: &str, response: &StoredResponse) -> Value {
    match source {
        Some(Source::Fixed("response_id")) => Value::String(response.response_id.to_string()),
        Some(Source::Fixed("revision")) => Value::from(response.revision.get()),
        Some(Source::Fixed("status")) => Value::String(response.status.as_str().into()),
        Some(Source::Fixed(_)) => Value::String(flags_text(response)),
        Some(Source::Question(id)) => scalar(response.answers.get(id)),
        Some(Source::Metadata(_)) => metadata(column, response),
        // Not the form's: a person's column, or a removed question's. Left as it is.
        None => Value::Null,
    }
}

fn metadata(column: &str, response: &StoredResponse) -> Value {
    if let Some(value) = response.metadata.get(column) {
        return scalar(Some(value));
    }
    match column {
        "user_id" => Value::String(response.collector.user_id.to_string()),
        "username" => scalar(
            response
                .collector
                .username
                .as_ref()
                .map(|name| Value::String(name.clone()))
                .as_ref(),
        ),
        _ => Value::String(String::new()),
    }
}

fn flags_text(response: &StoredResponse) -> String {
    response
        .flags
        .iter()
        .map(|flag| match flag.severity {
            Severity::Error => format!("{}: {}", flag.rule_id, flag.message),
            Severity::Warning => format!("{} (warning): {}", flag.rule_id, flag.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A JSON answer as a cell: scalars as they are, anything else as its JSON text, no answer
/// as an empty cell.
fn scalar(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::Bool(_) | Value::Number(_)) => value.cloned().unwrap_or_default(),
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(other) => Value::String(other.to_string()),
    }
}

/// A cell within Google's 50,000 characters: longer text is cut on a character boundary and
/// ends with [`TRUNCATED`]. Characters are counted as UTF-16 code units, which is never fewer
/// than Unicode characters, so the cut text fits however Google counts.
fn fit(cell: Value) -> Value {
    match cell {
        Value::String(text) => Value::String(truncate(text)),
        other => other,
    }
}

pub fn truncate(text: String) -> String {
    // Quick check: a string of at most MAX bytes has at most MAX UTF-16 units.
    if text.len() <= MAX_CELL_CHARS || text.encode_utf16().count() <= MAX_CELL_CHARS {
        return text;
    }
    let budget = MAX_CELL_CHARS - TRUNCATED.encode_utf16().count();
    let mut units = 0;
    let mut end = 0;
    for (index, c) in text.char_indices() {
        if units + c.len_utf16() > budget {
            break;
        }
        units += c.len_utf16();
        end = index + c.len_utf8();
    }
    let mut cut = String::with_capacity(end + TRUNCATED.len());
    cut.push_str(&text[..end]);
    cut.push_str(TRUNCATED);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use collect_shared::forms::household_finance;

    #[test]
    fn long_text_is_cut_within_the_limit_with_a_marker() {
        let short = "x".repeat(MAX_CELL_CHARS);
        assert_eq!(truncate(short.clone()), short);
        let cut = truncate("é".repeat(MAX_CELL_CHARS + 1));
        assert_eq!(cut.chars().count(), MAX_CELL_CHARS);
        assert!(cut.ends_with(TRUNCATED) && cut.starts_with("éé"));
        // Characters outside the BMP are two UTF-16 units: the cut stays within the limit
        // counted either way, on a character boundary.
        let cut = truncate("😀".repeat(30_000));
        assert!(cut.encode_utf16().count() <= MAX_CELL_CHARS);
        assert!(cut.ends_with(TRUNCATED));
        assert_eq!(cut.trim_end_matches(TRUNCATED).chars().count(), 24_994);
    }

    #[test]
    fn a_question_named_like_another_column_gets_a_column_of_its_own() {
        let mut form = household_finance();
        form.definition.questions[0].label = "status".into();
        form.definition.questions[1].label = "location".into();
        form.definition.questions[2].label = "status (question)".into();
        let columns = wanted_columns(&form);
        assert_eq!(columns.iter().filter(|c| *c == "status").count(), 1);
        assert!(columns.contains(&"location (question)".to_owned()));
        // "status (question)" is taken by the first question's column.
        assert!(columns.contains(&"status (question)".to_owned()));
        assert!(
            columns.contains(&"status (question) (question)".to_owned()),
            "{columns:?}"
        );
        let unique: std::collections::HashSet<_> = columns.iter().collect();
        assert_eq!(unique.len(), columns.len());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn columns_not_the_forms_are_skipped() {
        let form = household_finance();
        let mut header = wanted_columns(&form);
        header.insert(2, "reviewer notes".into());
        let response: StoredResponse = serde_json::from_value(serde_json::json!({
            "response_id": "r-1", "form_id": "household-finance", "revision": 2,
            "form_version": 1, "status": "valid", "flags": [],
            "collector": {"user_id": "u-1"}, "answers": {}, "metadata": {},
            "stored_at": "2026-12-01T00:00:00Z"
        }))
        .unwrap();
        let cells = row(&form, &header, &response);
        assert_eq!(cells[0], Value::String("r-1".into()));
        assert_eq!(cells[1], Value::from(2));
        assert_eq!(cells[2], Value::Null);
        assert_eq!(cells[3], Value::String("valid".into()));
    }

    #[test]
    fn a_persons_column_stays_where_it_is_and_new_questions_go_on_the_right() {
        let existing = [
            "response_id",
            "revision",
            "reviewer notes",
            "status",
            "checked by",
        ]
        .map(String::from);
        let wanted = ["response_id", "revision", "status", "Spend"].map(String::from);
        assert_eq!(
            merged_header(&existing, &wanted),
            [
                "response_id",
                "revision",
                "reviewer notes",
                "status",
                "checked by",
                "Spend"
            ]
        );
    }

    #[test]
    fn new_columns_go_on_the_right() {
        let existing = ["response_id", "b", "", ""].map(String::from);
        let wanted = ["response_id", "c", "b"].map(String::from);
        assert_eq!(merged_header(&existing, &wanted), ["response_id", "b", "c"]);
    }

    #[test]
    fn the_seed_form_header() {
        let columns = wanted_columns(&household_finance());
        assert_eq!(
            columns[..5],
            [
                "response_id",
                "revision",
                "status",
                "flags",
                "response_family_id"
            ]
        );
        assert_eq!(
            columns.last().map(String::as_str),
            Some("How much money do you spend monthly on fuel for your car?")
        );
    }
}
