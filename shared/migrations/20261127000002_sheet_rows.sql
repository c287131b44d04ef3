-- Where each response sits in a sheet: kept by sheets-sync, so that a new revision overwrites
-- its row and a response is never appended twice.
CREATE TABLE sheet_rows (
    spreadsheet_id  text        NOT NULL,
    tab             text        NOT NULL,
    response_id     text        NOT NULL,
    row_number      integer     NOT NULL CHECK (row_number >= 2),
    revision        bigint      NOT NULL,
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (spreadsheet_id, tab, response_id)
);

CREATE INDEX sheet_rows_by_response ON sheet_rows (response_id);
