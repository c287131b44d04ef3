-- Responses a sheet permanently refused (a 400 about the row itself, found by splitting the
-- batch until the row was alone): taken off `sheet_outbox` so the rows after them flow, with
-- the reason, until a newer revision or an export queues them again.
CREATE TABLE sheet_parked (
    response_id     text        NOT NULL,
    form_id         text        NOT NULL,
    spreadsheet_id  text        NOT NULL,
    tab             text        NOT NULL,
    revision        bigint      NOT NULL,
    reason          text        NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (form_id, response_id)
);
