//! The limits on rules (`limits`) and the evaluation budget (`evaluate_budgeted`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cel::extractors::Arguments;
use serde_json::{Value, json};

use super::limits::{
    MAX_BRACKET_NESTING, MAX_DEPTH, MAX_EXPRESSION_CHARS, MAX_MACRO_NESTING, MAX_RULES,
};
use super::*;
use crate::forms::{FormDefinition, Question, QuestionType};

fn form_with(rules: &[&str]) -> Form {
    let question = |id: &str, kind| Question {
        id: id.into(),
        label: id.into(),
        kind,
        required: false,
        choices: vec![],
    };
    Form {
        id: crate::messages::FormId::parse("limits").expect("form id"),
        definition: FormDefinition {
            title: "Limits".into(),
            questions: vec![
                question("a", QuestionType::Number),
                question("spend", QuestionType::Number),
                question("region", QuestionType::String),
            ],
            rules: rules
                .iter()
                .enumerate()
                .map(|(index, expression)| Rule {
                    id: format!("r{index}"),
                    expression: (*expression).to_owned(),
                    message: format!("r{index} failed"),
                    severity: Severity::Error,
                })
                .collect(),
            metadata: vec![],
            sheet: None,
        },
    }
}

fn compile(rules: &[&str]) -> Result<CompiledForm, Vec<RuleError>> {
    CompiledForm::compile(Arc::new(form_with(rules)), 1)
}

/// The one error of compiling a single rule.
fn refusal(expression: &str) -> RuleError {
    let mut errors = compile(&[expression]).expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

fn answers(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().expect("an object").clone()
}

/// `a + a + … + a > 0` with `terms` terms: `terms + 1` deep.
fn sum(terms: usize) -> String {
    format!("{} > 0", vec!["a"; terms].join(" + "))
}

#[test]
fn rules_per_form_at_and_over_the_limit() {
    let expressions = vec!["a > 0"; MAX_RULES];
    assert!(form_with(&expressions).definition.check().is_ok());
    let expressions = vec!["a > 0"; MAX_RULES + 1];
    let error = form_with(&expressions)
        .definition
        .check()
        .expect_err("too many rules");
    assert_eq!(error.field, "rules");
    assert!(error.message.contains("at most 200 rules"), "{error:?}");
}

#[test]
fn expression_length_at_and_over_the_limit() {
    // Characters, not bytes: `é` is two bytes.
    let padded = |length: usize| {
        let head = "region != '";
        let tail = "'";
        let fill = length - head.len() - tail.len();
        format!("{head}{}{tail}", "é".repeat(fill))
    };
    let at = padded(MAX_EXPRESSION_CHARS);
    assert_eq!(at.chars().count(), 4096);
    let form = compile(&[&at]).expect("4096 characters are allowed");
    assert!(
        form.evaluate(&answers(json!({"region": "north"})))
            .flags
            .is_empty()
    );
    let error = refusal(&padded(MAX_EXPRESSION_CHARS + 1));
    assert_eq!(error.index, 0);
    assert_eq!(error.position, None);
    assert_eq!(
        error.to_string(),
        "rule \"r0\": the expression is 4097 characters long; at most 4096 are allowed"
    );
}

#[test]
fn bracket_nesting_at_and_over_the_limit() {
    let nested = |depth: usize| format!("{}a{} > 0", "(".repeat(depth), ")".repeat(depth));
    let form = compile(&[&nested(MAX_BRACKET_NESTING)]).expect("32 deep is allowed");
    assert!(form.evaluate(&answers(json!({"a": 1}))).flags.is_empty());
    let error = refusal(&nested(MAX_BRACKET_NESTING + 1));
    assert_eq!(error.position, Some((1, 33)), "{error}");
    assert!(
        error.message.contains("nested more than 32 deep"),
        "{error}"
    );
    // Every kind of bracket counts; on a later line the position says so.
    let mixed = format!(
        "a > 0 &&\n size({}[a]{}) > 0",
        "[".repeat(MAX_BRACKET_NESTING - 1),
        "]".repeat(MAX_BRACKET_NESTING - 1)
    );
    assert_eq!(refusal(&mixed).position, Some((2, 38)));
    // Brackets in string literals do not count.
    let quoted = format!(
        "region != '{0}' && region != \"{0}\" && region != '''{0}''' && region != r'\\{0}'",
        "(".repeat(40)
    );
    assert!(compile(&[&quoted]).is_ok());
}

#[test]
fn depth_at_and_over_the_limit() {
    let form = compile(&[&sum(MAX_DEPTH - 1)]).expect("64 deep is allowed");
    assert!(form.evaluate(&answers(json!({"a": 1}))).flags.is_empty());
    assert!(!form.evaluate(&answers(json!({"a": -1}))).flags.is_empty());
    let error = refusal(&sum(MAX_DEPTH));
    assert!(
        error.message.contains("nested more than 64 deep"),
        "{error}"
    );
    assert_eq!(error.position, Some((1, 5)), "the second `a`, 65 deep");
    // `&&` and `||` chains are balanced by the parser: 400 conditions are 11 deep.
    let conditions = vec!["a > 0"; 400].join(" && ");
    assert!(compile(&[&conditions]).is_ok());
}

/// The chains the parser does not limit, as long as the length limit allows, tightest
/// spelling: refused with an error, on a 2 MiB stack (a tokio thread's), in a debug build.
/// Without the limits, `a+a+…` overflows the evaluator at about 1,600 terms and the parser at
/// about 4,500.
#[test]
fn the_deepest_rules_the_length_allows_are_refused_without_overflowing_the_stack() {
    let within = |unit: &str, head: &str| {
        let count = (MAX_EXPRESSION_CHARS - head.len()) / unit.len();
        format!("{head}{}", unit.repeat(count))
    };
    let chains = [
        within("+a", "a"),
        within(".b", "a"),
        within("[0]", "a"),
        within(".f()", "a"),
        within("-a", "a"),
        within("*a", "a"),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            chains
                .iter()
                .map(|chain| {
                    assert!(chain.chars().count() <= MAX_EXPRESSION_CHARS);
                    match compile(&[chain]) {
                        Ok(_) => "compiled".to_owned(),
                        Err(errors) => errors[0].message.clone(),
                    }
                })
                .collect::<Vec<_>>()
        })
        .expect("a thread");
    for message in handle.join().expect("no overflow, no panic") {
        assert!(message.contains("nested more than 64 deep"), "{message}");
    }
}

