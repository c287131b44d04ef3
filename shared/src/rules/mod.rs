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
pub mod limits;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cel::{Context, IdedExpr, Program};
use serde_json::{Map, Value};

use crate::forms::{Form, Rule, Severity};
pub use crate::messages::Flag;

pub use answers::AnswerValue;

/// How long the rules of a form may take on one response before the rest are recorded as
/// warnings (see [`CompiledForm::evaluate_budgeted`]). Forms within the [`limits`] take well
/// under a millisecond; the margin is for a loaded machine, where a correct rule must not be
/// cut short (a cut rule cannot flag its response).
pub const EVALUATION_BUDGET: Duration = Duration::from_millis(250);

/// What checking a response found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    pub flags: Vec<Flag>,
}

impl Evaluation {
    /// Flagged: some finding has severity `error` and goes back to the collector.
    pub fn is_flagged(&self) -> bool {
        crate::domain::ResponseStatus::of(&self.flags) == crate::domain::ResponseStatus::Flagged
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
    /// The questions it reads (their indices in the form); it is not evaluated unless all of
    /// them have a valid answer.
    questions: Vec<usize>,
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
    /// Evaluations by [`Self::evaluate_budgeted`] still running past their budget.
    overrunning: AtomicUsize,
    /// Cheap enough to evaluate on the calling thread, budget or not (no macro, at most
    /// [`limits::MAX_INLINE_NODES`] nodes).
    inline: bool,
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
    /// [`CompiledForm::compile`] with its errors on one line: what a validator's form cache
    /// keeps ([`crate::store::FormCache::new`]).
    pub fn compile_for_cache(form: Arc<Form>, version: i32) -> Result<Self, String> {
        Self::compile(form, version).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Compiles every rule; all errors are reported, each with its position.
    pub fn compile(form: Arc<Form>, version: i32) -> Result<Self, Vec<RuleError>> {
        let question_ids: HashMap<&str, usize> = form
            .definition
            .questions
            .iter()
            .enumerate()
            .map(|(index, question)| (question.id.as_str(), index))
            .collect();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        let (mut inline_nodes, mut any_macro) = (0, false);
        for (index, rule) in form.definition.rules.iter().enumerate() {
            let error = |position, message: String| RuleError {
                index,
                rule_id: rule.id.clone(),
                position,
                message,
            };
            // The limits (see `limits`) come before anything that recurses over the rule.
            if let Err((position, message)) = limits::check_source(&rule.expression) {
                errors.push(error(position, message));
                continue;
            }
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
            match limits::check_expression(program.expression()) {
                Ok(shape) => {
                    inline_nodes += shape.nodes;
                    any_macro |= shape.macros;
                }
                Err((id, message)) => {
                    let position = program
                        .source_info()
                        .offset_for(id)
                        .and_then(|(start, _)| limits::position(&rule.expression, start as usize));
                    errors.push(error(position, message));
                    continue;
                }
            }
            let mut questions = Vec::new();
            for name in cel_rewrite::free_variables(program.expression()) {
                if let Some(&question) = question_ids.get(name) {
                    questions.push(question);
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
                overrunning: AtomicUsize::new(0),
                inline: !any_macro && inline_nodes <= limits::MAX_INLINE_NODES,
            })
        } else {
            Err(errors)
        }
    }

    /// Checks `answers` (by question id) against the form, on this thread, however long the
    /// rules take. The validator uses [`Self::evaluate_budgeted`].
    pub fn evaluate(&self, answers: &Map<String, Value>) -> Evaluation {
        let (mut flags, valid) = self.check_answers(answers);
        let context = self.context(&valid);
        for compiled in &self.rules {
            if applies(compiled, &valid)
                && let Some(flag) = self.evaluate_rule(&context, compiled)
            {
                flags.push(flag);
            }
        }
        Evaluation { flags }
    }

    /// Checks `answers` like [`Self::evaluate`], with the rules evaluated on a blocking thread
    /// (not on the async runtime) within `budget`. (A form whose rules have no macro and at
    /// most [`limits::MAX_INLINE_NODES`] nodes in all is evaluated right here instead: that
    /// takes microseconds, less than the hand-over to another thread.) A rule still running
    /// when the budget is spent is recorded as a `warning` (the form's fault, like a rule that cannot be
    /// evaluated), and so is every rule after it; the checking goes on without them.
    ///
    /// CEL evaluation cannot be interrupted: the late rule runs to its end on its thread (the
    /// limits of [`limits`] bound how long that is), then that thread stops without evaluating
    /// the rest. While such a late evaluation of this compiled form is still running, later
    /// calls do not start another: their rules are recorded as warnings at once, so a slow form
    /// keeps at most one thread busy.
    pub async fn evaluate_budgeted(
        self: &Arc<Self>,
        answers: &Map<String, Value>,
        budget: Duration,
    ) -> Evaluation {
        if self.inline {
            return self.evaluate(answers);
        }
        let (mut flags, valid) = self.check_answers(answers);
        if !self.rules.iter().any(|compiled| applies(compiled, &valid)) {
            return Evaluation { flags };
        }
        if self.overrunning.load(Ordering::Acquire) > 0 {
            self.rules_not_evaluated(&valid, 0, budget, Lateness::Overrunning, &mut flags);
            return Evaluation { flags };
        }
        let progress = Arc::new(Mutex::new(Progress::default()));
        let task = {
            let form = Arc::clone(self);
            let progress = Arc::clone(&progress);
            tokio::task::spawn_blocking(move || form.evaluate_rules(&valid, &progress))
        };
        let outcome = tokio::time::timeout(budget, task).await;
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        flags.append(&mut progress.flags);
        let late = match outcome {
            Ok(Ok(())) => None,
            // The task was cancelled (the runtime is shutting down).
            Ok(Err(_)) => Some(Lateness::Cancelled),
            // It finished just as the budget ran out.
            Err(_elapsed) if progress.done => None,
            Err(_elapsed) => {
                progress.stopped = true;
                self.overrunning.fetch_add(1, Ordering::AcqRel);
                Some(Lateness::Late)
            }
        };
        if let Some(lateness) = late {
            let (_, valid) = self.check_answers(answers);
            self.rules_not_evaluated(&valid, progress.next, budget, lateness, &mut flags);
        }
        Evaluation { flags }
    }

    /// The blocking half of [`Self::evaluate_budgeted`]: evaluates the rules in order,
    /// recording each result in `progress`, until done or told to stop.
    fn evaluate_rules(&self, valid: &[Option<AnswerValue>], progress: &Mutex<Progress>) {
        let lock = || progress.lock().unwrap_or_else(PoisonError::into_inner);
        let context = self.context(valid);
        for (index, compiled) in self.rules.iter().enumerate() {
            {
                let mut progress = lock();
                if progress.stopped {
                    self.overrunning.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
                progress.next = index;
            }
            if !applies(compiled, valid) {
                continue;
            }
            // A panic in cel is this rule's failure, not the thread's: the others go on.
            let flag = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.evaluate_rule(&context, compiled)
            }))
            .unwrap_or_else(|_| {
                Some(Flag {
                    rule_id: compiled.rule.id.clone(),
                    message: "the rule could not be evaluated: the evaluator failed".to_owned(),
                    severity: Severity::Warning,
                })
            });
            let mut progress = lock();
            if progress.stopped {
                self.overrunning.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            progress.flags.extend(flag);
            progress.next = index + 1;
        }
        let mut progress = lock();
        progress.next = self.rules.len();
        progress.done = true;
        if progress.stopped {
            self.overrunning.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Warnings for the rules from `from` on that apply to these answers and were not
    /// evaluated.
    fn rules_not_evaluated(
        &self,
        valid: &[Option<AnswerValue>],
        from: usize,
        budget: Duration,
        lateness: Lateness,
        flags: &mut Vec<Flag>,
    ) {
        let budget = humane(budget);
        let mut first = true;
        for compiled in self.rules.iter().skip(from) {
            if !applies(compiled, valid) {
                continue;
            }
            // The first rule without a result is the one that was running.
            let running = std::mem::replace(&mut first, false);
            let message = match lateness {
                Lateness::Late if running => format!(
                    "the rule exceeded the evaluation budget: it did not finish within {budget}"
                ),
                Lateness::Late => format!(
                    "the rule was not evaluated: an earlier rule exceeded the evaluation budget of {budget}"
                ),
                Lateness::Cancelled => {
                    "the rule was not evaluated: the evaluation was cancelled".to_owned()
                }
                Lateness::Overrunning => format!(
                    "the rule was not evaluated: an earlier evaluation of this form's rules exceeded the evaluation budget of {budget} and is still running"
                ),
            };
            flags.push(Flag {
                rule_id: compiled.rule.id.clone(),
                message,
                severity: Severity::Warning,
            });
        }
    }

    /// The question flags, and the valid answers by question index (what the rules read).
    fn check_answers(&self, answers: &Map<String, Value>) -> (Vec<Flag>, Vec<Option<AnswerValue>>) {
        let mut flags = Vec::new();
        let mut valid = Vec::with_capacity(self.form.definition.questions.len());
        for question in &self.form.definition.questions {
            let mut value = None;
            match answers::check(question, answers.get(&question.id)) {
                Ok(Some(answer)) => value = Some(answer),
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
            valid.push(value);
        }
        (flags, valid)
    }

    fn context(&self, valid: &[Option<AnswerValue>]) -> Context<'_, '_> {
        let mut context = self.functions.new_inner_scope();
        for (question, value) in self.form.definition.questions.iter().zip(valid) {
            if let Some(value) = value {
                context.add_variable_from_value(question.id.as_str(), value.to_cel());
            }
        }
        context
    }

    /// One rule's finding, if any.
    fn evaluate_rule(&self, context: &Context, compiled: &CompiledRule) -> Option<Flag> {
        let rule = &compiled.rule;
        let (message, severity) = match context.resolve(&compiled.expression) {
            Ok(cel::Value::Bool(true)) => return None,
            Ok(cel::Value::Bool(false)) => (rule.message.clone(), rule.severity),
            // The rule is broken for these answers (not the collector's doing): recorded
            // as a warning so someone looks, not sent back.
            Ok(other) => (
                format!("the rule gave {other:?}, not true or false"),
                Severity::Warning,
            ),
            Err(error) => (
                format!("the rule could not be evaluated: {error}"),
                Severity::Warning,
            ),
        };
        Some(Flag {
            rule_id: rule.id.clone(),
            message,
            severity,
        })
    }
}

/// A rule over a missing or invalid answer is not evaluated: that answer has its own flag (or
/// is optional and absent).
fn applies(compiled: &CompiledRule, valid: &[Option<AnswerValue>]) -> bool {
    compiled
        .questions
        .iter()
        .all(|&index| valid.get(index).is_some_and(Option::is_some))
}

/// How far the blocking evaluation of [`CompiledForm::evaluate_budgeted`] got.
#[derive(Default)]
struct Progress {
    /// The findings of the rules evaluated so far.
    flags: Vec<Flag>,
    /// The first rule without a result: the one being evaluated, or about to be (the number
    /// of rules when all are done).
    next: usize,
    /// Set by the blocking thread when it evaluated every rule.
    done: bool,
    /// Set when the budget is spent: the blocking thread stops after its current rule and
    /// records nothing more.
    stopped: bool,
}

#[derive(Clone, Copy)]
enum Lateness {
    /// The budget was spent.
    Late,
    /// The evaluation was cancelled (the runtime is shutting down).
    Cancelled,
    /// An earlier evaluation is still running past its budget.
    Overrunning,
}

/// `250 ms`, `2 s`, `1500 µs`.
fn humane(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos >= 1_000_000_000 && nanos % 1_000_000_000 == 0 {
        format!("{} s", duration.as_secs())
    } else if nanos >= 1_000_000 && nanos % 1_000_000 == 0 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} µs", duration.as_micros())
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
