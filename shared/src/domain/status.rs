//! A response's flags and status, and what a new revision does to the stored one.

use serde::{Deserialize, Serialize};

use super::Revision;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The response is flagged and goes back to its collector.
    #[default]
    Error,
    /// Recorded with the response and shown in its sheet row, not sent back.
    Warning,
}

/// One finding about a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Flag {
    /// `required:<question>`, `type:<question>`, or the id of a rule.
    pub rule_id: String,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseStatus {
    Valid,
    /// Some flag has severity `error`: the response went back to its collector.
    Flagged,
}

impl ResponseStatus {
    /// A response's status, from its flags: flagged when some flag has severity `error`.
    pub fn of(flags: &[Flag]) -> Self {
        if flags.iter().any(|flag| flag.severity == Severity::Error) {
            Self::Flagged
        } else {
            Self::Valid
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Flagged => "flagged",
        }
    }

    /// The status [`Self::as_str`] writes; any other word is `None`, never a default.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Valid, Self::Flagged]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagEventKind {
    /// The response breaks a rule: the collector should fix it.
    Flagged,
    /// A correction of a flagged response passes now.
    Cleared,
}

impl FlagEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flagged => "flagged",
            Self::Cleared => "cleared",
        }
    }

    /// The kind [`Self::as_str`] writes; any other word is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Flagged, Self::Cleared]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// What one revision does to the stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Newer than the stored one (or the first): written, with this flag event.
    Write(Option<FlagEventKind>),
    /// The stored revision: nothing changes.
    Duplicate,
    /// Older than the stored one: ignored.
    Stale(Revision),
}

/// The revision rules. `stored` is the stored revision and whether it is flagged, if any.
pub fn decide(stored: Option<(i64, bool)>, revision: i64, status: ResponseStatus) -> Decision {
    let flagged = status == ResponseStatus::Flagged;
    match stored {
        None => Decision::Write(flagged.then_some(FlagEventKind::Flagged)),
        Some((stored, was_flagged)) => match stored.cmp(&revision) {
            std::cmp::Ordering::Less => Decision::Write(match (flagged, was_flagged) {
                (true, _) => Some(FlagEventKind::Flagged),
                (false, true) => Some(FlagEventKind::Cleared),
                (false, false) => None,
            }),
            std::cmp::Ordering::Equal => Decision::Duplicate,
            std::cmp::Ordering::Greater => Decision::Stale(Revision::saturating_from_i64(stored)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_rules() {
        use FlagEventKind::{Cleared, Flagged};
        use ResponseStatus::{Flagged as F, Valid as V};
        assert_eq!(decide(None, 1, V), Decision::Write(None));
        assert_eq!(decide(None, 1, F), Decision::Write(Some(Flagged)));
        assert_eq!(
            decide(Some((1, true)), 2, V),
            Decision::Write(Some(Cleared))
        );
        assert_eq!(decide(Some((1, false)), 2, V), Decision::Write(None));
        assert_eq!(
            decide(Some((1, false)), 2, F),
            Decision::Write(Some(Flagged))
        );
        assert_eq!(
            decide(Some((1, true)), 2, F),
            Decision::Write(Some(Flagged))
        );
        assert_eq!(decide(Some((2, true)), 2, V), Decision::Duplicate);
        assert_eq!(
            decide(Some((3, false)), 2, F),
            Decision::Stale(Revision::saturating_from_i64(3))
        );
    }
}