#[test]
fn macros_at_and_over_the_nesting_limit() {
    assert_eq!(MAX_MACRO_NESTING, 1);
    // A macro's variables are its own, not questions.
    let form = compile(&[
        "[1, 2, 3].all(x, x > 0)",
        "[100, 200].exists(limit, spend <= limit)",
        "[1, 2, 3].filter(x, x > 1).map(x, x * 2).exists_one(x, x == 6)",
        // A macro variable may shadow a question: this rule reads no answer.
        "[1].all(spend, spend == 1)",
    ])
    .expect("macros compile");
    assert_eq!(
        rule_ids(&form.evaluate(&answers(json!({"spend": 150})))),
        Vec::<String>::new()
    );
    assert_eq!(
        rule_ids(&form.evaluate(&answers(json!({"spend": 300})))),
        ["r1"]
    );
    assert_eq!(
        rule_ids(&form.evaluate(&answers(json!({})))),
        Vec::<String>::new()
    );
    // Each macro in the body of another is refused.
    for inner in [
        "[3].all(y, y > x)",
        "[3].exists(y, y > x)",
        "[3].exists_one(y, y > x)",
        "[3].map(y, y).size() > 0",
        "[3].filter(y, y > x).size() > 0",
    ] {
        let error = refusal(&format!("[1, 2].all(x, {inner})"));
        assert!(error.message.contains("nested more than 1 deep"), "{error}");
    }
    // Also in the mapped expression of `map`.
    let error = refusal("[1].map(x, [2].filter(y, y > x)).size() > 0");
    assert!(error.message.contains("nested"), "{error}");
}

fn rule_ids(evaluation: &Evaluation) -> Vec<String> {
    evaluation
        .flags
        .iter()
        .map(|flag| flag.rule_id.clone())
        .collect()
}

/// A form of `rules`, where `slow()` sleeps `sleep` (a function registered for the test).
fn slow_form(rules: &[&str], sleep: Duration) -> Arc<CompiledForm> {
    let mut form = compile(rules).expect("compiles");
    assert!(form.inline, "small and without macros");
    form.inline = false;
    form.functions
        .add_function("slow", move |Arguments(_): Arguments| {
            std::thread::sleep(sleep);
            Ok::<_, cel::ExecutionError>(cel::Value::Bool(true))
        })
        .expect("a new function");
    Arc::new(form)
}

#[tokio::test]
async fn within_the_budget_the_result_is_what_evaluate_gives() {
    let rules = ["spend < 100", "region + spend > 1", "a > 0"];
    let inline = Arc::new(compile(&rules).expect("compiles"));
    assert!(inline.inline);
    let mut form = compile(&rules).expect("compiles");
    form.inline = false;
    let form = Arc::new(form);
    // A macro, or over 500 nodes (125 conditions are 499), and the rules go to a blocking
    // thread.
    assert!(!compile(&["[1].all(x, x > 0)"]).expect("compiles").inline);
    let conditions = |count: usize| vec!["a > 0"; count].join(" && ");
    assert!(compile(&[&conditions(125)]).expect("compiles").inline);
    assert!(!compile(&[&conditions(126)]).expect("compiles").inline);
    for value in [
        json!({"spend": 50, "region": "x", "a": 1}),
        json!({"spend": 500, "a": -1}),
        json!({"spend": "lots", "a": 1}),
        json!({}),
    ] {
        let answers = answers(value);
        assert_eq!(
            form.evaluate_budgeted(&answers, EVALUATION_BUDGET).await,
            form.evaluate(&answers)
        );
        // Inline, the budget does not apply.
        assert_eq!(
            inline.evaluate_budgeted(&answers, Duration::ZERO).await,
            form.evaluate(&answers)
        );
    }
}

