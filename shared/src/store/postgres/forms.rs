//! Form definitions in PostgreSQL.

use crate::store::{StoreError, columns};
use sqlx::Row;
use sqlx::types::Json;

use super::PgStore;
use crate::forms::Form;
use crate::messages::FormId;
use crate::store::forms::{FormStore, PutForm, StoredForm};

#[async_trait::async_trait]
impl FormStore for PgStore {
    async fn form(&self, form_id: &FormId) -> Result<Option<StoredForm>, StoreError> {
        let row = sqlx::query("SELECT version, definition FROM forms WHERE form_id = $1")
            .bind(form_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| columns::stored_form(&row, form_id))
            .transpose()
    }

    async fn form_version(&self, form_id: &FormId) -> Result<Option<i32>, StoreError> {
        sqlx::query_scalar("SELECT version FROM forms WHERE form_id = $1")
            .bind(form_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from)
    }

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
