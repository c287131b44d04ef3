//! A tab is one form's: its header is that form's columns, and its rows are found by response
//! id, which is unique only within a form. ingest refuses a form naming a tab another form of
//! the same spreadsheet writes to, but it cannot tell when one names the default spreadsheet by
//! its id and the other names none, nor stop two `PUT`s racing, and forms stored before it
//! checked may share a tab. So the writer, too, writes a tab only for the form created first of
//! those naming it (tab names compared whatever their case, as Google does); the others' rows
//! wait, their sheet route says why, and they flow once the form names a tab of its own.

use super::*;
use collect_shared::store::{FormSheet, TabOwner};

/// How long the list of every form's tab is used before it is read again: as long as a form
/// definition is cached (a `PUT` takes effect within it).
const FORM_SHEETS_TTL: Duration = Duration::from_secs(2);

/// How long a form whose tab is another's waits before it is checked again (it is also checked
/// as soon as it names another tab).
const TAB_TAKEN_RETRY: Duration = Duration::from_secs(10);

/// Every form's tab and whose it is, as read at `read_at`.
pub(super) struct FormSheets {
    read_at: Instant,
    owners: HashMap<FormId, TabOwner>,
}

/// Whose the tab a form names is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// The form's own (it was first to name it).
    This,
    /// Another form's, created before it.
    Other(FormId),
    /// The list of forms does not say what the form's definition says yet (it changed within
    /// the lists' lifetime): ask again on the next pass.
    Unsure,
}

impl Writer {
    /// Whose `target`, the tab `form_id` names, is.
    pub(super) async fn owner(
        &mut self,
        form_id: &FormId,
        target: &Target,
    ) -> Result<Owner, StoreError> {
        for fresh in [false, true] {
            let stale = self
                .form_sheets
                .as_ref()
                .is_none_or(|known| known.read_at.elapsed() >= FORM_SHEETS_TTL);
            if fresh || stale {
                let sheets = self.store.form_sheets().await?;
                let default = self.settings.default_spreadsheet_id.as_deref();
                self.form_sheets = Some(FormSheets {
                    read_at: Instant::now(),
                    owners: FormSheet::tab_owners(&sheets, default),
                });
            }
            let Some(known) = self.form_sheets.as_ref() else {
                continue;
            };
            let listed = known
                .owners
                .get(form_id)
                .filter(|tab| tab.spreadsheet_id == target.spreadsheet_id && tab.tab == target.tab);
            let Some(listed) = listed else {
                if fresh || stale {
                    // Read just now, and still not what the cached definition says.
                    return Ok(Owner::Unsure);
                }
                continue; // a form new or changed since the list was read: read it again
            };
            return Ok(if &listed.owner == form_id {
                Owner::This
            } else {
                Owner::Other(listed.owner.clone())
            });
        }
        Ok(Owner::Unsure)
    }

    /// Whether the writer may write `form_id`'s rows to `target` now; when the tab is another
    /// form's, the form is reported failing, saying whose.
    pub(super) async fn may_write(
        &mut self,
        form_id: &FormId,
        target: &Target,
    ) -> Result<bool, StoreError> {
        match self.owner(form_id, target).await? {
            Owner::This => Ok(true),
            Owner::Unsure => Ok(false),
            Owner::Other(first) => {
                self.fail(
                    form_id,
                    target,
                    ApiFailure {
                        reason: format!(
                            "the tab {:?} of spreadsheet {} is form {first}'s, which named it first (a tab is one form's, and tab names are the same whatever their case): give form {form_id} another sheet.tab; its rows wait",
                            target.tab, target.spreadsheet_id
                        ),
                        retry_after: Some(TAB_TAKEN_RETRY),
                        about_this_sheet: true,
                        ..ApiFailure::default()
                    },
                );
                Ok(false)
            }
        }
    }
}
