use std::fmt;

use serde::{Deserialize, Serialize};

/// Which version of a response this is: a higher revision replaces the stored one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Revision(u64);

impl Revision {
    pub const ZERO: Self = Self(0);
    /// The highest revision: what the store's signed 64-bit column holds.
    pub const MAX: Self = Self(i64::MAX as u64);

    /// A revision, if it is at most [`Revision::MAX`].
    pub fn new(value: u64) -> Result<Self, RevisionTooLarge> {
        if value <= Self::MAX.0 {
            Ok(Self(value))
        } else {
            Err(RevisionTooLarge)
        }
    }

    /// A revision from a signed number (a time in milliseconds, a stored column): negative
    /// ones are 0.
    pub const fn saturating_from_i64(value: i64) -> Self {
        if value < 0 {
            Self(0)
        } else {
            Self(value as u64)
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// As the store holds it; never wraps, since a revision is at most `i64::MAX`.
    pub const fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

/// A revision over [`Revision::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionTooLarge;

impl fmt::Display for RevisionTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "revision must be at most {}", Revision::MAX)
    }
}

impl std::error::Error for RevisionTooLarge {}

impl<'de> Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
