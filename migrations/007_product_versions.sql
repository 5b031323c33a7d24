-- Admin writes without lost updates (service/server/products.c).
--
-- products.version: a number that grows by one with every UPDATE of the row,
-- whoever makes it, and is the product's ETag ("<version>"). PUT
-- /v1/products/{sku} with If-Match writes only while the version is still
-- the one the admin read, so a sale made in between is never overwritten.
--
-- Why a counter kept by a trigger, and not what else would do:
--   updated_at: the checkout sets it to now(), the start of its transaction;
--     two writers can carry the same value (transactions that start in the
--     same microsecond, or a clock stepped back), and then a stale ETag would
--     still match.
--   xmin (the writing transaction's id): changes with every write at no cost,
--     but it is 32 bits and wraps around, so after ~4 billion transactions
--     (12 days at the 3,800 checkouts/s of scripts/bench) an old ETag can
--     match a new row version; it also changes on a dump and restore.
--   version bumped in each statement: the checkout's UPDATE
--     (checkout_write_stock in service/server/checkout.c) would have to
--     remember it, and so would every future writer and every manual fix.
-- The trigger catches every UPDATE, the checkout's included, without a
-- change there. Its cost, measured with pgbench (fsync off, 1000-row
-- UPDATEs with and without it): about 4 microseconds per row updated,
-- ~1.5 % of one core at 3,800 one-item checkouts/s. The column is not
-- indexed, so stock updates stay HOT updates (005_products_fillfactor.sql).
-- A product deleted and created again would start at 1 again; products are
-- not deleted (no API does it, and sold ones are referenced by order_lines).
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION products_bump_version() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END
$$;

CREATE TRIGGER products_bump_version BEFORE UPDATE ON products
  FOR EACH ROW EXECUTE FUNCTION products_bump_version();

-- POST /v1/products/{sku}/stock-adjustments: one row per applied adjustment,
-- written by the statement that changes the stock (so a row exists exactly
-- when the stock moved by delta), for audit. stock_after is the stock that
-- statement left; later sales are in order_lines.
CREATE TABLE stock_adjustments (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL REFERENCES products (sku),
    delta       integer NOT NULL CHECK (delta <> 0),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    stock_after integer NOT NULL CHECK (stock_after >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_sku ON stock_adjustments (sku, created_at);
