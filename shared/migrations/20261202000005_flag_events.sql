-- Every flag event the validator committed (`flagged`, `cleared`), kept as the collector's
-- flag history and read with a cursor: `GET /v1/collectors/{user_id}/flags:history?since=`.
-- Written in the transaction that stores the revision, once per revision (a redelivery
-- publishes its event again, but does not add a row).
--
-- The cursor is (txid, event_id): events are read only from transactions older than every
-- transaction still running (`pg_snapshot_xmin`), so an event can never appear later behind a
-- cursor a reader already has (a bigserial alone can: ids are taken before commit, and
-- transactions commit in any order).
CREATE TABLE flag_events (
    event_id     bigserial   PRIMARY KEY,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    user_id      text        NOT NULL,
    username     text,
    form_id      text        NOT NULL,
    response_id  text        NOT NULL,
    revision     bigint      NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('flagged', 'cleared')),
    -- The flags that go back to the collector (severity error); empty when cleared.
    flags        jsonb       NOT NULL,
    answers      jsonb       NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX flag_events_by_collector ON flag_events (user_id, txid, event_id);
