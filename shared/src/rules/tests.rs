use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::forms::{FormDefinition, Question, QuestionType, household_finance};

fn seed_form() -> CompiledForm {
    CompiledForm::compile(Arc::new(household_finance()), 1).expect("the seed rules compile")
}

/// A complete, valid household-finance response, with `changes` applied.
fn answers(changes: Value) -> serde_json::Map<String, Value> {
    let mut answers = json!({
        "name": "Asha", "email": "asha@example.com", "mobile_number": "+91 98200 00000",
        "gender": "female", "age": 34,
        "monthly_income": 52000, "monthly_savings": 8000, "monthly_expenditure": 30000,
        "food": 12000, "cable": 500, "healthcare": 2000, "fuel": 3000
    });
    for (key, value) in changes.as_object().expect("an object") {
        if value == "<absent>" {
            answers.as_object_mut().expect("an object").remove(key);
        } else {
            answers[key] = value.clone();
        }
    }
    answers.as_object().expect("an object").clone()
}

fn rule_ids(evaluation: &Evaluation) -> Vec<String> {
    evaluation
        .flags
        .iter()
        .map(|flag| flag.rule_id.clone())
        .collect()
}

#[test]
fn every_boundary_of_the_seed_rules() {
    let form = seed_form();
    // (what changes, the flags expected)
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec![]),
        // expenditure_covers_items: items total 17500
        (json!({"monthly_expenditure": 17500}), vec![]),
        (
            json!({"monthly_expenditure": 17499.99}),
            vec!["expenditure_covers_items"],
        ),
        (
            json!({"monthly_expenditure": 17500.01, "monthly_savings": 0}),
            vec![],
        ),
        // savings_within_surplus: income - expenditure = 22000
        (json!({"monthly_savings": 22000}), vec![]),
        (
            json!({"monthly_savings": 22000.01}),
            vec!["savings_within_surplus"],
        ),
        (json!({"monthly_savings": 21999.99}), vec![]),
        (json!({"monthly_savings": 0}), vec![]),
        (
            json!({"monthly_savings": -0.01}),
            vec!["savings_within_surplus"],
        ),
        (
            json!({"monthly_savings": -1}),
            vec!["savings_within_surplus"],
        ),
        // income below expenditure: no unsigned overflow, just a flag
        (
            json!({"monthly_income": 20000}),
            vec!["savings_within_surplus"],
        ),
        (
            json!({"monthly_income": 20000, "monthly_savings": 0}),
            vec!["savings_within_surplus"],
        ),
        // both rules at once
        (
            json!({"monthly_expenditure": 100, "monthly_savings": -5}),
            vec!["expenditure_covers_items", "savings_within_surplus"],
        ),
        // floats that binary arithmetic gets slightly wrong still pass
        (
            json!({"monthly_income": 100.3, "monthly_expenditure": 100.1, "monthly_savings": 0.2,
                   "food": 0.1, "cable": 0.2, "healthcare": 0, "fuel": 99.8}),
            vec![],
        ),
        // numbers in any JSON form
        (
            json!({"monthly_income": "52000", "monthly_savings": "8000.0"}),
            vec![],
        ),
        (json!({"monthly_income": 52000.0}), vec![]),
        (json!({"monthly_income": " 52000 "}), vec![]),
        // wrong types get a type flag, and the rules over them are not evaluated
        (
            json!({"monthly_income": "lots"}),
            vec!["type:monthly_income"],
        ),
        (json!({"monthly_income": true}), vec!["type:monthly_income"]),
        (
            json!({"monthly_income": [52000]}),
            vec!["type:monthly_income"],
        ),
        (json!({"age": 34.5}), vec!["type:age"]),
        (json!({"age": "34"}), vec![]),
        (json!({"email": "not-an-email"}), vec!["type:email"]),
        (
            json!({"mobile_number": "call me"}),
            vec!["type:mobile_number"],
        ),
        (json!({"name": 5}), vec!["type:name"]),
        // missing and null answers: a required flag; rules over them are not evaluated
        (
            json!({"monthly_savings": "<absent>"}),
            vec!["required:monthly_savings"],
        ),
        (
            json!({"monthly_savings": null}),
            vec!["required:monthly_savings"],
        ),
        (json!({"food": "  "}), vec!["required:food"]),
        (json!({"email": "<absent>"}), vec![]),
        (json!({"email": null}), vec![]),
    ];
    for (changes, expected) in cases {
        let evaluation = form.evaluate(&answers(changes.clone()));
        assert_eq!(rule_ids(&evaluation), expected, "{changes}");
        assert_eq!(evaluation.is_flagged(), !expected.is_empty(), "{changes}");
    }
}

