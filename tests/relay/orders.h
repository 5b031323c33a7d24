/* orders.h - write orders the way the checkout transaction does, for the
 * relay's tests: orders + order_lines + one outbox row whose payload is the
 * 201 body without "status", all in one transaction. */
#ifndef CHECKOUT_TESTS_RELAY_ORDERS_H
#define CHECKOUT_TESTS_RELAY_ORDERS_H

#include <libpq-fe.h>
#include <stdbool.h>

/* Insert the product the test orders buy (SKU-1, 1250 cents). */
void orders_seed(PGconn *conn);

/* Inside the caller's open transaction, write one order for customer and its
 * outbox row. Returns the order id (caller frees); *outbox_id gets the row's id
 * (may be NULL). */
char *orders_insert(PGconn *conn, const char *customer, long *outbox_id);

/* BEGIN, orders_insert, COMMIT: an admitted order. Caller frees the id. */
char *orders_admit(PGconn *conn, const char *customer);

/* BEGIN, orders_insert, ROLLBACK: a checkout that never committed. Caller frees the id. */
char *orders_roll_back(PGconn *conn, const char *customer);

/* Number of outbox rows not yet published. */
long orders_pending(PGconn *conn);

/* Wait until no outbox row is pending; false after timeout_ms. */
bool orders_wait_drained(PGconn *conn, int timeout_ms);

#endif
