/* outbox.c - the relay's SQL (see outbox.h). */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/errbuf.h"

#define UTC_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define ROW_COLUMNS                                                                                          \
	"id, event_id::text, event_type, aggregate_id::text, payload::text, "                                \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "                      \
	"coalesce(payload->>'version', '')"

const struct db_stmt outbox_stmts[] = {
    /* the partial index outbox_pending serves ORDER BY id; SKIP LOCKED lets relays share the work */
    {"outbox_claim", "SELECT " ROW_COLUMNS " FROM outbox WHERE published_at IS NULL"
		     " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"},
    {"outbox_mark", "UPDATE outbox SET published_at = now()"
		    " WHERE id = ANY($1::bigint[]) AND published_at IS NULL"},
    /* --replay: the events rebuilt from the orders themselves, in either mode (the WAL keeps
     * none, the outbox prunes), with the checkout's ids and payload: ce_id = order id, items in
     * SKU order (the checkout sorts the cart). An order id cursor walks orders_pkey. */
    {"outbox_replay_page",
     "SELECT 0, o.id::text, 'order.admitted', o.id::text,"
     " json_build_object('order_id', o.id, 'customer_id', o.customer_id, 'email', o.email,"
     "  'items', (SELECT json_agg(json_build_object('sku', l.sku, 'quantity', l.quantity,"
     "            'unit_price_cents', l.unit_price_cents) ORDER BY l.sku COLLATE \"C\")"
     "           FROM order_lines l WHERE l.order_id = o.id),"
     "  'total_cents', o.total_cents, 'created_at', " UTC_TIME("o.created_at") ")::text, " UTC_TIME(
	 "o.created_at") ", ''"
			 " FROM orders o WHERE o.created_at >= COALESCE(NULLIF($1, '')::timestamptz, "
			 "'-infinity')"
			 " AND o.id > $2::uuid ORDER BY o.id LIMIT $3"},
    /* --replay of the catalogue: each product's latest state, as the trigger of
     * migrations/010_products_as_events.sql emitted it with its last change */
    {"outbox_replay_products_page",
     "SELECT 0, p.sku || '@' || p.version,"
     " CASE WHEN p.deleted_at IS NULL THEN 'product.upserted' ELSE 'product.deleted' END, p.sku,"
     " product_event_payload(p, p.deleted_at IS NOT NULL), " UTC_TIME(
	 "p.updated_at") ", p.version::text"
			 " FROM products p WHERE p.updated_at >= COALESCE(NULLIF($1, '')::timestamptz, "
			 "'-infinity')"
			 " AND p.sku COLLATE \"C\" > $2 ORDER BY p.sku COLLATE \"C\" LIMIT $3"},
    {"outbox_prune", "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
		     " WHERE published_at < now() - make_interval(hours => $1::int)"
		     " ORDER BY published_at LIMIT $2)"},
    {"outbox_stats", "SELECT count(*), COALESCE(EXTRACT(epoch FROM now() - min(created_at)), 0)::float8"
		     " FROM outbox WHERE published_at IS NULL"},
    {NULL, NULL},
};

void outbox_batch_clear(struct outbox_batch *batch)
{
	if (!batch)
		return;
	free(batch->rows);
	PQclear(batch->res);
	batch->rows = NULL;
	batch->res = NULL;
	batch->n = 0;
}

/* Take ownership of res (rows of ROW_COLUMNS) into batch. */
static bool batch_fill(struct outbox_batch *batch, PGresult *res, char *err, size_t errlen)
{
	int n = PQntuples(res);
	batch->res = res;
	batch->n = 0;
	batch->rows = NULL;
	if (n == 0)
		return true;
	batch->rows = calloc((size_t)n, sizeof(*batch->rows));
	if (!batch->rows) {
		snprintf(err, errlen, "out of memory for %d rows", n);
		return false;
	}
	for (int i = 0; i < n; i++) {
		struct outbox_row *r = &batch->rows[i];
		r->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		r->event_id = PQgetvalue(res, i, 1);
		r->event_type = PQgetvalue(res, i, 2);
		r->aggregate_id = PQgetvalue(res, i, 3);
		r->payload = PQgetvalue(res, i, 4);
		r->payload_len = PQgetlength(res, i, 4);
		r->created_at = PQgetvalue(res, i, 5);
		r->version = PQgetvalue(res, i, 6);
	}
	batch->n = n;
	return true;
}

