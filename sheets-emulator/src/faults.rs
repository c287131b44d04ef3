//! Injected trouble: errors, per-minute quotas, latency, replies lost after the write, a lower
//! cell limit. Set with `PUT /emulator/faults`; decisions come from a seedable PRNG so a test
//! can make them repeatable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::GoogleError;
use crate::store::DEFAULT_MAX_CELLS;

/// What to inject. Every field is optional in JSON; the default injects nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of Sheets requests (0..=1) refused with `error_status` before they are applied.
    pub error_rate: f64,
    /// 429, 500 or 503.
    pub error_status: u16,
    /// Sent as `Retry-After` on injected errors and quota refusals (none is sent otherwise).
    pub retry_after_seconds: Option<u64>,
    /// Write requests each service account may make per minute (Google: 60); more get 429.
    pub writes_per_minute: Option<u32>,
    /// Read requests each service account may make per minute (Google: 60); more get 429.
    pub reads_per_minute: Option<u32>,
    /// Delay before every affected request is handled.
    pub latency_ms: u64,
    /// Share of successful requests (0..=1) whose reply is dropped: the request is applied,
    /// then the connection closes without a response.
    pub drop_reply_rate: f64,
    /// Cell limit per spreadsheet instead of Google's 10,000,000.
    pub max_cells: Option<u64>,
    /// Apply `error_rate`, `latency_ms` and `drop_reply_rate` to `POST /token` too.
    pub include_token: bool,
    /// Seeds the PRNG behind the rates (otherwise seeded from the clock).
    pub seed: Option<u64>,
    /// A hung server: every Sheets request (and `POST /token` with `include_token`) is
    /// accepted and gets no answer, and is not applied, while this is set. Lifting it lets
    /// the requests still waiting go on (as a late answer from Google would).
    pub hang: bool,
    /// Writes holding a cell whose text contains this are refused with 400
    /// `INVALID_ARGUMENT` before anything is applied: a stand-in for content Google refuses.
    pub refuse_text: Option<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_status: 503,
            retry_after_seconds: None,
            writes_per_minute: None,
            reads_per_minute: None,
            latency_ms: 0,
            drop_reply_rate: 0.0,
            max_cells: None,
            include_token: false,
            seed: None,
            hang: false,
            refuse_text: None,
        }
    }
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_reply_rate", self.drop_reply_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.refuse_text.as_deref() == Some("") {
            return Err("refuse_text must not be empty".into());
        }
        if !matches!(self.error_status, 429 | 500 | 503) {
            return Err(format!(
                "error_status must be 429, 500 or 503, got {}",
                self.error_status
            ));
        }
        Ok(())
    }

    pub fn max_cells(&self) -> u64 {
        self.max_cells.unwrap_or(DEFAULT_MAX_CELLS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Read,
    Write,
}

/// The faults in force plus what they need to remember.
pub struct FaultState {
    pub faults: Faults,
    rng: SplitMix64,
    /// Per (service account, kind): when the current minute started and requests in it.
    windows: HashMap<(String, Kind), (Instant, u32)>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self::new(Faults::default())
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let seed = faults.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_nanos() as u64)
        });
        Self {
            faults,
            rng: SplitMix64(seed),
            windows: HashMap::new(),
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.faults.latency_ms)
    }

    /// An injected error for this request, if the dice say so.
    pub fn roll_error(&mut self) -> Option<GoogleError> {
        if !self.rng.chance(self.faults.error_rate) {
            return None;
        }
        let error = match self.faults.error_status {
            429 => quota_error(Kind::Write),
            500 => GoogleError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
            ),
            _ => GoogleError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ),
        };
        Some(error.with_retry_after(self.faults.retry_after_seconds))
    }

    /// Counts the request against its per-minute quota; 429 once the minute's budget is spent.
    /// Quotas refill at the minute's end, as Google's do.
    pub fn check_quota(&mut self, principal: &str, kind: Kind) -> Result<(), GoogleError> {
        let limit = match kind {
            Kind::Read => self.faults.reads_per_minute,
            Kind::Write => self.faults.writes_per_minute,
        };
        let Some(limit) = limit else { return Ok(()) };
        let now = Instant::now();
        let window = self
            .windows
            .entry((principal.to_owned(), kind))
            .or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= limit {
            // Google sends no `Retry-After` with a quota 429; only when one is configured.
            return Err(quota_error(kind).with_retry_after(self.faults.retry_after_seconds));
        }
        window.1 += 1;
        Ok(())
    }

    /// The refusal of a write whose body holds a cell with `refuse_text`, if any.
    pub fn refusal(&self, body: &serde_json::Value) -> Option<GoogleError> {
        let needle = self.faults.refuse_text.as_deref()?;
        let path = find_text(body, needle, String::new())?;
        Some(GoogleError::invalid_argument(format!(
            "Invalid value at '{path}': refused by the emulator (refuse_text)"
        )))
    }

    pub fn roll_drop(&mut self) -> bool {
        self.rng.chance(self.faults.drop_reply_rate)
    }
}