#[test]
fn flags_carry_the_rule_message_and_severity() {
    let evaluation = seed_form().evaluate(&answers(json!({"monthly_savings": -1})));
    assert_eq!(
        evaluation.flags,
        vec![Flag {
            rule_id: "savings_within_surplus".into(),
            message: "Monthly savings must be between 0 and income minus expenditure".into(),
            severity: Severity::Error,
        }]
    );
    let evaluation = seed_form().evaluate(&answers(json!({"monthly_income": "<absent>"})));
    assert_eq!(
        evaluation.flags[0].message,
        "what is the monthly income? is required"
    );
}

fn custom_form(rules: Vec<(&str, &str, Severity)>) -> Result<CompiledForm, Vec<RuleError>> {
    let question = |id: &str, kind| Question {
        id: id.into(),
        label: id.into(),
        kind,
        required: false,
        choices: vec![],
    };
    let form = Form {
        id: crate::messages::FormId::parse("visits").expect("form id"),
        definition: FormDefinition {
            title: "Visits".into(),
            questions: vec![
                question("visits", QuestionType::Integer),
                question("spend", QuestionType::Number),
                Question {
                    choices: vec!["north".into(), "south".into()],
                    ..question("region", QuestionType::Choice)
                },
                question("member", QuestionType::Boolean),
            ],
            rules: rules
                .into_iter()
                .map(|(id, expression, severity)| Rule {
                    id: id.into(),
                    expression: expression.into(),
                    message: format!("{id} failed"),
                    severity,
                })
                .collect(),
            metadata: vec![],
            sheet: None,
        },
    };
    CompiledForm::compile(Arc::new(form), 1)
}

#[test]
fn rules_people_naturally_write() {
    let form = custom_form(vec![
        ("per_visit", "spend <= visits * 1000", Severity::Error),
        (
            "north_members",
            "region != 'north' || member",
            Severity::Error,
        ),
        ("small", "spend / visits < 500.5", Severity::Warning),
        ("whole", "visits - 5 >= -5", Severity::Error),
    ])
    .expect("compiles");
    let check = |answers: Value| rule_ids(&form.evaluate(answers.as_object().expect("an object")));
    assert_eq!(
        check(json!({"visits": 2, "spend": 900, "region": "south", "member": false})),
        Vec::<String>::new()
    );
    assert_eq!(
        check(json!({"visits": 2, "spend": 2000.5, "region": "north", "member": true})),
        vec!["per_visit", "small"]
    );
    assert_eq!(
        check(json!({"visits": 2, "spend": 10, "region": "north", "member": "false"})),
        vec!["north_members"]
    );
    assert_eq!(
        check(json!({"visits": 2, "spend": 10, "region": "west"})),
        vec!["type:region"]
    );
    let warning = form.evaluate(
        json!({"visits": 1, "spend": 800})
            .as_object()
            .expect("object"),
    );
    assert_eq!(warning.flags[0].severity, Severity::Warning);
    assert!(!warning.is_flagged(), "a warning alone does not flag");
}

#[test]
fn a_rule_that_cannot_be_evaluated_is_a_warning_not_a_crash() {
    let form = custom_form(vec![("odd", "region + spend > 1", Severity::Error)]).expect("compiles");
    let evaluation = form.evaluate(
        json!({"region": "north", "spend": 3})
            .as_object()
            .expect("object"),
    );
    assert_eq!(evaluation.flags.len(), 1);
    assert_eq!(evaluation.flags[0].severity, Severity::Warning);
    assert!(
        evaluation.flags[0]
            .message
            .contains("could not be evaluated")
    );
}

#[test]
fn compile_errors_name_the_rule_and_the_position() {
    let errors = custom_form(vec![
        ("fine", "spend > 0", Severity::Error),
        ("broken", "spend >", Severity::Error),
        ("unknown", "spend > 0 &&\n  income > 0", Severity::Error),
    ])
    .expect_err("two rules are wrong");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].index, errors[0].rule_id.as_str()), (1, "broken"));
    assert_eq!(errors[0].position, Some((1, 8)), "{errors:?}");
    assert_eq!(
        (errors[1].index, errors[1].rule_id.as_str()),
        (2, "unknown")
    );
    assert_eq!(errors[1].position, Some((2, 3)));
    assert!(errors[1].message.contains("income"));
}
