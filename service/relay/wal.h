/* wal.h - the relay's WAL mode (EVENTS=wal): order events streamed from a
 * logical replication slot.
 *
 * The checkout emits each event with pg_logical_emit_message(true,
 * 'checkout/<type>', <order JSON>): a transactional message, decoded only if
 * its transaction commits, in commit order. The relay reads the slot over a
 * replication connection (replication=database) with the built-in pgoutput
 * plugin (proto_version 1, messages 'true', the empty publication
 * checkout_events), produces every event of a run of whole transactions,
 * waits for every delivery report, and only then reports the end of the last
 * of those transactions as flushed (the slot's confirmed_flush_lsn). A crash
 * or an outage therefore means the same events again (same ce_id), never a
 * lost one. The event's ce_id is the order id, its ce_time the order's
 * created_at, its key the order id, its value the message content as is.
 * The products trigger's messages ('checkout/product.upserted' and
 * 'checkout/product.deleted', migrations/010_products_as_events.sql) go to
 * the products topic keyed by SKU, with ce_id "<sku>@<version>" and ce_time
 * the product's updated_at (publisher.h).
 *
 * A second relay on the same slot finds it active and waits as a standby,
 * trying again every second. A slot PostgreSQL invalidated (it passed
 * max_slot_wal_keep_size) is a loud, fatal error: events in the lost WAL
 * were never published; see README.
 */
#ifndef CHECKOUT_RELAY_WAL_H
#define CHECKOUT_RELAY_WAL_H

#include <signal.h>

#include "checkout/config.h"
#include "metrics.h"

/* The prefix of the messages the relay publishes; the rest is the event type. */
#define WAL_PREFIX "checkout/"

/*
 * Relay events from the slot until *stop is set. metrics may be NULL.
 * Returns the exit status: EXIT_SUCCESS after a requested stop,
 * EXIT_FAILURE when the database cannot serve the slot (wal_level, an
 * invalidated slot, a bad slot name), after logging why.
 */
int wal_run(const struct config *cfg, struct relay_metrics *metrics, volatile sig_atomic_t *stop);

#endif
