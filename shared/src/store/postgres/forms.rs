//! Form definitions in PostgreSQL.

use crate::store::StoreError;
use sqlx::Row;
use sqlx::types::Json;

use super::PgStore;
use crate::forms::Form;
use crate::store::Portable;
use crate::store::forms::{FormStore, PutForm};

#[async_trait::async_trait]
impl FormStore for PgStore {
    async fn put_form(&self, form: &Form) -> Result<PutForm, StoreError> {
        let written = sqlx::query(
            "INSERT INTO forms (form_id, version, definition) VALUES ($1, 1, $2)
             ON CONFLICT (form_id) DO UPDATE
                SET version = forms.version + 1, definition = EXCLUDED.definition, updated_at = now()
                WHERE forms.definition IS DISTINCT FROM EXCLUDED.definition
             RETURNING version, (xmax = 0) AS created",
        )
        .bind(form.id.as_str())
        .bind(Json(&form.definition))
        .fetch_optional(&self.pool)
        .await?;
        match written {
            Some(row) => Ok(PutForm {
                version: row.try_get("version")?,
                created: row.try_get("created")?,
            }),
            None => Ok(PutForm {
                version: self.form_version(&form.id).await?.unwrap_or(1),
                created: false,
            }),
        }
    }

    async fn ensure_form(&self, form: &Form) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO forms (form_id, version, definition) VALUES ($1, 1, $2)
             ON CONFLICT (form_id) DO NOTHING",
        )
        .bind(form.id.as_str())
        .bind(Json(&form.definition))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
