//! A form's sheet: the header row and one row per response, one column per question.

use collect_shared::forms::{Form, Severity};
use collect_shared::messages::StoredResponse;
use serde_json::Value;

/// Google's limit on one cell's text.
const MAX_CELL_CHARS: usize = 50_000;

/// The columns a form wants, in order: `response_id`, `revision`, `status`, `flags`, the
/// form's metadata fields, then every question's label.
pub fn wanted_columns(form: &Form) -> Vec<String> {
    let mut columns: Vec<String> = ["response_id", "revision", "status", "flags"]
        .map(String::from)
        .to_vec();
    columns.extend(form.definition.metadata.iter().cloned());
    columns.extend(
        form.definition
            .questions
            .iter()
            .map(|question| question.label.clone()),
    );
    columns
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

/// The response's cells under `header`.
pub fn row(form: &Form, header: &[String], response: &StoredResponse) -> Vec<Value> {
    header
        .iter()
        .map(|column| cell(form, column, response))
        .collect()
}

fn cell(form: &Form, column: &str, response: &StoredResponse) -> Value {
    match column {
        "response_id" => return Value::String(response.response_id.to_string()),
        "revision" => return Value::from(response.revision.0),
        "status" => return Value::String(response.status.as_str().into()),
        "flags" => return Value::String(flags_text(response)),
        _ => {}
    }
    if let Some(question) = form
        .definition
        .questions
        .iter()
        .find(|question| question.label == column)
    {
        return scalar(response.answers.get(&question.id));
    }
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
/// as an empty cell. Text is cut at Google's 50,000 characters per cell.
fn scalar(value: Option<&Value>) -> Value {
    let text = match value {
        None | Some(Value::Null) => return Value::String(String::new()),
        Some(Value::Bool(_) | Value::Number(_)) => return value.cloned().unwrap_or_default(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    if text.chars().count() > MAX_CELL_CHARS {
        Value::String(text.chars().take(MAX_CELL_CHARS).collect())
    } else {
        Value::String(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collect_shared::forms::household_finance;

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
