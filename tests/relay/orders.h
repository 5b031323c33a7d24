/* orders.h - write orders the way the checkout transaction does, for the
 * relay's tests: orders + order_lines + one order.admitted event whose
 * payload is the 201 body without "status" and whose id is the order id, all
 * in one transaction. The event is a WAL message or an outbox row, as the
 * environment's EVENTS says (the relay's own setting, default wal), so one
 * suite runs in both modes. */
#ifndef CHECKOUT_TESTS_RELAY_ORDERS_H
#define CHECKOUT_TESTS_RELAY_ORDERS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "testenv.h"

/* True unless EVENTS=outbox. */
bool orders_wal_mode(void);

/* Insert the product the test orders buy (SKU-1, 1250 cents); in the WAL
 * mode also create the database's slot, as the server does at start. */
void orders_seed(PGconn *conn);

/* WAL mode: drop the database's slot once no relay holds it (the test
 * cluster keeps no WAL for finished tests). Does nothing in the outbox mode. */
void orders_drop_slot(PGconn *conn);

/* Inside the caller's open transaction, write one order and its event.
 * Returns the order id (caller frees); *event_pos (may be NULL) gets the
 * outbox row's id, or the WAL message's position: both grow in the order
 * the events were written. */
char *orders_insert(PGconn *conn, const char *customer, long *event_pos);

/* BEGIN, orders_insert, COMMIT: an admitted order. Caller frees the id. */
char *orders_admit(PGconn *conn, const char *customer);

/* BEGIN, orders_insert, ROLLBACK: a checkout that never committed. Caller frees the id. */
char *orders_roll_back(PGconn *conn, const char *customer);

/* The order's event payload rebuilt from the orders table, as JSON text (caller frees). */
char *orders_payload(PGconn *conn, const char *order_id);

/* Events not yet published. Outbox: pending rows. WAL: while a relay holds
 * the slot, 1 when its confirmed position is behind the WAL, else 0; with no
 * relay, the exact number of messages the slot would deliver. */
long orders_pending(PGconn *conn);

/* Wait until every event written so far is published (rows marked, or the
 * slot confirmed past the current WAL); false after timeout_ms. */
bool orders_wait_drained(PGconn *conn, int timeout_ms);

/* Start checkout-server on the database conninfo (a free port; base gets its URL; extra_env,
 * e.g. "ADMIN_TOKEN=...", may be NULL) and a relay to bootstrap, and wait until both serve. */
void orders_start_server_and_relay(struct testenv_proc *server, struct testenv_proc *relay,
				   const char *conninfo, const char *bootstrap, const char *extra_env,
				   char *base, size_t baselen);

#endif
