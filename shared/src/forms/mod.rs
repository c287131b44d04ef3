//! Form definitions: the questions a response answers and the rules it must keep.

mod household_finance;

use serde::{Deserialize, Serialize};

use crate::messages::FormId;

pub use household_finance::{HOUSEHOLD_FINANCE, SEED_METADATA, household_finance};

/// A form as `PUT /v1/forms/{form_id}` takes it (see the spec's "Form definition").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormDefinition {
    pub title: String,
    pub questions: Vec<Question>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Fields of a response's `metadata` that are shown as sheet columns, in this order.
    #[serde(default)]
    pub metadata: Vec<String>,
    #[serde(default)]
    pub sheet: Option<SheetTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: QuestionType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionType {
    String,
    Number,
    Integer,
    Boolean,
    Email,
    Phone,
    Date,
    Datetime,
    Choice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// A CEL expression over the answers by question id.
    pub expression: String,
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The response is flagged and goes back to its collector.
    #[default]
    Error,
    /// Recorded with the response and shown in its sheet row, not sent back.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetTarget {
    #[serde(default)]
    pub spreadsheet_id: Option<String>,
    #[serde(default)]
    pub tab: Option<String>,
}

/// A form definition under its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub id: FormId,
    pub definition: FormDefinition,
}

impl Form {
    /// The question a flat (seed-style) payload key stands for: its id, or its label compared
    /// without regard to case, surrounding space or repeated inner space.
    pub fn question_for_key(&self, key: &str) -> Option<&Question> {
        let questions = &self.definition.questions;
        if let Some(question) = questions.iter().find(|q| q.id == key) {
            return Some(question);
        }
        let wanted = normalise_label(key);
        questions
            .iter()
            .find(|q| normalise_label(&q.label) == wanted)
    }
}

fn normalise_label(label: &str) -> String {
    label
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_question_texts_find_their_question() {
        let form = household_finance();
        let by_text = |text| form.question_for_key(text).map(|q| q.id.as_str());
        assert_eq!(
            by_text("what is the monthly income?"),
            Some("monthly_income")
        );
        assert_eq!(
            by_text("  What is the   monthly income? "),
            Some("monthly_income")
        );
        assert_eq!(
            by_text("How much money do you spend monthly on fuel for your car?"),
            Some("fuel")
        );
        assert_eq!(by_text("monthly_income"), Some("monthly_income"));
        assert_eq!(by_text("age"), Some("age"));
        assert_eq!(by_text("what is the yearly income?"), None);
    }
}
