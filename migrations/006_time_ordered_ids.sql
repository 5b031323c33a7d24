-- uuid_v7(): a UUID whose first 48 bits are the Unix time in milliseconds
-- and whose other 74 free bits are random (the UUIDv7 layout of RFC 9562;
-- PostgreSQL 15 has no such function). The checkout takes order ids and
-- outbox event ids from it instead of gen_random_uuid(): a random key puts
-- every new row on a random leaf page of orders_pkey, order_lines_pkey and
-- outbox_event_id_key, so the whole of each index is the working set, pages
-- leave shared_buffers dirty and every first touch after a checkpoint writes a
-- full-page image to the WAL. A key that grows with time keeps inserts on the
-- right-hand edge of those indexes. Ids stay unique and unguessable enough
-- for an order id; they do tell the millisecond the order was taken.
CREATE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;