/// Google's 429 for a spent per-minute, per-user quota.
fn quota_error(kind: Kind) -> GoogleError {
    let (metric, limit, quota) = match kind {
        Kind::Read => (
            "Read requests",
            "Read requests per minute per user",
            "ReadRequestsPerMinutePerUser",
        ),
        Kind::Write => (
            "Write requests",
            "Write requests per minute per user",
            "WriteRequestsPerMinutePerUser",
        ),
    };
    let mut error = GoogleError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
        format!(
            "Quota exceeded for quota metric '{metric}' and limit '{limit}' of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'."
        ),
    );
    error.details = Some(json!([{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "RATE_LIMIT_EXCEEDED",
        "domain": "googleapis.com",
        "metadata": {
            "service": "sheets.googleapis.com",
            "consumer": "projects/000000000000",
            "quota_limit": quota,
            "quota_metric": format!("sheets.googleapis.com/{}", metric.to_lowercase().replace(' ', "_")),
        },
    }]));
    error
}

/// The JSON path of the first string holding `needle`.
fn find_text(value: &serde_json::Value, needle: &str, path: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains(needle) => Some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_text(item, needle, format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            find_text(item, needle, path)
        }),
        _ => None,
    }
}

/// Small, seedable, good enough to decide "this request fails".
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `rate` (exactly never at 0, always at 1).
    fn chance(&mut self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refuses_past_the_limit_per_account() {
        let mut state = FaultState::new(Faults {
            writes_per_minute: Some(2),
            ..Faults::default()
        });
        assert!(state.check_quota("a", Kind::Write).is_ok());
        assert!(state.check_quota("a", Kind::Write).is_ok());
        let refused = state.check_quota("a", Kind::Write).err();
        assert_eq!(refused.map(|e| e.code), Some(StatusCode::TOO_MANY_REQUESTS));
        assert!(state.check_quota("b", Kind::Write).is_ok());
        assert!(state.check_quota("a", Kind::Read).is_ok());
    }

    #[test]
    fn rates_are_repeatable_with_a_seed() {
        let faults = Faults {
            error_rate: 0.5,
            seed: Some(42),
            ..Faults::default()
        };
        let mut first = FaultState::new(faults.clone());
        let mut second = FaultState::new(faults);
        let a: Vec<bool> = (0..64).map(|_| first.roll_error().is_some()).collect();
        let b: Vec<bool> = (0..64).map(|_| second.roll_error().is_some()).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn validates() {
        assert!(Faults::default().validate().is_ok());
        let bad = Faults {
            error_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.validate().is_err());
        let bad = Faults {
            error_status: 404,
            ..Faults::default()
        };
        assert!(bad.validate().is_err());
    }
}
