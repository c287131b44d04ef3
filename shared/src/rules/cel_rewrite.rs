//! Rewrites of a compiled CEL expression, and the functions they call.

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::types::CelDouble;
use cel::extractors::Arguments;
use cel::{Context, ExecutionError, IdedExpr, Value};

/// Relative tolerance of numeric comparisons.
const TOLERANCE: f64 = 1e-9;

const COMPARISONS: [(&str, &str); 6] = [
    ("_>=_", "collect_ge"),
    ("_<=_", "collect_le"),
    ("_>_", "collect_gt"),
    ("_<_", "collect_lt"),
    ("_==_", "collect_eq"),
    ("_!=_", "collect_ne"),
];

/// Integer literals become doubles, and comparisons call the tolerant functions below.
/// Comprehensions (macros such as `all`) are left as they are.
pub fn numbers_as_doubles(expression: &mut IdedExpr) {
    match &mut expression.expr {
        Expr::Literal(LiteralValue::Int(value)) => {
            let double = *value.inner() as f64;
            expression.expr = Expr::Literal(LiteralValue::Double(CelDouble::from(double)));
        }
        Expr::Literal(LiteralValue::UInt(value)) => {
            let double = *value.inner() as f64;
            expression.expr = Expr::Literal(LiteralValue::Double(CelDouble::from(double)));
        }
        Expr::Call(call) => {
            if let Some((_, tolerant)) = COMPARISONS
                .iter()
                .find(|(operator, _)| *operator == call.func_name)
            {
                call.func_name = (*tolerant).to_owned();
            }
            if let Some(target) = call.target.as_deref_mut() {
                numbers_as_doubles(target);
            }
            call.args.iter_mut().for_each(numbers_as_doubles);
        }
        Expr::List(list) => list.elements.iter_mut().for_each(numbers_as_doubles),
        Expr::Select(select) => numbers_as_doubles(&mut select.operand),
        _ => {}
    }
}

pub fn add_tolerant_comparisons(context: &mut Context) {
    // The names are ours, so they cannot clash with the standard library.
    let _ = context.add_function("collect_ge", |Arguments(args): Arguments| {
        compare(&args, |ordering| ordering.is_ge())
    });
    let _ = context.add_function("collect_le", |Arguments(args): Arguments| {
        compare(&args, |ordering| ordering.is_le())
    });
    let _ = context.add_function("collect_gt", |Arguments(args): Arguments| {
        compare(&args, |ordering| ordering.is_gt())
    });
    let _ = context.add_function("collect_lt", |Arguments(args): Arguments| {
        compare(&args, |ordering| ordering.is_lt())
    });
    let _ = context.add_function("collect_eq", |Arguments(args): Arguments| {
        equal(&args).map(Value::Bool)
    });
    let _ = context.add_function("collect_ne", |Arguments(args): Arguments| {
        equal(&args).map(|equal| Value::Bool(!equal))
    });
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Float(number) => Some(*number),
        Value::Int(number) => Some(*number as f64),
        Value::UInt(number) => Some(*number as f64),
        _ => None,
    }
}

fn pair(args: &[Value]) -> Result<(&Value, &Value), ExecutionError> {
    match args {
        [left, right] => Ok((left, right)),
        _ => Err(ExecutionError::invalid_argument_count(2, args.len())),
    }
}

/// Numbers within the tolerance are equal; other values compare as CEL compares them.
fn ordering(left: &Value, right: &Value) -> Result<std::cmp::Ordering, ExecutionError> {
    if let (Some(a), Some(b)) = (as_number(left), as_number(right)) {
        let scale = 1f64.max(a.abs()).max(b.abs());
        if (a - b).abs() <= TOLERANCE * scale {
            return Ok(std::cmp::Ordering::Equal);
        }
        return a
            .partial_cmp(&b)
            .ok_or_else(|| ExecutionError::ValuesNotComparable(left.clone(), right.clone()));
    }
    left.partial_cmp(right)
        .ok_or_else(|| ExecutionError::ValuesNotComparable(left.clone(), right.clone()))
}

fn compare(
    args: &[Value],
    accept: impl Fn(std::cmp::Ordering) -> bool,
) -> Result<Value, ExecutionError> {
    let (left, right) = pair(args)?;
    ordering(left, right).map(|ordering| Value::Bool(accept(ordering)))
}

fn equal(args: &[Value]) -> Result<bool, ExecutionError> {
    let (left, right) = pair(args)?;
    if as_number(left).is_some() && as_number(right).is_some() {
        return ordering(left, right).map(|ordering| ordering.is_eq());
    }
    Ok(left == right)
}

/// The 1-based line and column where `name` first stands as a whole identifier.
pub fn find_identifier(source: &str, name: &str) -> Option<(usize, usize)> {
    let is_identifier_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (line_index, line) in source.lines().enumerate() {
        let mut from = 0;
        while let Some(found) = line[from..].find(name) {
            let start = from + found;
            let end = start + name.len();
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            if !before.is_some_and(is_identifier_char) && !after.is_some_and(is_identifier_char) {
                return Some((line_index + 1, line[..start].chars().count() + 1));
            }
            from = end;
        }
    }
    None
}

/// The variables an expression reads from outside: every identifier but those a macro binds
/// (its iteration variables and accumulator) within the macro's body. Walked without recursion.
/// (cel's own `references()` counts `x` in `xs.all(x, x > 0)` as a variable.)
pub fn free_variables(expression: &IdedExpr) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    // (node, the names bound where it stands)
    let mut stack: Vec<(&IdedExpr, Vec<&str>)> = vec![(expression, Vec::new())];
    while let Some((node, bound)) = stack.pop() {
        match &node.expr {
            Expr::Ident(name) => {
                if !name.starts_with('@')
                    && !bound.contains(&name.as_str())
                    && !found.contains(&name.as_str())
                {
                    found.push(name);
                }
            }
            Expr::Call(call) => {
                if let Some(target) = call.target.as_deref() {
                    stack.push((target, bound.clone()));
                }
                stack.extend(call.args.iter().map(|arg| (arg, bound.clone())));
            }
            Expr::Comprehension(comprehension) => {
                stack.push((&comprehension.iter_range, bound.clone()));
                stack.push((&comprehension.accu_init, bound.clone()));
                let mut inner = bound;
                inner.push(&comprehension.iter_var);
                if let Some(second) = &comprehension.iter_var2 {
                    inner.push(second);
                }
                inner.push(&comprehension.accu_var);
                for part in [
                    &comprehension.loop_cond,
                    &comprehension.loop_step,
                    &comprehension.result,
                ] {
                    stack.push((part, inner.clone()));
                }
            }
            Expr::List(list) => {
                stack.extend(list.elements.iter().map(|element| (element, bound.clone())));
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    push_entry(&mut stack, &entry.expr, &bound);
                }
            }
            Expr::Struct(structure) => {
                for entry in &structure.entries {
                    push_entry(&mut stack, &entry.expr, &bound);
                }
            }
            Expr::Select(select) => stack.push((&select.operand, bound)),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    found
}

fn push_entry<'a>(
    stack: &mut Vec<(&'a IdedExpr, Vec<&'a str>)>,
    entry: &'a EntryExpr,
    bound: &[&'a str],
) {
    match entry {
        EntryExpr::MapEntry(entry) => {
            stack.push((&entry.key, bound.to_vec()));
            stack.push((&entry.value, bound.to_vec()));
        }
        EntryExpr::StructField(field) => stack.push((&field.value, bound.to_vec())),
    }
}