bool outbox_claim(PGconn *conn, int limit, struct outbox_batch *batch, char *err, size_t errlen)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *params[] = {lim};
	memset(batch, 0, sizeof(*batch));
	PGresult *res = PQexecPrepared(conn, "outbox_claim", 1, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errbuf_set(err, errlen, "claiming outbox rows: %s", db_error_message(res, conn));
		PQclear(res);
		return false;
	}
	return batch_fill(batch, res, err, errlen);
}

/* One page of a replay: the prepared statement stmt with (since, after, limit). */
static bool replay_page(PGconn *conn, const char *stmt, const char *what, const char *since,
			const char *after, int limit, struct outbox_batch *batch, char *err, size_t errlen)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *params[] = {since ? since : "", after, lim};
	memset(batch, 0, sizeof(*batch));
	PGresult *res = PQexecPrepared(conn, stmt, 3, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errbuf_set(err, errlen, "reading %s to replay: %s", what, db_error_message(res, conn));
		PQclear(res);
		return false;
	}
	return batch_fill(batch, res, err, errlen);
}

bool outbox_replay_page(PGconn *conn, const char *since, const char *after_order, int limit,
			struct outbox_batch *batch, char *err, size_t errlen)
{
	return replay_page(conn, "outbox_replay_page", "orders", since, after_order, limit, batch, err,
			   errlen);
}

bool outbox_replay_products_page(PGconn *conn, const char *since, const char *after_sku, int limit,
				 struct outbox_batch *batch, char *err, size_t errlen)
{
	return replay_page(conn, "outbox_replay_products_page", "products", since, after_sku, limit, batch,
			   err, errlen);
}

bool outbox_mark_published(PGconn *conn, const struct outbox_batch *batch, const bool *delivered,
			   long *marked, char *err, size_t errlen)
{
	bool ok = false;
	PGresult *res = NULL;
	/* "{1,2,3}": at most 20 digits and a comma per id */
	char *ids = malloc((size_t)batch->n * 21 + 3);
	*marked = 0;
	if (!ids) {
		snprintf(err, errlen, "out of memory for %d ids", batch->n);
		goto out;
	}
	size_t len = 0;
	int count = 0;
	ids[len++] = '{';
	for (int i = 0; i < batch->n; i++) {
		if (!delivered[i])
			continue;
		len += (size_t)sprintf(ids + len, "%s%lld", count ? "," : "", batch->rows[i].id);
		count++;
	}
	ids[len++] = '}';
	ids[len] = '\0';
	if (count == 0) {
		ok = true;
		goto out;
	}
	const char *params[] = {ids};
	res = PQexecPrepared(conn, "outbox_mark", 1, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		errbuf_set(err, errlen, "marking rows published: %s", db_error_message(res, conn));
		goto out;
	}
	*marked = strtol(PQcmdTuples(res), NULL, 10);
	ok = true;
out:
	PQclear(res);
	free(ids);
	return ok;
}

bool outbox_prune(PGconn *conn, int hours, int limit, long *deleted, char *err, size_t errlen)
{
	char h[16], lim[16];
	snprintf(h, sizeof(h), "%d", hours);
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *params[] = {h, lim};
	*deleted = 0;
	PGresult *res = PQexecPrepared(conn, "outbox_prune", 2, params, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (ok)
		*deleted = strtol(PQcmdTuples(res), NULL, 10);
	else
		errbuf_set(err, errlen, "pruning published rows: %s", db_error_message(res, conn));
	PQclear(res);
	return ok;
}

bool outbox_stats(PGconn *conn, long *pending, double *oldest_s, char *err, size_t errlen)
{
	PGresult *res = PQexecPrepared(conn, "outbox_stats", 0, NULL, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (ok) {
		*pending = strtol(PQgetvalue(res, 0, 0), NULL, 10);
		*oldest_s = strtod(PQgetvalue(res, 0, 1), NULL);
	} else {
		errbuf_set(err, errlen, "reading outbox stats: %s", db_error_message(res, conn));
	}
	PQclear(res);
	return ok;
}
