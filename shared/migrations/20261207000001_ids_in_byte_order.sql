-- Ids compared byte by byte (`COLLATE "C"`), as MySQL's `ascii_bin` columns compare them.
--
-- Under the database's locale (`C.UTF-8`, `en_US.UTF-8`, …) every comparison of two ids in a
-- B-tree goes through the locale's `strcoll`: the heaviest part of inserting a response, its
-- outbox marker and its sheet row, whose keys begin with a column that is the same for every
-- row (`form_id`, `spreadsheet_id`). An id is an identifier, not a word: byte order is what
-- the Rust side sorts by (the outbox's lock order) and what MySQL gives, and equality is the
-- same in both. Changing only the collation rewrites no table; the indexes on these columns
-- are rebuilt.
ALTER TABLE forms
    ALTER COLUMN form_id TYPE text COLLATE "C";

ALTER TABLE responses
    ALTER COLUMN form_id TYPE text COLLATE "C",
    ALTER COLUMN response_id TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";

ALTER TABLE sheet_outbox
    ALTER COLUMN form_id TYPE text COLLATE "C",
    ALTER COLUMN response_id TYPE text COLLATE "C";

ALTER TABLE sheet_rows
    ALTER COLUMN spreadsheet_id TYPE text COLLATE "C",
    ALTER COLUMN tab TYPE text COLLATE "C",
    ALTER COLUMN form_id TYPE text COLLATE "C",
    ALTER COLUMN response_id TYPE text COLLATE "C";

ALTER TABLE sheet_parked
    ALTER COLUMN form_id TYPE text COLLATE "C",
    ALTER COLUMN response_id TYPE text COLLATE "C";

ALTER TABLE sheet_status
    ALTER COLUMN form_id TYPE text COLLATE "C";

ALTER TABLE flag_events
    ALTER COLUMN user_id TYPE text COLLATE "C";
