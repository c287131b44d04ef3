-- Webhooks and their deliveries: the same tables, columns and keys as the PostgreSQL migration
-- 20261202000006_webhooks.sql (see there), written for InnoDB as 20261202000010_schema.sql
-- explains (ASCII identifiers with a binary collation, JSON as LONGTEXT, DATETIME(6) in UTC).

CREATE TABLE webhooks (
    id          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    url         LONGTEXT    NOT NULL,
    form_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin,
    -- A JSON array of user ids; empty: any collector's.
    user_ids    LONGTEXT    NOT NULL,
    secret      LONGTEXT    NOT NULL,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhook_deliveries (
    webhook_id       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    delivery_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                     CHECK (CHAR_LENGTH(delivery_id) >= 1),
    payload          LONGTEXT    NOT NULL,
    state            VARCHAR(9)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INT         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    last_attempt_at  DATETIME(6),
    last_status      INT,
    last_error       LONGTEXT,
    created_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    delivered_at     DATETIME(6),
    PRIMARY KEY (webhook_id, delivery_id),
    KEY webhook_deliveries_due (state, next_attempt_at),
    KEY webhook_deliveries_by_webhook (webhook_id, created_at, delivery_id),
    KEY webhook_deliveries_delivered (state, delivered_at),
    CONSTRAINT webhook_deliveries_webhook FOREIGN KEY (webhook_id)
        REFERENCES webhooks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
