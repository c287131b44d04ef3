-- A response is identified within its form, not globally: the seed system used integer ids,
-- so two forms' ids collide. Every table keyed by response_id gains its form_id.
ALTER TABLE responses DROP CONSTRAINT responses_pkey;
ALTER TABLE responses ADD PRIMARY KEY (form_id, response_id);
DROP INDEX responses_by_form;
-- `GET /v1/responses/{response_id}` (the route without the form) looks a response up by id.
CREATE INDEX responses_by_response_id ON responses (response_id);

ALTER TABLE sheet_outbox DROP CONSTRAINT sheet_outbox_pkey;
ALTER TABLE sheet_outbox ADD PRIMARY KEY (form_id, response_id);

-- A tab holds one form's rows; `form_id` says whose, so that a response's row is found by
-- (form, response).
ALTER TABLE sheet_rows ADD COLUMN form_id text;
UPDATE sheet_rows s SET form_id = r.form_id FROM responses r WHERE r.response_id = s.response_id;
DELETE FROM sheet_rows WHERE form_id IS NULL;
ALTER TABLE sheet_rows ALTER COLUMN form_id SET NOT NULL;
DROP INDEX sheet_rows_by_response;
CREATE INDEX sheet_rows_by_response ON sheet_rows (form_id, response_id);
