//! Form definitions, and the cache that services read them through.

use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::Store;
use crate::forms::{Form, QuestionKeys};
use crate::messages::FormId;

/// A form as stored, with its version.
#[derive(Debug, Clone)]
pub struct StoredForm {
    pub form: Form,
    pub version: i32,
}

/// Where a form's rows go, as its definition says, and since when the form exists: what
/// decides which form a tab is when two name it (see [`FormSheet::tab_owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormSheet {
    pub form_id: FormId,
    /// `sheet.spreadsheet_id`; `None` for sheets-sync's default.
    pub spreadsheet_id: Option<String>,
    /// `sheet.tab`, else the form's id.
    pub tab: String,
    pub created_at: DateTime<Utc>,
}

impl FormSheet {
    /// Whose tab each form's is, among `sheets` in the order
    /// [`Portable::form_sheets`](crate::store::Portable::form_sheets) gives (the oldest form
    /// first), `default` being the spreadsheet of forms that name none: a tab is one form's
    /// (its header, its rows found by response id), and when several name it, tab names
    /// compared whatever their case as Google does, the one created first keeps it. Forms
    /// without a spreadsheet (none named, no default) are left out.
    pub fn tab_owners(sheets: &[FormSheet], default: Option<&str>) -> HashMap<FormId, TabOwner> {
        let mut first: HashMap<(&str, String), &FormId> = HashMap::new();
        let mut owners = HashMap::with_capacity(sheets.len());
        for sheet in sheets {
            let Some(spreadsheet_id) = sheet.spreadsheet_id.as_deref().or(default) else {
                continue;
            };
            let owner = *first
                .entry((spreadsheet_id, sheet.tab.to_lowercase()))
                .or_insert(&sheet.form_id);
            owners.insert(
                sheet.form_id.clone(),
                TabOwner {
                    spreadsheet_id: spreadsheet_id.to_owned(),
                    tab: sheet.tab.clone(),
                    owner: owner.clone(),
                },
            );
        }
        owners
    }
}

/// A form's tab, and the form whose it is (see [`FormSheet::tab_owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabOwner {
    pub spreadsheet_id: String,
    pub tab: String,
    pub owner: FormId,
}

/// What `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutForm {
    pub version: i32,
    pub created: bool,
}

/// Form definitions.
#[async_trait::async_trait]
pub trait FormStore {
    /// Stores a definition. The version goes up only when the definition changed, so the same
    /// `PUT` twice is a no-op.
    async fn put_form(&self, form: &Form) -> Result<PutForm, StoreError>;

