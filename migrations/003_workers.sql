-- The three consumer workers: each a downstream view in its own schema.
-- Nothing here is a source of truth: every table can be dropped and rebuilt
-- by replaying the orders topic. Each schema has
--   inbox        - one row per applied event (ce_id), written in the same
--                  transaction as the effect: the effectively-once guard;
--   dead_letters - messages that could not be parsed or applied, kept raw.

CREATE SCHEMA email;
CREATE SCHEMA inventory;
CREATE SCHEMA analytics;

CREATE TABLE email.inbox (
    event_id    text PRIMARY KEY,
    order_id    uuid NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE inventory.inbox (LIKE email.inbox INCLUDING ALL);
CREATE TABLE analytics.inbox (LIKE email.inbox INCLUDING ALL);

-- (topic, partition, offset) is unique: a poison message redelivered after
-- a restart is recorded once.
CREATE TABLE email.dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         bytea,
    value       bytea,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
CREATE TABLE inventory.dead_letters (LIKE email.dead_letters INCLUDING ALL);
CREATE TABLE analytics.dead_letters (LIKE email.dead_letters INCLUDING ALL);

-- email: one row per confirmation delivered into the spool.
CREATE TABLE email.sent (
    event_id    text PRIMARY KEY,
    order_id    uuid NOT NULL,
    recipient   text NOT NULL,
    file        text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);

-- inventory: what the orders topic says was sold, per SKU.
CREATE TABLE inventory.stock_view (
    sku           text PRIMARY KEY,
    units_sold    bigint NOT NULL DEFAULT 0,
    orders_seen   bigint NOT NULL DEFAULT 0,
    last_order_at timestamptz
);

-- analytics: running totals (one row), per-minute buckets, per-SKU totals.
CREATE TABLE analytics.totals (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    orders        bigint NOT NULL DEFAULT 0,
    units         bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz
);
INSERT INTO analytics.totals (id) VALUES (true);

CREATE TABLE analytics.minutes (
    minute        timestamptz PRIMARY KEY,
    orders        bigint NOT NULL DEFAULT 0,
    units         bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0
);

CREATE TABLE analytics.skus (
    sku           text PRIMARY KEY,
    orders        bigint NOT NULL DEFAULT 0,
    units         bigint NOT NULL DEFAULT 0,
    revenue_cents bigint NOT NULL DEFAULT 0
);
CREATE INDEX analytics_skus_units ON analytics.skus (units DESC);
