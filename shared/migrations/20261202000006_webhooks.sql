-- Webhooks: where Collect POSTs its events (`/v1/webhooks`), each limited to a form and to some
-- collectors if it says so, signed with its secret.
CREATE TABLE webhooks (
    id          text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    url         text        NOT NULL,
    -- Only this form's events, if set.
    form_id     text,
    -- Only these collectors' events (a JSON array of user ids); empty: any collector's.
    user_ids    jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(user_ids) = 'array'),
    -- `whsec_…`, set on creation and kept by every update.
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One event to one webhook: an outbox the delivery workers claim (`FOR UPDATE SKIP LOCKED`,
-- with a lease: a claimed row's `next_attempt_at` moves past the lease, so a worker that dies
-- leaves it to be claimed again). `delivery_id` is the event's stable id, so the same event
-- enqueued twice is one delivery. Delivered rows are deleted by the retention
-- (`delete_deliveries_before`); a webhook's rows go with it.
CREATE TABLE webhook_deliveries (
    webhook_id       text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- Visible ASCII (checked by the store); "C" so it sorts byte by byte, as on MySQL.
    delivery_id      text        COLLATE "C" NOT NULL
                     CHECK (char_length(delivery_id) BETWEEN 1 AND 64),
    payload          jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    -- The HTTP status of the last attempt, if the receiver answered.
    last_status      integer,
    -- At most 1000 characters.
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (webhook_id, delivery_id)
);

-- Claiming: the pending rows that are due, longest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
-- Listing a webhook's deliveries with a cursor.
CREATE INDEX webhook_deliveries_by_webhook
    ON webhook_deliveries (webhook_id, created_at, delivery_id);
-- Retention: the delivered rows, oldest first.
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (state, delivered_at);
