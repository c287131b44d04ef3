//! What a cell holds, how a written value becomes one (`RAW` / `USER_ENTERED`), and how it is
//! read back (`FORMATTED_VALUE` / `UNFORMATTED_VALUE` / `FORMULA`).

use serde_json::Value;

/// Google's per-cell limit.
pub const MAX_CELL_CHARS: usize = 50_000;

/// A stored cell.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Cell {
    #[default]
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
    /// The formula's text, `=` included. It is never evaluated (see [`Cell::render`]).
    Formula(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOption {
    /// Stored exactly as sent: a string stays a string even if it reads `=1+1` or `42`.
    Raw,
    /// Parsed as if typed into the UI: numbers, `TRUE`/`FALSE`, `=` formulas, `'` forcing text.
    UserEntered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderOption {
    Formatted,
    Unformatted,
    Formula,
}

impl InputOption {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "RAW" => Some(Self::Raw),
            "USER_ENTERED" => Some(Self::UserEntered),
            _ => None,
        }
    }
}

impl RenderOption {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "FORMATTED_VALUE" => Some(Self::Formatted),
            "UNFORMATTED_VALUE" => Some(Self::Unformatted),
            "FORMULA" => Some(Self::Formula),
            _ => None,
        }
    }
}

/// Why a written value was refused; the caller adds its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// An object or a list where a cell value belongs.
    NotAScalar,
    TooLong,
}

impl Cell {
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }

    /// The cell a written JSON value becomes; `None` for `null`, which the API skips (the cell
    /// keeps its value — an empty string is what clears one).
    pub fn from_input(value: &Value, option: InputOption) -> Result<Option<Cell>, InputError> {
        let cell = match value {
            Value::Null => return Ok(None),
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => {
                if s.chars().count() > MAX_CELL_CHARS {
                    return Err(InputError::TooLong);
                }
                match option {
                    InputOption::Raw if s.is_empty() => Cell::Empty,
                    InputOption::Raw => Cell::Text(s.clone()),
                    InputOption::UserEntered => user_entered(s),
                }
            }
            Value::Array(_) | Value::Object(_) => return Err(InputError::NotAScalar),
        };
        Ok(Some(cell))
    }

    /// The cell as the API returns it. Formulas are not evaluated: `FORMULA` gives their text,
    /// the other options give `#ERROR!` (what Sheets shows for a formula it cannot compute), so
    /// a test can tell a formula from text that merely starts with `=`.
    pub fn render(&self, option: RenderOption) -> Value {
        match (self, option) {
            (Cell::Empty, _) => Value::String(String::new()),
            (Cell::Text(s), _) => Value::String(s.clone()),
            (Cell::Bool(b), RenderOption::Formatted) => {
                Value::String(if *b { "TRUE" } else { "FALSE" }.into())
            }
            (Cell::Bool(b), _) => Value::Bool(*b),
            (Cell::Number(n), RenderOption::Formatted) => Value::String(format_number(*n)),
            (Cell::Number(n), _) => number_json(*n),
            (Cell::Formula(text), RenderOption::Formula) => Value::String(text.clone()),
            (Cell::Formula(_), _) => Value::String("#ERROR!".into()),
        }
    }

    /// The stored value as JSON: numbers and booleans typed, formulas as their text.
    pub fn stored(&self) -> Value {
        self.render(RenderOption::Formula)
    }

    /// The stored value as text (CSV export).
    pub fn stored_text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) | Cell::Formula(s) => s.clone(),
            Cell::Number(n) => format_number(*n),
            Cell::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        }
    }
}

/// What the Sheets UI makes of typed text (the subset that matters here: no dates, currencies
/// or percentages, which stay text).
fn user_entered(s: &str) -> Cell {
    if s.is_empty() {
        return Cell::Empty;
    }
    if let Some(text) = s.strip_prefix('\'') {
        // A leading apostrophe forces text and is not part of the value.
        return Cell::Text(text.to_owned());
    }
    if s.len() > 1 && s.starts_with('=') {
        return Cell::Formula(s.to_owned());
    }
    let trimmed = s.trim();
    if trimmed.eq_ignore_ascii_case("TRUE") {
        return Cell::Bool(true);
    }
    if trimmed.eq_ignore_ascii_case("FALSE") {
        return Cell::Bool(false);
    }
    if looks_numeric(trimmed) {
        if let Ok(number) = trimmed.parse::<f64>() {
            if number.is_finite() {
                return Cell::Number(number);
            }
        }
    }
    Cell::Text(s.to_owned())
}

