//! The forms ingest knows. Until forms live in the database (the validator issue), these are
//! the built-in ones.

use std::collections::HashMap;
use std::sync::Arc;

use collect_shared::forms::{Form, household_finance};

#[derive(Clone)]
pub struct Forms(Arc<HashMap<String, Arc<Form>>>);

impl Forms {
    pub fn builtin() -> Self {
        let forms = [household_finance()]
            .into_iter()
            .map(|form| (form.id.to_string(), Arc::new(form)))
            .collect();
        Self(Arc::new(forms))
    }

    pub fn get(&self, form_id: &str) -> Option<Arc<Form>> {
        self.0.get(form_id).cloned()
    }
}
