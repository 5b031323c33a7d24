-- The Idempotency-Key is now claimed inside the checkout transaction and
-- its answer stored by that same transaction (service/server/idempotency.h),
-- so a committed key always has its answer and no lease is needed: a key
-- whose checkout did not commit simply does not exist. Claims left in
-- progress by an older server are dropped (their requests got no answer
-- they can rely on; a retry claims afresh).
DELETE FROM idempotency_keys WHERE status IS NULL;
ALTER TABLE idempotency_keys DROP COLUMN locked_until;