#[tokio::test]
async fn a_rule_over_the_budget_is_a_warning_and_the_rest_are_not_evaluated() {
    let form = slow_form(
        &[
            "spend < 100",
            "spend > 0 && slow()",
            "spend < 50",
            "region == 'north'",
        ],
        Duration::from_millis(1000),
    );
    let budget = Duration::from_millis(250);
    let response = answers(json!({"spend": 200, "region": "south", "a": "x"}));
    let started = std::time::Instant::now();
    let evaluation = form.evaluate_budgeted(&response, budget).await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the budget cut it short"
    );
    let found: Vec<(&str, Severity, &str)> = evaluation
        .flags
        .iter()
        .map(|flag| (flag.rule_id.as_str(), flag.severity, flag.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("type:a", Severity::Error, "a: must be a number"),
            // Evaluated before the budget ran out.
            ("r0", Severity::Error, "r0 failed"),
            (
                "r1",
                Severity::Warning,
                "the rule exceeded the evaluation budget: it did not finish within 250 ms"
            ),
            (
                "r2",
                Severity::Warning,
                "the rule was not evaluated: an earlier rule exceeded the evaluation budget of 250 ms"
            ),
            (
                "r3",
                Severity::Warning,
                "the rule was not evaluated: an earlier rule exceeded the evaluation budget of 250 ms"
            ),
        ]
    );
    assert!(evaluation.is_flagged(), "by the type flag and r0");

    // While the late evaluation still runs, this form's rules are not started again.
    assert_eq!(form.overrunning.load(Ordering::Acquire), 1);
    let evaluation = form
        .evaluate_budgeted(&answers(json!({"spend": 10})), budget)
        .await;
    assert_eq!(rule_ids(&evaluation), ["r0", "r1", "r2"]);
    assert!(
        evaluation
            .flags
            .iter()
            .all(|flag| flag.severity == Severity::Warning
                && flag.message.contains("is still running")),
        "{evaluation:?}"
    );
    // Answers that no rule reads need no thread.
    assert!(
        form.evaluate_budgeted(&answers(json!({})), budget)
            .await
            .flags
            .is_empty()
    );

    // Once it ended (after its current rule: it stopped without the others), evaluations
    // start again.
    collect_until(|| form.overrunning.load(Ordering::Acquire) == 0).await;
    let evaluation = form
        .evaluate_budgeted(&answers(json!({"spend": 10, "region": "north"})), budget)
        .await;
    assert_eq!(rule_ids(&evaluation), ["r1", "r2", "r3"]);
    assert!(
        evaluation.flags[0]
            .message
            .contains("exceeded the evaluation budget")
    );
    collect_until(|| form.overrunning.load(Ordering::Acquire) == 0).await;
}

#[tokio::test]
async fn a_zero_budget_records_every_applicable_rule_as_a_warning() {
    let form = slow_form(
        &["spend > 0 && slow()", "spend > 100"],
        Duration::from_millis(50),
    );
    let evaluation = form
        .evaluate_budgeted(&answers(json!({"spend": 10})), Duration::ZERO)
        .await;
    assert_eq!(rule_ids(&evaluation), ["r0", "r1"]);
    assert!(
        evaluation
            .flags
            .iter()
            .all(|flag| flag.severity == Severity::Warning),
        "{evaluation:?}"
    );
    assert!(
        evaluation.flags[0].message.contains("0 µs"),
        "{evaluation:?}"
    );
    assert!(!evaluation.is_flagged());
    collect_until(|| form.overrunning.load(Ordering::Acquire) == 0).await;
}

async fn collect_until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the late evaluation did not end within 5 s");
}

#[tokio::test]
async fn a_rule_the_evaluator_panics_on_is_a_warning_and_the_others_are_evaluated() {
    let mut form = compile(&["spend > 0 && boom()", "spend < 5"]).expect("compiles");
    form.inline = false;
    form.functions
        .add_function(
            "boom",
            |Arguments(_): Arguments| -> Result<cel::Value, cel::ExecutionError> {
                panic!("a bug in the evaluator")
            },
        )
        .expect("a new function");
    let form = Arc::new(form);
    // (Printing the panic's backtrace can take longer than the usual budget.)
    let evaluation = form
        .evaluate_budgeted(&answers(json!({"spend": 10})), Duration::from_secs(20))
        .await;
    let found: Vec<(&str, Severity, &str)> = evaluation
        .flags
        .iter()
        .map(|flag| (flag.rule_id.as_str(), flag.severity, flag.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "r0",
                Severity::Warning,
                "the rule could not be evaluated: the evaluator failed"
            ),
            ("r1", Severity::Error, "r1 failed"),
        ]
    );
    assert_eq!(form.overrunning.load(Ordering::Acquire), 0);
}
