-- Responses waiting to be written to their sheet. A marker, not a copy: the writer reads the
-- latest revision from `responses`. Rows wait here, not in unacked messages, however long the
-- sheet cannot take them.
CREATE TABLE sheet_outbox (
    response_id  text        PRIMARY KEY,
    form_id      text        NOT NULL,
    -- Rewrite the row even when the sheet already has this revision (a whole-sheet export).
    force        boolean     NOT NULL DEFAULT false,
    enqueued_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX sheet_outbox_by_form ON sheet_outbox (form_id, enqueued_at);
