//! Form definitions, and the cache that services read them through.

use crate::store::StoreError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::Store;
use crate::forms::Form;
use crate::messages::FormId;
use crate::rules::{CompiledForm, RuleError};

/// A form as stored, with its version.
#[derive(Debug, Clone)]
pub struct StoredForm {
    pub form: Form,
    pub version: i32,
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
    async fn form(&self, form_id: &FormId) -> Result<Option<StoredForm>, StoreError>;

    async fn form_version(&self, form_id: &FormId) -> Result<Option<i32>, StoreError>;

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
    #[error("form {form_id} version {version} does not compile: {errors}")]
    Invalid {
        form_id: String,
        version: i32,
        errors: String,
    },
}

impl FormLookupError {
    fn invalid(stored: &StoredForm, errors: Vec<RuleError>) -> Self {
        Self::Invalid {
            form_id: stored.form.id.to_string(),
            version: stored.version,
            errors: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// Compiled forms, each rechecked against the database at most every `ttl`: a `PUT` takes
/// effect everywhere within that time, and a hot form costs one tiny query per `ttl`.
pub struct FormCache {
    store: Store,
    ttl: Duration,
    entries: Mutex<HashMap<FormId, (Arc<CompiledForm>, Instant)>>,
}

impl FormCache {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The current version of a form, compiled; `None` when there is no such form.
    pub async fn get(
        &self,
        form_id: &FormId,
    ) -> Result<Option<Arc<CompiledForm>>, FormLookupError> {
        let cached = self.entries.lock().await.get(form_id).cloned();
        if let Some((compiled, checked_at)) = &cached {
            if checked_at.elapsed() < self.ttl {
                return Ok(Some(compiled.clone()));
            }
            if self.store.form_version(form_id).await? == Some(compiled.version) {
                self.remember(form_id, compiled.clone()).await;
                return Ok(Some(compiled.clone()));
            }
        }
        let Some(stored) = self.store.form(form_id).await? else {
            self.entries.lock().await.remove(form_id);
            return Ok(None);
        };
        let version = stored.version;
        // Off the async runtime: a form at every limit takes a while to compile.
        let form = Arc::new(stored.form.clone());
        let compiled = tokio::task::spawn_blocking(move || CompiledForm::compile(form, version))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()))
            .map_err(|errors| FormLookupError::invalid(&stored, errors))?;
        let compiled = Arc::new(compiled);
        self.remember(form_id, compiled.clone()).await;
        Ok(Some(compiled))
    }

    /// Like [`FormCache::get`], but reads the database now: for when a newer version is known
    /// to exist (a response was checked against it).
    pub async fn get_fresh(
        &self,
        form_id: &FormId,
    ) -> Result<Option<Arc<CompiledForm>>, FormLookupError> {
        self.entries.lock().await.remove(form_id);
        self.get(form_id).await
    }

    async fn remember(&self, form_id: &FormId, compiled: Arc<CompiledForm>) {
        self.entries
            .lock()
            .await
            .insert(form_id.clone(), (compiled, Instant::now()));
    }
}
