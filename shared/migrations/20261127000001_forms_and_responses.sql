-- Forms: the current definition of each form and its version (bumped on every change).
CREATE TABLE forms (
    form_id     text        PRIMARY KEY,
    version     integer     NOT NULL,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Responses: one row per response_id, its latest revision.
CREATE TABLE responses (
    response_id   text        PRIMARY KEY,
    form_id       text        NOT NULL,
    revision      bigint      NOT NULL CHECK (revision >= 0),
    form_version  integer     NOT NULL,
    user_id       text        NOT NULL,
    username      text,
    submitted_at  timestamptz,
    answers       jsonb       NOT NULL,
    metadata      jsonb       NOT NULL,
    status        text        NOT NULL CHECK (status IN ('valid', 'flagged')),
    flags         jsonb       NOT NULL,
    -- The flag event this revision caused ('flagged' or 'cleared'), so that a redelivered
    -- message publishes the same event again.
    flag_event    text        CHECK (flag_event IN ('flagged', 'cleared')),
    received_at   timestamptz,
    stored_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX responses_by_form ON responses (form_id);
CREATE INDEX responses_flagged_by_collector ON responses (user_id) WHERE status = 'flagged';
