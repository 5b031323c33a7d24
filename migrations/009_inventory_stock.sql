-- The inventory view keeps each SKU's stock as the events tell it: every
-- line of an order.admitted event carries stock_after, the SKU's stock once
-- that order took its units, written by the checkout's own transaction.
-- Events of one SKU can arrive out of order (orders are keyed by order id,
-- so they spread over partitions): the value of the latest order wins,
-- by the order's time (stock_at). Checkouts of one SKU commit in the order
-- of their times at SERIALIZABLE: the later one waits for the earlier row
-- lock and is retried, with a new time. A restock is not an order event:
-- the view's stock moves up with the next order of that SKU.
ALTER TABLE inventory.stock_view
    ADD COLUMN stock bigint,
    ADD COLUMN stock_at timestamptz;