/// `-12`, `3.5`, `.5`, `1e6`, `+7` (not `inf`, `NaN`, `0x10` or `1_000`, which Rust would
/// partly accept).
fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Whole numbers as JSON integers (Sheets writes `42`, not `42.0`).
pub fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Roughly Sheets' automatic number format: integers plainly, fractions as needed, very large or
/// small magnitudes in `1.5E+21` form.
pub fn format_number(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    let magnitude = n.abs();
    if n.fract() == 0.0 && magnitude < 1e15 {
        return format!("{}", n as i64);
    }
    if (1e-5..1e15).contains(&magnitude) {
        return format!("{n}");
    }
    let scientific = format!("{n:E}");
    match scientific.split_once('E') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => {
            format!("{mantissa}E+{exponent}")
        }
        _ => scientific,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entered(value: Value) -> Option<Cell> {
        Cell::from_input(&value, InputOption::UserEntered)
            .ok()
            .flatten()
    }

    #[test]
    fn raw_keeps_strings_as_text() {
        let formula = json!("=IMPORTXML(\"http://x\",\"//a\")");
        assert_eq!(
            Cell::from_input(&formula, InputOption::Raw),
            Ok(Some(Cell::Text("=IMPORTXML(\"http://x\",\"//a\")".into())))
        );
        assert_eq!(
            Cell::from_input(&json!("42"), InputOption::Raw),
            Ok(Some(Cell::Text("42".into())))
        );
        assert_eq!(
            Cell::from_input(&json!(42), InputOption::Raw),
            Ok(Some(Cell::Number(42.0)))
        );
        assert_eq!(Cell::from_input(&json!(null), InputOption::Raw), Ok(None));
        assert_eq!(
            Cell::from_input(&json!([1]), InputOption::Raw),
            Err(InputError::NotAScalar)
        );
    }

    #[test]
    fn user_entered_parses_like_the_ui() {
        assert_eq!(entered(json!("42")), Some(Cell::Number(42.0)));
        assert_eq!(entered(json!("-3.5e2")), Some(Cell::Number(-350.0)));
        assert_eq!(entered(json!("true")), Some(Cell::Bool(true)));
        assert_eq!(entered(json!("=1+1")), Some(Cell::Formula("=1+1".into())));
        assert_eq!(entered(json!("'=1+1")), Some(Cell::Text("=1+1".into())));
        assert_eq!(entered(json!("'42")), Some(Cell::Text("42".into())));
        assert_eq!(entered(json!("inf")), Some(Cell::Text("inf".into())));
        assert_eq!(entered(json!("0x10")), Some(Cell::Text("0x10".into())));
        assert_eq!(entered(json!("")), Some(Cell::Empty));
    }

    #[test]
    fn renders_per_option() {
        let cases = [
            (Cell::Number(42.0), json!("42"), json!(42)),
            (Cell::Number(2.5), json!("2.5"), json!(2.5)),
            (Cell::Bool(true), json!("TRUE"), json!(true)),
            (Cell::Text("x".into()), json!("x"), json!("x")),
        ];
        for (cell, formatted, unformatted) in cases {
            assert_eq!(cell.render(RenderOption::Formatted), formatted);
            assert_eq!(cell.render(RenderOption::Unformatted), unformatted);
        }
        let formula = Cell::Formula("=1+1".into());
        assert_eq!(formula.render(RenderOption::Formula), json!("=1+1"));
        assert_eq!(formula.render(RenderOption::Formatted), json!("#ERROR!"));
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(format_number(1234567.0), "1234567");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1.5e21), "1.5E+21");
        assert_eq!(format_number(-7.0), "-7");
    }

    #[test]
    fn refuses_overlong_text() {
        let long = "x".repeat(MAX_CELL_CHARS + 1);
        assert_eq!(
            Cell::from_input(&Value::String(long), InputOption::Raw),
            Err(InputError::TooLong)
        );
        let fits = "é".repeat(MAX_CELL_CHARS);
        assert!(Cell::from_input(&Value::String(fits), InputOption::Raw).is_ok());
    }
}
