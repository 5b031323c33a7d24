-- CRUD as events: the catalogue on the compacted topic "products", keyed by
-- SKU (README, "CRUD as events").
--
-- Every change of a product row emits its event in the transaction that
-- makes it, from a trigger: so an admin write, a checkout's stock update and
-- a change made in plain SQL (scripts/demo-catalogue.sql, a manual fix) all
-- reach the topic when they commit and never when they roll back, and no
-- writer can forget to (no dual write). The event goes where the events mode
-- says: the setting checkout.events, which checkout-server and checkout-relay
-- set from EVENTS on the database at start (ALTER DATABASE ... SET, so plain
-- SQL sessions follow it) and the server on its own sessions: a transactional
-- WAL message 'checkout/product.upserted' or 'checkout/product.deleted'
-- (wal, or not set), or an outbox row (outbox). A setting, not a table: a
-- table read by every checkout's trigger under SERIALIZABLE took a predicate
-- lock that made disjoint checkouts conflict (tests/server measured 3-5
-- retries per 120 disjoint checkouts with it, 0 without).
-- Its payload is the product as the API shows it plus version and
-- updated_at; a deletion's payload is only sku, version and updated_at, and
-- the relay publishes it as a tombstone (null value).

-- Soft delete: DELETE /v1/products/{sku} sets deleted_at. A deleted product
-- is unknown to checkouts and to GET; its sold lines keep referencing it
-- (order_lines.sku). A PUT of the SKU later creates it anew (a new version).
ALTER TABLE products ADD COLUMN deleted_at timestamptz;

-- Versions from one sequence instead of 007's per-row counter: every write of
-- any product takes the next number, so a SKU deleted (even by a plain SQL
-- DELETE) and created again continues above its tombstone, and "the highest
-- version wins" holds for a consumer across the product's whole history.
-- The row lock orders two writers of one row, and the second takes its number
-- after the first committed, so versions of a SKU grow in commit order.
CREATE SEQUENCE product_versions OWNED BY products.version;
SELECT setval('product_versions', (SELECT coalesce(max(version), 0) + 1 FROM products), false);
ALTER TABLE products ALTER COLUMN version SET DEFAULT nextval('product_versions');

CREATE OR REPLACE FUNCTION products_bump_version() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.version := nextval('product_versions');
  RETURN NEW;
END
$$;

-- The outbox carries product events too: their id is "<sku>@<version>" and
-- their key the SKU, neither a UUID.
ALTER TABLE outbox
    ALTER COLUMN event_id TYPE text USING event_id::text,
    ALTER COLUMN aggregate_id TYPE text USING aggregate_id::text;

-- The event of a product row (the row as it is after the change).
CREATE FUNCTION product_event_payload(p products, deleted boolean) RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN deleted THEN
    json_build_object('sku', p.sku, 'version', p.version,
      'updated_at', to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
  ELSE
    json_build_object('sku', p.sku, 'name', p.name, 'price_cents', p.price_cents, 'stock', p.stock,
      'limit_group', p.limit_group, 'version', p.version,
      'updated_at', to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
  END
$$;

-- checkout.product_events = 'off' (a session or transaction setting) emits
-- nothing: for measuring what the events cost (README, "CRUD as events").
CREATE FUNCTION products_emit_event() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
  p products;
  deleted boolean;
BEGIN
  IF current_setting('checkout.product_events', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    p := OLD;
    p.version := nextval('product_versions');
    p.updated_at := now();
    deleted := true;
  ELSE
    p := NEW;
    deleted := NEW.deleted_at IS NOT NULL;
    -- a deleted product written again while still deleted: its tombstone is out already
    IF deleted AND TG_OP = 'UPDATE' AND OLD.deleted_at IS NOT NULL THEN
      RETURN NULL;
    END IF;
  END IF;
  IF current_setting('checkout.events', true) = 'outbox' THEN
    INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
    VALUES (p.sku || '@' || p.version, CASE WHEN deleted THEN 'product.deleted' ELSE 'product.upserted' END,
            p.sku, product_event_payload(p, deleted)::jsonb);
  ELSE
    PERFORM pg_logical_emit_message(true,
      CASE WHEN deleted THEN 'checkout/product.deleted' ELSE 'checkout/product.upserted' END,
      product_event_payload(p, deleted));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER products_emit_event AFTER INSERT OR UPDATE OR DELETE ON products
  FOR EACH ROW EXECUTE FUNCTION products_emit_event();

-- The inventory worker's own copy of the catalogue, built from the products
-- topic alone (service/workers/catalogue.c): the highest version of a SKU
-- wins, a tombstone marks it deleted with its version.
CREATE TABLE inventory.catalogue (
    sku         text PRIMARY KEY,
    name        text,
    price_cents bigint,
    stock       bigint,
    limit_group text,
    version     bigint NOT NULL,
    deleted     boolean NOT NULL DEFAULT false,
    updated_at  timestamptz
);
