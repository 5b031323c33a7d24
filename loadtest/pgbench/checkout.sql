-- loadtest/pgbench/checkout.sql - the server's checkout transaction, for pgbench.
--
-- The same statements as service/server/checkout.c, for a 1-item cart of
-- quantity 1: BEGIN at SERIALIZABLE, index access and cached generic plans
-- for the transaction, read the product (and its purchase-limit group), take
-- a new order id and time, then write the stock, the order, its line and the
-- order.admitted event, and COMMIT. The event as EVENTS says: -D event=1 a
-- transactional WAL message (EVENTS=wal), 0 an outbox row (EVENTS=outbox),
-- 2 none at all (the ceiling an event could cost nothing against). Run it with
--   pgbench -M prepared --max-tries N -D skus=10000 -D hot=0|1 -D event=0|1|2
-- so that it uses prepared statements and retries serialization failures as
-- the server does. pgbench cannot \gset inside a pipeline, so this takes
-- three round trips where the server takes two (the order id rides along
-- with the read here; the server asks for it in the first pipeline).
\set n random(0, :skus - 1)
\set c random(1, 2000000000)
\startpipeline
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT set_config('enable_seqscan', 'off', true),
  set_config('plan_cache_mode', 'force_generic_plan', true);
\endpipeline
SELECT p.sku, p.price_cents AS price, p.stock, p.limit_group,
  (SELECT g.per_customer FROM limit_groups g WHERE g.name = p.limit_group) AS per_customer,
  CASE WHEN p.limit_group IS NULL THEN 0 ELSE
    (SELECT coalesce(sum(l.quantity), 0) FROM order_lines l
     WHERE l.customer_id = 'bench-' || :c::text AND l.limit_group = p.limit_group) END AS bought,
  uuid_v7()::text AS oid,
  -- chr(58) is a colon: pgbench would read colon-MI as a variable (folded when planned)
  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"') AS ts
FROM products p
WHERE p.sku = ANY (ARRAY[CASE WHEN :hot::int = 1 THEN 'sku-hot' ELSE 'sku-' || lpad(:n::text, 5, '0') END]) \gset
\set newstock :stock - 1
\startpipeline
UPDATE products SET stock = :newstock, updated_at = now() WHERE sku = :sku;
INSERT INTO orders (id, customer_id, email, total_cents, created_at)
  VALUES (:oid, 'bench-' || :c::text, 'load@example.com', :price, :ts);
INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id, limit_group)
  VALUES (:oid, :sku, 1, :price, 'bench-' || :c::text, NULL);
\if :event = 1
SELECT pg_logical_emit_message(true, 'checkout/order.admitted',
    '{"order_id":"' || :oid || '","customer_id":"bench-' || :c::text
     || '","email":"load@example.com","items":[{"sku":"' || :sku || '","quantity":1,"unit_price_cents":'
     || :price || ',"stock_after":' || :newstock || '}],"total_cents":' || :price || ',"created_at":"' || :ts || '"}');
\elif :event = 0
INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at)
  VALUES (:oid, 'order.admitted', :oid,
    ('{"order_id":"' || :oid || '","customer_id":"bench-' || :c::text
     || '","email":"load@example.com","items":[{"sku":"' || :sku || '","quantity":1,"unit_price_cents":'
     || :price || ',"stock_after":' || :newstock || '}],"total_cents":' || :price || ',"created_at":"' || :ts || '"}')::jsonb, :ts);
\endif
COMMIT;
\endpipeline
