//! A form's checks: `required` and type checks per question, then its CEL rules.
//!
//! Rules are compiled once per form version. Two rewrites make them behave as a person reading
//! them expects:
//! - every number is a double: answers are loaded as doubles and integer literals in the
//!   expression become doubles, so `visits * 1000` and `income - expenditure` (which would
//!   overflow as unsigned integers) just work;
//! - comparisons between numbers allow a relative tolerance of 1e-9, so binary floating point
//!   does not flag a correct response (`100.3 - 100.1 >= 0.2` holds), while a difference of a
//!   cent on amounts up to billions still counts.

mod answers;
mod cel_rewrite;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cel::{Context, IdedExpr, Program};
use serde_json::{Map, Value};

use crate::forms::{Form, Rule, Severity};
pub use crate::messages::Flag;

pub use answers::AnswerValue;

/// What checking a response found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    pub flags: Vec<Flag>,
}

impl Evaluation {
    /// Flagged: some finding has severity `error` and goes back to the collector.
    pub fn is_flagged(&self) -> bool {
        self.flags
            .iter()
            .any(|flag| flag.severity == Severity::Error)
    }
}

/// Why a form's rule does not compile: which rule, where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Index of the rule in the form's `rules`.
    pub index: usize,
    pub rule_id: String,
    /// 1-based line and column in the expression, when the error has a position.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, column)) => write!(
                f,
                "rule {:?} at line {line}, column {column}: {}",
                self.rule_id, self.message
            ),
            None => write!(f, "rule {:?}: {}", self.rule_id, self.message),
        }
    }
}

struct CompiledRule {
    rule: Rule,
    expression: IdedExpr,
    /// The questions it reads; it is not evaluated unless all of them have a valid answer.
    questions: Vec<String>,
}

/// A form ready to check responses.
pub struct CompiledForm {
    pub form: Arc<Form>,
    pub version: i32,
    rules: Vec<CompiledRule>,
    /// CEL's standard functions and the tolerant comparisons, registered once: each
    /// evaluation adds the answers in a scope of its own (building this per response was a
    /// visible part of the validator's profile).
    functions: Context<'static, 'static>,
}

impl std::fmt::Debug for CompiledForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledForm")
            .field("form", &self.form.id)
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl CompiledForm {
    /// Compiles every rule; all errors are reported, each with its position.
    pub fn compile(form: Arc<Form>, version: i32) -> Result<Self, Vec<RuleError>> {
        let question_ids: BTreeSet<&str> = form
            .definition
            .questions
            .iter()
            .map(|question| question.id.as_str())
            .collect();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (index, rule) in form.definition.rules.iter().enumerate() {
            let error = |position, message: String| RuleError {
                index,
                rule_id: rule.id.clone(),
                position,
                message,
            };
            let program = match Program::compile(&rule.expression) {
                Ok(program) => program,
                Err(parse_errors) => {
                    for parse_error in parse_errors.errors {
                        // cel reports 1-based positions.
                        let (line, column) = parse_error.pos;
                        let position =
                            (line > 0 && column > 0).then_some((line as usize, column as usize));
                        errors.push(error(position, parse_error.msg));
                    }
                    continue;
                }
            };
            let references = program.references();
            let mut questions = Vec::new();
            for name in references.variables() {
                if question_ids.contains(name) {
                    questions.push(name.to_owned());
                } else {
                    let position = cel_rewrite::find_identifier(&rule.expression, name);
                    errors.push(error(
                        position,
                        format!("{name:?} is not a question of this form"),
                    ));
                }
            }
            let mut expression = program.expression().clone();
            cel_rewrite::numbers_as_doubles(&mut expression);
            rules.push(CompiledRule {
                rule: rule.clone(),
                expression,
                questions,
            });
        }
        if errors.is_empty() {
            let mut functions = Context::default();
            cel_rewrite::add_tolerant_comparisons(&mut functions);
            Ok(Self {
                form,
                version,
                rules,
                functions,
            })
        } else {
            Err(errors)
        }
    }

    /// Checks `answers` (by question id) against the form.
    pub fn evaluate(&self, answers: &Map<String, Value>) -> Evaluation {
        let mut flags = Vec::new();
        let mut valid: HashMap<&str, AnswerValue> = HashMap::new();
        for question in &self.form.definition.questions {
            match answers::check(question, answers.get(&question.id)) {
                Ok(Some(value)) => {
                    valid.insert(question.id.as_str(), value);
                }
                Ok(None) if question.required => flags.push(Flag {
                    rule_id: format!("required:{}", question.id),
                    message: format!("{} is required", question.label),
                    severity: Severity::Error,
                }),
                Ok(None) => {}
                Err(problem) => flags.push(Flag {
                    rule_id: format!("type:{}", question.id),
                    message: format!("{}: {problem}", question.label),
                    severity: Severity::Error,
                }),
            }
        }

        let mut context = self.functions.new_inner_scope();
        for (id, value) in &valid {
            context.add_variable_from_value(*id, value.to_cel());
        }
        for compiled in &self.rules {
            // A rule over a missing or invalid answer is not evaluated: that answer has its
            // own flag (or is optional and absent).
            if !compiled
                .questions
                .iter()
                .all(|id| valid.contains_key(id.as_str()))
            {
                continue;
            }
            let rule = &compiled.rule;
            match context.resolve(&compiled.expression) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => flags.push(Flag {
                    rule_id: rule.id.clone(),
                    message: rule.message.clone(),
                    severity: rule.severity,
                }),
                // The rule is broken for these answers (not the collector's doing): recorded
                // as a warning so someone looks, not sent back.
                Ok(other) => flags.push(Flag {
                    rule_id: rule.id.clone(),
                    message: format!("the rule gave {other:?}, not true or false"),
                    severity: Severity::Warning,
                }),
                Err(error) => flags.push(Flag {
                    rule_id: rule.id.clone(),
                    message: format!("the rule could not be evaluated: {error}"),
                    severity: Severity::Warning,
                }),
            }
        }
        Evaluation { flags }
    }
}

#[cfg(test)]
mod tests;
