//! Limits on what a rule may be, so that compiling and evaluating one cannot overflow a thread's
//! stack, and its cost is bounded.
//!
//! Measured with cel 0.15 in a debug build on a 2 MiB stack (the size of tokio's worker and
//! blocking threads, and of a default spawned thread): a left-deep chain (`a+a+…`, `a.x.x…`,
//! `a[0][0]…`, `x.f().f()…`: the parser's own recursion limit of 96 does not catch these) overflows
//! the parser at about 4,500 levels and the evaluator at about 1,600 levels; nested brackets stop
//! at the parser's limit (96) with a syntax error. Hence, checked in this order, each check safe on
//! what the previous one let through:
//! - [`MAX_EXPRESSION_CHARS`] before parsing: 4,096 characters make at most about 2,050 levels of
//!   the tightest chain (`a+a+…`), parsed and dropped with more than twice that to spare (the
//!   parse itself takes 7–18 ms in a debug build, so `PUT` compiles on a blocking thread);
//! - [`MAX_BRACKET_NESTING`] on the source text before parsing: a clear message instead of the
//!   parser's "Recursion limit of 96 exceeded";
//! - [`MAX_DEPTH`] on the parsed expression, walked without recursion, before anything walks it
//!   recursively (our rewrite, the evaluator, which would overflow at ~1,600): 64 allows
//!   comparing a sum of 63 answers, and is 25 times below the evaluator's limit;
//! - [`MAX_MACRO_NESTING`]: a macro (`all`, `exists`, `exists_one`, `map`, `filter`) in the body
//!   of another is refused. Answers are single values, so a macro can only iterate over a list
//!   written in the rule; one in another's body has no use here, and makes the cost cubic in the
//!   rule's length (`[…].all(x, […].map(y, […]).size() > 0)`: 1.9 s at 1,800 characters, about
//!   20 s extrapolated to 4,096, debug build). Without nesting the worst is quadratic
//!   (`[…].map(x, […])`, 10^6 list elements built: 80 ms, debug). Chaining
//!   (`[…].filter(x, x > 0).all(x, x < 9)`) is not nesting.

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr};

/// A form whose rules have no macro and this many nodes at most, together, is evaluated on the
/// calling thread (see [`crate::rules::CompiledForm::evaluate_budgeted`]): without a loop, CEL
/// visits each node at most once, so this is microseconds (the seed form has 18 nodes), less
/// than handing the work to another thread (about 65 µs per response, measured in a debug
/// build here).
pub const MAX_INLINE_NODES: usize = 500;

/// Rules per form.
pub const MAX_RULES: usize = 200;
/// Characters per rule expression.
pub const MAX_EXPRESSION_CHARS: usize = 4096;
/// Brackets (`(`, `[`, `{`) open at once in a rule's text.
pub const MAX_BRACKET_NESTING: usize = 32;
/// Depth of a rule's expression tree (`a + b > 0` is 3 deep).
pub const MAX_DEPTH: usize = 64;
/// Macros in the body of one another: 1 is a macro, with no macro in its body.
pub const MAX_MACRO_NESTING: usize = 1;

/// What is wrong, and the 1-based line and column when the fault has a place.
pub type Violation = (Option<(usize, usize)>, String);

/// Checks done on the text, before parsing.
pub fn check_source(source: &str) -> Result<(), Violation> {
    let length = source.chars().count();
    if length > MAX_EXPRESSION_CHARS {
        return Err((
            None,
            format!(
                "the expression is {length} characters long; at most {MAX_EXPRESSION_CHARS} are allowed"
            ),
        ));
    }
    if let Some(position) = too_deep_bracket(source) {
        return Err((
            Some(position),
            format!(
                "brackets are nested more than {MAX_BRACKET_NESTING} deep; simplify the expression"
            ),
        ));
    }
    Ok(())
}

