//! Form definitions: the questions a response answers and the rules it must keep.

mod household_finance;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::FormId;
pub use crate::domain::Severity;

pub use household_finance::{HOUSEHOLD_FINANCE, SEED_METADATA, household_finance};

/// A form as `PUT /v1/forms/{form_id}` takes it (see the spec's "Form definition").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// A CEL expression over the answers by question id.
    pub expression: String,
    pub message: String,
    #[serde(default)]
    pub severity: Severity,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SheetTarget {
    #[serde(default)]
    pub spreadsheet_id: Option<String>,
    #[serde(default)]
    pub tab: Option<String>,
}

/// The forms every deployment has from the start (an operator may redefine them with `PUT`).
pub fn builtin() -> Vec<Form> {
    vec![household_finance()]
}

/// A form definition under its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub id: FormId,
    pub definition: FormDefinition,
}

impl Form {
    /// The tab its rows go to: `sheet.tab`, else the form's id.
    pub fn tab(&self) -> &str {
        self.definition
            .sheet
            .as_ref()
            .and_then(|sheet| sheet.tab.as_deref())
            .unwrap_or(self.id.as_str())
    }

    /// The spreadsheet it names, if it names one (else sheets-sync's default).
    pub fn spreadsheet_id(&self) -> Option<&str> {
        self.definition
            .sheet
            .as_ref()
            .and_then(|sheet| sheet.spreadsheet_id.as_deref())
    }
}

/// Whether two tab names name one tab of a spreadsheet: Google's tab names are unique whatever
/// their case (`west` cannot be added beside `West`).
pub fn same_tab(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// A form's questions by the keys a flat (seed-style) payload may use for them: each id as
/// written, and each label compared without regard to case, surrounding space or repeated
/// inner space. Made once per form version: a seed payload's every key is looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuestionKeys {
    /// Ids, then labels as written (an id wins over another question's label).
    exact: HashMap<String, usize>,
    /// Labels normalised ([`normalise_label`]); a definition's are unique that way.
    labels: HashMap<String, usize>,
}

impl QuestionKeys {
    pub fn new(definition: &FormDefinition) -> Self {
        let mut keys = Self::default();
        for (index, question) in definition.questions.iter().enumerate() {
            keys.exact.entry(question.id.clone()).or_insert(index);
        }
        for (index, question) in definition.questions.iter().enumerate() {
            keys.exact.entry(question.label.clone()).or_insert(index);
            keys.labels
                .entry(normalise_label(&question.label))
                .or_insert(index);
        }
        keys
    }

    /// The question of `definition` (the one these keys were made of) that `key` stands for:
    /// by its id, or by its label.
    pub fn question<'a>(&self, definition: &'a FormDefinition, key: &str) -> Option<&'a Question> {
        let index = match self.exact.get(key) {
            Some(index) => *index,
            None => *self.labels.get(&normalise_label(key))?,
        };
        definition.questions.get(index)
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
        let keys = QuestionKeys::new(&form.definition);
        let by_text = |text| keys.question(&form.definition, text).map(|q| q.id.as_str());
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
        assert_eq!(by_text(""), None);
    }

    #[test]
    fn an_id_wins_over_another_questions_label() {
        let question = |id: &str, label: &str| Question {
            id: id.into(),
            label: label.into(),
            kind: QuestionType::Number,
            required: false,
            choices: Vec::new(),
        };
        let definition = FormDefinition {
            title: "t".into(),
            questions: vec![question("a", "b"), question("b", "Über  Label")],
            rules: Vec::new(),
            metadata: Vec::new(),
            sheet: None,
        };
        let keys = QuestionKeys::new(&definition);
        let by_text = |text| keys.question(&definition, text).map(|q| q.id.as_str());
        assert_eq!(by_text("b"), Some("b"));
        assert_eq!(by_text("a"), Some("a"));
        assert_eq!(by_text(" über label "), Some("b"));
        assert_eq!(by_text("ÜBER LABEL"), Some("b"));
        assert_eq!(by_text("Über"), None);
    }
}

/// A definition that cannot be accepted: the field at fault (a JSON path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub field: String,
    pub message: String,
}

