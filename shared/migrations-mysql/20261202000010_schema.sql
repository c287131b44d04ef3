-- Collect's schema on MySQL (8.0.16 and later) and MariaDB (10.6 and later): the same tables,
-- columns and keys as the PostgreSQL migrations end with (see shared/migrations/), written
-- for InnoDB. Where it differs:
-- * identifiers (form, response and user ids, spreadsheet ids) are ASCII with a binary
--   collation: compared byte for byte, case-sensitive, as in PostgreSQL;
-- * text a person types (tab names, usernames, reasons) is utf8mb4 with a binary collation;
-- * JSON is kept as LONGTEXT that Collect writes and parses itself: MySQL's JSON type
--   reorders keys and MariaDB's is LONGTEXT anyway, so both engines hold the same text;
-- * times are DATETIME(6) in UTC (the services set the session's time zone to +00:00);
-- * `force` and `row_number` are reserved words in MySQL 8 and are quoted.

CREATE TABLE forms (
    form_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version     INT          NOT NULL,
    definition  LONGTEXT     NOT NULL,
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (form_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per response of a form, its latest revision.
CREATE TABLE responses (
    form_id       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    response_id   VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    revision      BIGINT       NOT NULL CHECK (revision >= 0),
    form_version  INT          NOT NULL,
    user_id       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    username      LONGTEXT,
    submitted_at  DATETIME(6),
    answers       LONGTEXT     NOT NULL,
    metadata      LONGTEXT     NOT NULL,
    status        VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                  CHECK (status IN ('valid', 'flagged')),
    flags         LONGTEXT     NOT NULL,
    -- The flag event this revision caused, so that a redelivery publishes the same again.
    flag_event    VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin
                  CHECK (flag_event IN ('flagged', 'cleared')),
    received_at   DATETIME(6),
    stored_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (form_id, response_id),
    KEY responses_by_response_id (response_id),
    -- No partial indexes here: the status is part of the key instead.
    KEY responses_flagged_by_collector (user_id, status, stored_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Where each response sits in a sheet.
CREATE TABLE sheet_rows (
    spreadsheet_id  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tab             VARCHAR(100) NOT NULL,
    form_id         VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    response_id     VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    `row_number`    INT          NOT NULL CHECK (`row_number` >= 2),
    revision        BIGINT       NOT NULL,
    written_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (spreadsheet_id, tab, response_id),
    KEY sheet_rows_by_response (form_id, response_id),
    KEY sheet_rows_by_row (spreadsheet_id, tab, `row_number`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Responses waiting for their sheet: a marker, not a copy.
CREATE TABLE sheet_outbox (
    form_id      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    response_id  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    `force`      BOOLEAN      NOT NULL DEFAULT FALSE,
    enqueued_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (form_id, response_id),
    KEY sheet_outbox_by_form (form_id, enqueued_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Responses a sheet permanently refused.
CREATE TABLE sheet_parked (
    form_id         VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    response_id     VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    spreadsheet_id  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tab             VARCHAR(100) NOT NULL,
    revision        BIGINT       NOT NULL,
    reason          LONGTEXT     NOT NULL,
    parked_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (form_id, response_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Why a form's sheet is not being written, as the instance writing it last said.
CREATE TABLE sheet_status (
    form_id           VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    spreadsheet_id    VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tab               VARCHAR(100) NOT NULL,
    reason            LONGTEXT     NOT NULL,
    about_this_sheet  BOOLEAN      NOT NULL,
    failing_since     DATETIME(6)  NOT NULL,
    instance          VARCHAR(255) NOT NULL,
    updated_at        DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (form_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every flag event the validator committed, read with a cursor (txid, event_id). MySQL has no
-- snapshot xmin to read below, so `txid` is a commit sequence instead: a transaction that
-- writes events takes the next number from `flag_event_clock` as its last step, holding that
-- row's lock until it commits, so numbers become visible in order and a reader that sees
-- number n sees every number below it.
CREATE TABLE flag_events (
    event_id     BIGINT       NOT NULL AUTO_INCREMENT,
    txid         BIGINT UNSIGNED NOT NULL,
    user_id      VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    username     LONGTEXT,
    form_id      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    response_id  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    revision     BIGINT       NOT NULL,
    kind         VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                 CHECK (kind IN ('flagged', 'cleared')),
    flags        LONGTEXT     NOT NULL,
    answers      LONGTEXT     NOT NULL,
    at           DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (event_id),
    KEY flag_events_by_collector (user_id, txid, event_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE flag_event_clock (
    id         TINYINT NOT NULL,
    last_txid  BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

INSERT INTO flag_event_clock (id, last_txid) VALUES (1, 0);
