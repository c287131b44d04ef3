//! Checking one answer against its question's type, and its value for the rules.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use crate::forms::{Question, QuestionType};

/// A valid answer as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl AnswerValue {
    pub fn to_cel(&self) -> cel::Value {
        match self {
            Self::Number(number) => cel::Value::Float(*number),
            Self::Text(text) => cel::Value::String(Arc::new(text.clone())),
            Self::Bool(flag) => cel::Value::Bool(*flag),
        }
    }
}

/// `Ok(None)`: no answer (absent, `null`, or blank text). `Err`: an answer of the wrong type,
/// with what is wrong, for the collector.
pub fn check(question: &Question, answer: Option<&Value>) -> Result<Option<AnswerValue>, String> {
    let answer = match answer {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(answer) => answer,
    };
    let text = || answer.as_str().map(str::trim);
    let value = match question.kind {
        QuestionType::Number => AnswerValue::Number(number(answer).ok_or("must be a number")?),
        QuestionType::Integer => {
            let value = number(answer).ok_or("must be a whole number")?;
            if value.fract() != 0.0 {
                return Err("must be a whole number".into());
            }
            AnswerValue::Number(value)
        }
        QuestionType::Boolean => match answer {
            Value::Bool(flag) => AnswerValue::Bool(*flag),
            Value::String(text) if text.trim().eq_ignore_ascii_case("true") => {
                AnswerValue::Bool(true)
            }
            Value::String(text) if text.trim().eq_ignore_ascii_case("false") => {
                AnswerValue::Bool(false)
            }
            _ => return Err("must be true or false".into()),
        },
        QuestionType::String => AnswerValue::Text(text().ok_or("must be text")?.to_owned()),
        QuestionType::Email => {
            let email = text().ok_or("must be an e-mail address")?;
            let valid = email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }) && !email.contains(char::is_whitespace);
            if !valid {
                return Err(format!("{email:?} is not an e-mail address"));
            }
            AnswerValue::Text(email.to_owned())
        }
        QuestionType::Phone => {
            let phone = match answer {
                Value::Number(number) if number.is_u64() => number.to_string(),
                Value::String(text) => text.trim().to_owned(),
                _ => return Err("must be a phone number".into()),
            };
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let allowed = phone
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.'));
            if !allowed || !(6..=15).contains(&digits) {
                return Err(format!("{phone:?} is not a phone number"));
            }
            AnswerValue::Text(phone)
        }
        QuestionType::Date => {
            let date = text().ok_or("must be a date (YYYY-MM-DD)")?;
            NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("{date:?} is not a date (YYYY-MM-DD)"))?;
            AnswerValue::Text(date.to_owned())
        }
        QuestionType::Datetime => {
            let datetime = text().ok_or("must be a date and time (RFC 3339)")?;
            DateTime::parse_from_rfc3339(datetime)
                .map_err(|_| format!("{datetime:?} is not a date and time (RFC 3339)"))?;
            AnswerValue::Text(datetime.to_owned())
        }
        QuestionType::Choice => {
            let choice = text().ok_or("must be one of the choices")?;
            if !question.choices.iter().any(|allowed| allowed == choice) {
                return Err(format!(
                    "{choice:?} is not one of {}",
                    question.choices.join(", ")
                ));
            }
            AnswerValue::Text(choice.to_owned())
        }
    };
    Ok(Some(value))
}

/// A number whatever its JSON form: `5000`, `5000.0` or `"5000"` (finite only).
fn number(answer: &Value) -> Option<f64> {
    let value = match answer {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    value.is_finite().then_some(value)
}