const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

impl FormDefinition {
    /// Checks what serde cannot: ids usable in rules and unique, labels unique (the seed route
    /// finds questions by label), choices where they belong. Rules are checked by compiling
    /// them ([`crate::rules::CompiledForm::compile`]).
    pub fn check(&self) -> Result<(), DefinitionError> {
        let error = |field: String, message: String| Err(DefinitionError { field, message });
        if self.title.trim().is_empty() {
            return error("title".into(), "title must not be empty".into());
        }
        if self.questions.is_empty() {
            return error(
                "questions".into(),
                "a form needs at least one question".into(),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for (index, question) in self.questions.iter().enumerate() {
            let field = |name: &str| format!("questions[{index}].{name}");
            let id = question.id.as_str();
            let identifier = id
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && id.len() <= 64;
            if !identifier || CEL_RESERVED.contains(&id) {
                return error(
                    field("id"),
                    format!(
                        "{id:?} is not usable in rules: use up to 64 letters, digits and '_', not starting with a digit, and not a CEL keyword"
                    ),
                );
            }
            if !ids.insert(id) {
                return error(field("id"), format!("question id {id:?} is used twice"));
            }
            if question.label.trim().is_empty() {
                return error(field("label"), "label must not be empty".into());
            }
            if !labels.insert(normalise_label(&question.label)) {
                return error(
                    field("label"),
                    format!("label {:?} is used twice", question.label),
                );
            }
            match (question.kind, question.choices.is_empty()) {
                (QuestionType::Choice, true) => {
                    return error(field("choices"), "a choice question needs choices".into());
                }
                (QuestionType::Choice, false) | (_, true) => {}
                (_, false) => {
                    return error(
                        field("choices"),
                        "only questions of type choice have choices".into(),
                    );
                }
            }
        }
        let max_rules = crate::rules::limits::MAX_RULES;
        if self.rules.len() > max_rules {
            return error(
                "rules".into(),
                format!(
                    "a form has at most {max_rules} rules; this one has {}",
                    self.rules.len()
                ),
            );
        }
        let mut rule_ids = std::collections::HashSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.id.trim().is_empty() {
                return error(
                    format!("rules[{index}].id"),
                    "rule id must not be empty".into(),
                );
            }
            if !rule_ids.insert(rule.id.as_str()) {
                return error(
                    format!("rules[{index}].id"),
                    format!("rule id {:?} is used twice", rule.id),
                );
            }
            if rule.message.trim().is_empty() {
                return error(
                    format!("rules[{index}].message"),
                    "a rule needs a message for the collector".into(),
                );
            }
        }
        if let Some(tab) = self.sheet.as_ref().and_then(|sheet| sheet.tab.as_ref())
            && (tab.trim().is_empty() || tab.chars().count() > 100)
        {
            return error("sheet.tab".into(), "tab must be 1 to 100 characters".into());
        }
        if let Some(tab) = self.sheet.as_ref().and_then(|sheet| sheet.tab.as_ref())
            && tab.chars().any(char::is_control)
        {
            return error(
                "sheet.tab".into(),
                "tab must not contain control characters".into(),
            );
        }
        // MySQL compares text ignoring trailing spaces, so "Responses " would be "Responses"
        // there; and a space at either end of a tab name is hard to see in a sheet.
        if let Some(tab) = self.sheet.as_ref().and_then(|sheet| sheet.tab.as_ref())
            && tab.trim() != tab
        {
            return error(
                "sheet.tab".into(),
                "tab must not start or end with a space".into(),
            );
        }
        // It goes into the Sheets API's URL path: only what Google's ids are made of.
        if let Some(id) = self
            .sheet
            .as_ref()
            .and_then(|sheet| sheet.spreadsheet_id.as_ref())
        {
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
            if id.is_empty() || id.len() > 100 || !id.chars().all(valid) {
                return error(
                    "sheet.spreadsheet_id".into(),
                    "spreadsheet_id must be 1 to 100 letters, digits, '-' or '_' (the id in the spreadsheet's URL, between /d/ and /edit)".into(),
                );
            }
        }
        Ok(())
    }
}
