//! The built-in form: the seed system's household-finance survey and its two rules, without the
//! seed's bugs (it flagged equality as a violation and never checked savings >= 0).

use super::{Form, FormDefinition, Question, QuestionType, Rule, Severity, SheetTarget};
use crate::messages::FormId;

pub const HOUSEHOLD_FINANCE: &str = "household-finance";

/// The seed payload's metadata keys other than `response_id`, `user_id` and `username`, which
/// become the envelope's own fields.
pub const SEED_METADATA: [&str; 5] = [
    "response_family_id",
    "location",
    "submitted_time",
    "synced_time",
    "last_modified_time",
];

pub fn household_finance() -> Form {
    let question = |id: &str, label: &str, kind| Question {
        id: id.into(),
        label: label.into(),
        kind,
        required: true,
        choices: Vec::new(),
    };
    let money = |id: &str, label: &str| question(id, label, QuestionType::Number);
    Form {
        id: FormId::parse(HOUSEHOLD_FINANCE).expect("the built-in form id is valid"),
        definition: FormDefinition {
            title: "Household finance".into(),
            questions: vec![
                question("name", "name", QuestionType::String),
                Question {
                    required: false,
                    ..question("email", "email", QuestionType::Email)
                },
                Question {
                    required: false,
                    ..question("mobile_number", "mobile_number", QuestionType::Phone)
                },
                question("gender", "gender", QuestionType::String),
                question("age", "age", QuestionType::Integer),
                money("monthly_income", "what is the monthly income?"),
                money("monthly_savings", "what is the monthly savings?"),
                money("monthly_expenditure", "what is the monthly expenditure?"),
                money("food", "How much money do you spend monthly on food?"),
                money(
                    "cable",
                    "How much money do you spend monthly on your cable service?",
                ),
                money(
                    "healthcare",
                    "How much money do you spend monthly on healthcare?",
                ),
                money(
                    "fuel",
                    "How much money do you spend monthly on fuel for your car?",
                ),
            ],
            rules: vec![
                Rule {
                    id: "expenditure_covers_items".into(),
                    expression: "monthly_expenditure >= food + cable + healthcare + fuel".into(),
                    message: "Monthly expenditure must be at least food + cable + healthcare + fuel"
                        .into(),
                    severity: Severity::Error,
                },
                Rule {
                    id: "savings_within_surplus".into(),
                    expression: "monthly_savings >= 0 && monthly_savings <= monthly_income - monthly_expenditure"
                        .into(),
                    message: "Monthly savings must be between 0 and income minus expenditure"
                        .into(),
                    severity: Severity::Error,
                },
            ],
            metadata: [
                "response_family_id",
                "user_id",
                "username",
                "location",
                "submitted_time",
                "synced_time",
                "last_modified_time",
            ]
            .map(String::from)
            .to_vec(),
            sheet: Some(SheetTarget {
                spreadsheet_id: None,
                tab: Some(HOUSEHOLD_FINANCE.into()),
            }),
        },
    }
}
