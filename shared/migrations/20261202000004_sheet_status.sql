-- Why a form's sheet is not being written, as the sheets-sync instance writing it last said
-- (refreshed every few seconds while it lasts; removed when writing works again). Read by
-- `GET /v1/forms/{form_id}/sheet`.
CREATE TABLE sheet_status (
    form_id           text        PRIMARY KEY,
    spreadsheet_id    text        NOT NULL,
    tab               text        NOT NULL,
    reason            text        NOT NULL,
    -- The failure is about this form's sheet (not shared, gone, full, over quota, none
    -- configured), not about reaching Google.
    about_this_sheet  boolean     NOT NULL,
    failing_since     timestamptz NOT NULL,
    instance          text        NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