    /// Stores a definition unless the form exists (the built-in forms at start).
    async fn ensure_form(&self, form: &Form) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum FormLookupError {
    #[error("database error: {0}")]
    Database(#[from] StoreError),
    /// The cache could not make what it keeps of the form (its rules do not compile).
    #[error("form {form_id} version {version} does not compile: {errors}")]
    Invalid {
        form_id: String,
        version: i32,
        errors: String,
    },
}

/// A form's definition at its current version, with its questions by the keys a seed payload
/// may use: what a [`FormCache::definitions`] keeps.
#[derive(Debug)]
pub struct FormVersion {
    pub form: Arc<Form>,
    pub version: i32,
    pub keys: QuestionKeys,
}

/// Makes what a [`FormCache`] keeps of a form, once per version (off the async runtime); an
/// error says why the form cannot be used.
pub type Prepare<T> = fn(Arc<Form>, i32) -> Result<T, String>;

/// Forms, each rechecked against the database at most every `ttl`: a `PUT` takes effect
/// everywhere within that time, and a hot form costs one tiny query per `ttl`. What it keeps
/// of each form is its `Prepare`'s: the definition for ingest and sheets-sync
/// ([`FormCache::definitions`]), the compiled rules for the validator (the store knows
/// nothing of rules).
pub struct FormCache<T = FormVersion> {
    store: Store,
    ttl: Duration,
    prepare: Prepare<T>,
    entries: Mutex<HashMap<FormId, Entry<T>>>,
}

struct Entry<T> {
    kept: Arc<T>,
    version: i32,
    checked_at: Instant,
}

impl FormCache<FormVersion> {
    /// A cache of definitions.
    pub fn definitions(store: Store, ttl: Duration) -> Self {
        Self::new(store, ttl, |form, version| {
            let keys = QuestionKeys::new(&form.definition);
            Ok(FormVersion {
                form,
                version,
                keys,
            })
        })
    }
}

impl<T: Send + Sync + 'static> FormCache<T> {
    pub fn new(store: Store, ttl: Duration, prepare: Prepare<T>) -> Self {
        Self {
            store,
            ttl,
            prepare,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What the cache keeps of the current version of a form; `None` when there is no such
    /// form.
    pub async fn get(&self, form_id: &FormId) -> Result<Option<Arc<T>>, FormLookupError> {
        let cached = self
            .entries
            .lock()
            .await
            .get(form_id)
            .map(|entry| (entry.kept.clone(), entry.version, entry.checked_at));
        if let Some((kept, version, checked_at)) = cached {
            if checked_at.elapsed() < self.ttl {
                return Ok(Some(kept));
            }
            if self.store.form_version(form_id).await? == Some(version) {
                self.remember(form_id, kept.clone(), version).await;
                return Ok(Some(kept));
            }
        }
        let Some(stored) = self.store.form(form_id).await? else {
            self.entries.lock().await.remove(form_id);
            return Ok(None);
        };
        let version = stored.version;
        // Off the async runtime: a form at every limit takes a while to compile.
        let prepare = self.prepare;
        let form = Arc::new(stored.form);
        let kept = tokio::task::spawn_blocking(move || prepare(form, version))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
            .map_err(|errors| FormLookupError::Invalid {
                form_id: form_id.to_string(),
                version,
                errors,
            })?;
        let kept = Arc::new(kept);
        self.remember(form_id, kept.clone(), version).await;
        Ok(Some(kept))
    }

    /// Like [`FormCache::get`], but reads the database now: for when a newer version is known
    /// to exist (a response was checked against it).
    pub async fn get_fresh(&self, form_id: &FormId) -> Result<Option<Arc<T>>, FormLookupError> {
        self.entries.lock().await.remove(form_id);
        self.get(form_id).await
    }

    async fn remember(&self, form_id: &FormId, kept: Arc<T>, version: i32) {
        self.entries.lock().await.insert(
            form_id.clone(),
            Entry {
                kept,
                version,
                checked_at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(form_id: &str, spreadsheet_id: Option<&str>, tab: &str, second: i64) -> FormSheet {
        FormSheet {
            form_id: FormId::parse(form_id).expect("a form id"),
            spreadsheet_id: spreadsheet_id.map(str::to_owned),
            tab: tab.to_owned(),
            created_at: DateTime::from_timestamp(second, 0).expect("a time"),
        }
    }

    #[test]
    fn a_tab_is_the_first_forms_whatever_its_case_and_however_its_spreadsheet_is_named() {
        // In the order the store lists them: the oldest form first.
        let sheets = [
            sheet("west", None, "west", 1),
            sheet("other-west", Some("s-2"), "west", 2),
            sheet("West", Some("s-1"), "West", 3),
            sheet("east", Some("s-1"), "east", 4),
            sheet("WEST-2", Some("s-1"), "WEST", 5),
        ];
        let owner = |default: Option<&str>, form: &str| {
            FormSheet::tab_owners(&sheets, default)
                .get(&FormId::parse(form).expect("a form id"))
                .map(|tab| (tab.spreadsheet_id.clone(), tab.owner.to_string()))
        };
        let owned = |spreadsheet: &str, form: &str| Some((spreadsheet.to_owned(), form.to_owned()));
        // `west` names no spreadsheet: with `s-1` the default, `West` and `WEST` name its tab.
        assert_eq!(owner(Some("s-1"), "west"), owned("s-1", "west"));
        assert_eq!(owner(Some("s-1"), "West"), owned("s-1", "west"));
        assert_eq!(owner(Some("s-1"), "WEST-2"), owned("s-1", "west"));
        // Without that default, `west` has no spreadsheet and `West` is the first in `s-1`.
        assert_eq!(owner(None, "west"), None);
        assert_eq!(owner(None, "West"), owned("s-1", "West"));
        assert_eq!(owner(None, "WEST-2"), owned("s-1", "West"));
        assert_eq!(owner(Some("s-3"), "west"), owned("s-3", "west"));
        assert_eq!(owner(Some("s-3"), "West"), owned("s-1", "West"));
        // Another spreadsheet's tab of the same name is another tab.
        assert_eq!(owner(Some("s-1"), "other-west"), owned("s-2", "other-west"));
        assert_eq!(owner(Some("s-1"), "east"), owned("s-1", "east"));
        assert!(crate::forms::same_tab("Ünïcode", "üNÏCODE"));
        assert!(!crate::forms::same_tab("west", "west "));
    }
}
