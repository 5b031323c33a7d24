/* outbox.h - the relay's SQL: claim pending outbox rows, mark them, prune, replay.
 *
 * Rows are claimed with FOR UPDATE SKIP LOCKED and marked by id, never by a
 * "last published id" cursor: a transaction that took a lower id can commit
 * after a higher one, and a cursor would skip its row for good.
 */
#ifndef CHECKOUT_RELAY_OUTBOX_H
#define CHECKOUT_RELAY_OUTBOX_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "checkout/db.h"

/* The prepared statements of this module (pass to db_connect). */
extern const struct db_stmt outbox_stmts[];

/* One outbox row; the strings point into the batch's PGresult. */
struct outbox_row {
	long long id;
	const char *event_id;	  /* ce_id: stable across republishing */
	const char *event_type;	  /* ce_type */
	const char *aggregate_id; /* the message key: the order id, or a product's SKU */
	const char *payload;	  /* the order (or product) as JSON text */
	int payload_len;
	const char *created_at; /* ce_time, RFC 3339 UTC */
	const char *version;	/* a product event's version (ce_sequence); "" for an order */
};

struct outbox_batch {
	PGresult *res;
	int n;
	struct outbox_row *rows;
};

/*
 * Inside the caller's open transaction, claim up to limit pending rows in id
 * order, locking them (rows locked by another relay are skipped). Fills
 * batch (possibly with n == 0). Returns false on an SQL error, with the
 * server's message in err. Free the batch with outbox_batch_clear().
 */
bool outbox_claim(PGconn *conn, int limit, struct outbox_batch *batch, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * For --replay, in either events mode: the order.admitted events of up to
 * limit orders created at or after since ("" for all) whose id is greater
 * than after_order (a UUID), in order id order, rebuilt from orders and
 * order_lines (ce_id = the order id, as the checkout writes it). Rows have
 * id 0. Same ownership as outbox_claim.
 */
bool outbox_replay_page(PGconn *conn, const char *since, const char *after_order, int limit,
			struct outbox_batch *batch, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * For --replay: the latest event of up to limit products changed at or
 * after since ("" for all) whose SKU is greater than after_sku (byte order):
 * product.upserted with the product as it is, or product.deleted for a
 * deleted one, with the id and version its last change emitted. Same
 * ownership as outbox_claim.
 */
bool outbox_replay_products_page(PGconn *conn, const char *since, const char *after_sku, int limit,
				 struct outbox_batch *batch, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Free the rows and result of a batch; safe on a zeroed batch and twice. */
void outbox_batch_clear(struct outbox_batch *batch);

/*
 * Set published_at = now() on the rows of batch whose delivered[i] is true,
 * in one statement. Sets *marked to the number of rows updated. Returns
 * false on an SQL error (err says why).
 */
bool outbox_mark_published(PGconn *conn, const struct outbox_batch *batch, const bool *delivered,
			   long *marked, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Delete at most limit rows published more than hours ago. Sets *deleted.
 * Returns false on an SQL error.
 */
bool outbox_prune(PGconn *conn, int hours, int limit, long *deleted, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Count pending rows and the age in seconds of the oldest (0 when none).
 * Returns false on an SQL error.
 */
bool outbox_stats(PGconn *conn, long *pending, double *oldest_s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
