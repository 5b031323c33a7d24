-- The demo catalogue scripts/up loads: a dozen products, one limit group and
-- one product with a single unit left to race for.
--
-- Idempotent: rows that exist are left alone (ON CONFLICT DO NOTHING), so a
-- second `scripts/up` keeps the stock the orders have used up. To put the
-- catalogue back as it was, reset the stock by hand, e.g.
--   scripts/psql -c "UPDATE products SET stock = 1 WHERE sku = 'signed-print'"

BEGIN;

-- A sneaker drop: at most 2 pairs per customer, across all three sizes.
INSERT INTO limit_groups (name, per_customer) VALUES
    ('sneaker-drop', 2)
ON CONFLICT DO NOTHING;

INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES
    ('tee-black-m',     'T-shirt, black, M',                1900,  100, NULL),
    ('tee-black-l',     'T-shirt, black, L',                1900,  100, NULL),
    ('hoodie-grey-m',   'Hoodie, grey, M',                  4900,   40, NULL),
    ('cap-navy',        'Cap, navy',                        1500,   60, NULL),
    ('socks-3pack',     'Socks, pack of 3',                 1200,  200, NULL),
    ('mug-logo',        'Mug with logo',                    1000,   80, NULL),
    ('tote-bag',        'Tote bag',                          900,  150, NULL),
    ('sticker-pack',    'Sticker pack',                      300, 1000, NULL),
    ('poster-a2',       'Poster, A2',                       2500,   25, NULL),
    ('sneaker-drop-41', 'Drop sneaker, EU 41',             12900,   10, 'sneaker-drop'),
    ('sneaker-drop-42', 'Drop sneaker, EU 42',             12900,   10, 'sneaker-drop'),
    ('sneaker-drop-43', 'Drop sneaker, EU 43',             12900,   10, 'sneaker-drop'),
    -- the last item: two customers racing for it, exactly one wins
    ('signed-print',    'Signed print, the only one left',  9900,    1, NULL)
ON CONFLICT DO NOTHING;

COMMIT;

-- fresh statistics, so the planner picks the indexes the checkout relies on
ANALYZE limit_groups;
ANALYZE products;
