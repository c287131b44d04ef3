//! The domain's core: the identifiers, [`Revision`], a response's status and flags, and the
//! rules of what a new revision does to the stored one, as pure functions. A leaf: it depends
//! on no other module of the crate, and every other module may depend on it.

mod ids;
mod revision;
mod status;

pub use ids::{FormId, InvalidIdentifier, ResponseId, UserId};
pub use revision::{Revision, RevisionTooLarge};
pub use status::{Decision, Flag, FlagEventKind, ResponseStatus, Severity, decide};