/// Where a bracket opens beyond [`MAX_BRACKET_NESTING`], outside string literals.
fn too_deep_bracket(source: &str) -> Option<(usize, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let (mut line, mut column) = (1, 0);
    let mut depth = 0usize;
    // The closing quote of the string literal we are in (1 or 3 characters), and whether it
    // is raw (no escapes).
    let mut in_string: Option<(char, usize, bool)> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
        }
        match in_string {
            Some((quote, count, raw)) => {
                if c == '\\' && !raw {
                    i += 2;
                    column += 1;
                    continue;
                }
                if c == quote && chars[i..].iter().take(count).all(|&q| q == quote) {
                    in_string = None;
                    i += count;
                    column += count - 1;
                    continue;
                }
            }
            None => match c {
                '\'' | '"' => {
                    let raw = i > 0
                        && matches!(chars[i - 1], 'r' | 'R')
                        && !(i > 1
                            && (chars[i - 2].is_ascii_alphanumeric() || chars[i - 2] == '_'));
                    let triple = chars[i..].iter().take(3).filter(|&&q| q == c).count() == 3;
                    let count = if triple { 3 } else { 1 };
                    in_string = Some((c, count, raw));
                    i += count;
                    column += count - 1;
                    continue;
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_BRACKET_NESTING {
                        return Some((line, column));
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// What evaluating an expression may cost, seen on its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Nodes in the tree.
    pub nodes: usize,
    /// Whether it has a macro (a loop).
    pub macros: bool,
}

/// Checks done on the parsed expression, without recursion: its depth and its macro nesting.
/// Returns the id of the offending node with the message.
pub fn check_expression(expression: &IdedExpr) -> Result<Shape, (u64, String)> {
    let mut shape = Shape {
        nodes: 0,
        macros: false,
    };
    // (node, its depth, how many macro bodies it is in)
    let mut stack: Vec<(&IdedExpr, usize, usize)> = vec![(expression, 1, 0)];
    while let Some((node, depth, bodies)) = stack.pop() {
        shape.nodes += 1;
        if depth > MAX_DEPTH {
            return Err((
                node.id,
                format!(
                    "the expression is nested more than {MAX_DEPTH} deep (e.g. a long chain of `+`); split it into several rules"
                ),
            ));
        }
        let child = depth + 1;
        match &node.expr {
            Expr::Call(call) => {
                if let Some(target) = call.target.as_deref() {
                    stack.push((target, child, bodies));
                }
                stack.extend(call.args.iter().map(|arg| (arg, child, bodies)));
            }
            Expr::Comprehension(comprehension) => {
                shape.macros = true;
                let nesting = bodies + 1;
                if nesting > MAX_MACRO_NESTING {
                    return Err((
                        node.id,
                        format!(
                            "macros (all, exists, exists_one, map, filter) are nested more than {MAX_MACRO_NESTING} deep"
                        ),
                    ));
                }
                // What the macro is applied to is not in its body; the rest is.
                stack.push((&comprehension.iter_range, child, bodies));
                for part in [
                    &comprehension.accu_init,
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ] {
                    stack.push((part, child, nesting));
                }
            }
            Expr::List(list) => stack.extend(list.elements.iter().map(|e| (e, child, bodies))),
            Expr::Map(map) => {
                for entry in &map.entries {
                    push_entry(&mut stack, &entry.expr, child, bodies);
                }
            }
            Expr::Struct(structure) => {
                for entry in &structure.entries {
                    push_entry(&mut stack, &entry.expr, child, bodies);
                }
            }
            Expr::Select(select) => stack.push((&select.operand, child, bodies)),
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    Ok(shape)
}

fn push_entry<'a>(
    stack: &mut Vec<(&'a IdedExpr, usize, usize)>,
    entry: &'a EntryExpr,
    depth: usize,
    bodies: usize,
) {
    match entry {
        EntryExpr::MapEntry(entry) => {
            stack.push((&entry.key, depth, bodies));
            stack.push((&entry.value, depth, bodies));
        }
        EntryExpr::StructField(field) => stack.push((&field.value, depth, bodies)),
    }
}

/// The 1-based line and column of a byte offset in `source`.
pub fn position(source: &str, offset: usize) -> Option<(usize, usize)> {
    let before = source.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |text| text.chars().count())
        + 1;
    Some((line, column))
}
