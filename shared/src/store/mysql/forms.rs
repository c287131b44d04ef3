//! Form definitions in MySQL. A definition is JSON text; "changed" compares it as JSON, so the
//! same `PUT` twice is a no-op whatever the key order.

use crate::store::StoreError;
use sqlx::Row;

use super::{MySqlStore, is_duplicate_key};
use crate::forms::Form;
use crate::store::forms::{FormStore, PutForm};
use crate::store::responses::json;

#[async_trait::async_trait]
impl FormStore for MySqlStore {
    async fn put_form(&self, form: &Form) -> Result<PutForm, StoreError> {
        let definition = json(&form.definition);
        let wanted: serde_json::Value = parse_json(&definition)?;
        // Two first `PUT`s of one form at once: the one whose insert loses reads the other's.
        for attempt in 0.. {
            let mut tx = self.pool.begin().await?;
            let stored =
                sqlx::query("SELECT version, definition FROM forms WHERE form_id = ? FOR UPDATE")
                    .bind(form.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let put = match stored {
                None => {
                    let inserted = sqlx::query(
                        "INSERT INTO forms (form_id, version, definition) VALUES (?, 1, ?)",
                    )
                    .bind(form.id.as_str())
                    .bind(&definition)
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Err(error) if is_duplicate_key(&error) && attempt < 3 => continue,
                        Err(error) => return Err(error.into()),
                        Ok(_) => PutForm {
                            version: 1,
                            created: true,
                        },
                    }
                }
                Some(row) => {
                    let version: i32 = row.try_get("version")?;
                    let current: serde_json::Value = parse_json(row.try_get("definition")?)?;
                    if current == wanted {
                        PutForm {
                            version,
                            created: false,
                        }
                    } else {
                        sqlx::query(
                            "UPDATE forms SET version = version + 1, definition = ?,
                                 updated_at = CURRENT_TIMESTAMP(6)
                             WHERE form_id = ?",
                        )
                        .bind(&definition)
                        .bind(form.id.as_str())
                        .execute(&mut *tx)
                        .await?;
                        PutForm {
                            version: version + 1,
                            created: false,
                        }
                    }
                }
            };
            tx.commit().await?;
            return Ok(put);
        }
        unreachable!("the loop returns")
    }

    async fn ensure_form(&self, form: &Form) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO forms (form_id, version, definition) VALUES (?, 1, ?)
             ON DUPLICATE KEY UPDATE form_id = form_id",
        )
        .bind(form.id.as_str())
        .bind(json(&form.definition))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// JSON text read back from a column.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(StoreError::corrupt)
}
