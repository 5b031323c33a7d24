/* checkout.c - THE checkout transaction, and the POST /v1/checkout handler.
 *
 * One transaction at the configured isolation level (SERIALIZABLE unless a
 * demonstration asks otherwise):
 *   1. read price, stock and limit group of every SKU in the cart, and what
 *      this customer already bought in each group (one statement);
 *   2. decide in C;
 *   3. write the new stock levels (in SKU order), the order, its lines, the
 *      order.admitted event (and the idempotent answer), commit. The event
 *      is a transactional WAL message (EVENTS=wal: it exists only if the
 *      transaction commits, and the relay decodes it in commit order), or a
 *      row in table outbox (EVENTS=outbox). Its id (the CloudEvents ce_id) is
 *      the order id in both modes, so an event rebuilt from the order table
 *      (checkout-relay --replay) carries the same id.
 * With an Idempotency-Key the transaction's first write claims the key and
 * its last stores the answer (idempotency.h): one key, at most one order.
 *
 * Every wait ends by the request's deadline (REQUEST_TIMEOUT_MS, set by
 * http.c): the hot-SKU turn, the pool, each round trip. A database that
 * does not answer in time has its connection shut down (db.h), so a
 * transaction whose COMMIT was not sent rolls back; one whose COMMIT was
 * sent and not confirmed has an unknown outcome, which a retry with the
 * same Idempotency-Key resolves (the server does it itself while time is
 * left, and tells the client otherwise: 503 outcome-unknown).
 * The read-then-write is plain application logic on purpose: the isolation
 * level is what makes it correct. Round trips: one pipeline for BEGIN and the
 * reads, one for all the writes and COMMIT.
 *
 * Every read goes through an index (enable_seqscan is off inside the
 * transaction): a sequential scan would take a relation-wide SIREAD lock and
 * make every checkout conflict with every other one.
 */
#define _GNU_SOURCE
#include "checkout.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/errbuf.h"
#include "checkout/fiber.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"
#include "hotqueue.h"
#include "idempotency.h"
#include "problem.h"

#define BACKOFF_BASE_MS 5
#define BACKOFF_CAP_MS 500

const struct db_stmt checkout_stmts[] = {
    /* For this transaction only: index access only (see above), and the cached
     * generic plan of every statement. Left to itself, PostgreSQL re-plans
     * checkout_read on every execution, because the generic plan of
     * "sku = ANY($1)" is costed for a longer array than a custom plan for the
     * actual one; that planning took a fifth of the database's CPU per checkout. */
    {"checkout_settings", "SELECT set_config('enable_seqscan', 'off', true), "
			  "set_config('plan_cache_mode', 'force_generic_plan', true)"},
    /* $1 text[] of SKUs, $2 customer id. The group's limit is a subquery, not a
     * join: so the generic plan looks it up by name instead of scanning limit_groups. */
    {"checkout_read", "SELECT p.sku, p.price_cents, p.stock, p.limit_group, "
		      "  (SELECT g.per_customer FROM limit_groups g WHERE g.name = p.limit_group), "
		      "  CASE WHEN p.limit_group IS NULL THEN 0 ELSE "
		      "    (SELECT coalesce(sum(l.quantity), 0) FROM order_lines l "
		      "     WHERE l.customer_id = $2 AND l.limit_group = p.limit_group) END "
		      "FROM products p "
		      "WHERE p.sku = ANY ($1::text[]) AND p.deleted_at IS NULL"},
    {"checkout_order_id", "SELECT uuid_v7()::text, "
			  "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"},
    {"checkout_write_stock", "UPDATE products SET stock = $2, updated_at = now() WHERE sku = $1"},
    {"checkout_insert_order",
     "INSERT INTO orders (id, customer_id, email, total_cents, created_at) VALUES ($1, $2, $3, $4, $5)"},
    {"checkout_insert_line",
     "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id, limit_group) "
     "VALUES ($1, $2, $3, $4, $5, $6)"},
    {"checkout_insert_outbox", "INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at) "
			       "VALUES ($1, 'order.admitted', $1, $2::jsonb, $3)"},
    /* transactional; the prefix names the event type (service/relay/wal.h) */
    {"checkout_emit_event", "SELECT pg_logical_emit_message(true, 'checkout/order.admitted', $1::text)"},
    {NULL, NULL},
};

/* How one attempt of the transaction ended. */
enum tx_status {
	TX_OK,	       /* committed (admitted, or a rejection decided) */
	TX_RETRY,      /* 40001/40P01: run the whole transaction again */
	TX_LOST_EARLY, /* the connection died before COMMIT of an order was sent: nothing was bought */
	TX_LOST,       /* the connection died after COMMIT of an order was sent: outcome unknown */
	TX_FAILED,     /* any other error */
	TX_KEY_BUSY,   /* another transaction holds the Idempotency-Key (lock_timeout passed) */
	TX_KEY_TAKEN,  /* the Idempotency-Key already has an answer: rolled back, look it up */
};

/* ---- small helpers ---------------------------------------------------- */

static unsigned jitter_ms(unsigned max)
{
	static __thread unsigned long long state;
	if (!state) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		state = ((unsigned long long)ts.tv_nsec << 16) ^ (unsigned long long)pthread_self() ^
			0x9e3779b97f4a7c15ULL;
	}
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return max ? (unsigned)(state % (max + 1)) : 0;
}

/* A PostgreSQL text[] literal of the cart's SKUs; malloc'd, NULL when out of memory. */
static char *sku_array(const struct checkout_request *cart)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	fputc('{', f);
	for (size_t i = 0; i < cart->n_items; i++) {
		fputs(i ? ",\"" : "\"", f);
		for (const char *c = cart->items[i].sku; *c; c++) {
			if (*c == '"' || *c == '\\')
				fputc('\\', f);
			fputc(*c, f);
		}
		fputc('"', f);
	}
	fputc('}', f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/*
 * Sync the pipeline and read the results of its n queries. Tuple results go
 * into keep[i] when keep is not NULL (caller clears them). Leaves pipeline
 * mode, and rolls back a transaction left open by an error. On an SQL error
 * *failed is the index of the query that failed (else -1) and sqlstate its
 * SQLSTATE. A lost connection is TX_LOST when committed is true (COMMIT of
 * an order was among the queries), else TX_LOST_EARLY.
 */
static enum tx_status pipe_finish(PGconn *conn, int n, PGresult **keep, bool committed, int *failed,
				  char sqlstate[6], char *err, size_t errlen)
{
	enum tx_status status = TX_OK;
	int query = 0;

	*failed = -1;
	sqlstate[0] = '\0';
	if (PQpipelineSync(conn) != 1) {
		errbuf_set(err, errlen, "%s", PQerrorMessage(conn));
		status = TX_LOST;
		goto out;
	}
	for (;;) {
		PGresult *res = db_result(conn);
		if (!res) {
			if (PQstatus(conn) == CONNECTION_BAD || ++query > n) {
				if (status == TX_OK || status == TX_FAILED)
					errbuf_set(err, errlen, "%s", PQerrorMessage(conn));
				status = TX_LOST;
				goto out;
			}
			continue;
		}
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			break;
		}
		if (st == PGRES_FATAL_ERROR && status == TX_OK) {
			*failed = query;
			snprintf(sqlstate, 6, "%s", db_sqlstate(res));
			/* a lock or statement timeout is contention too: try again while the deadline allows */
			status = db_is_retryable(res) || !strcmp(sqlstate, "55P03") || !strcmp(sqlstate, "57014")
					 ? TX_RETRY
					 : TX_FAILED;
			errbuf_set(err, errlen, "%s", PQresultErrorMessage(res));
		}
		if (st == PGRES_TUPLES_OK && keep && query < n && !keep[query])
			keep[query] = res;
		else
			PQclear(res);
	}
out:
	if (status == TX_LOST || PQstatus(conn) == CONNECTION_BAD)
		return committed ? TX_LOST : TX_LOST_EARLY;
	if (PQexitPipelineMode(conn) != 1)
		return committed ? TX_LOST : TX_LOST_EARLY;
	if (status != TX_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(db_exec(conn, "ROLLBACK"));
	return status;
}

static bool send_sql(PGconn *conn, const char *sql)
{
	return PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
}

static bool send_prepared(PGconn *conn, const char *name, int n, const char *const *params)
{
	return PQsendQueryPrepared(conn, name, n, params, NULL, NULL, 0) == 1;
}

/* ---- the decision ----------------------------------------------------- */

/* Fill lines[i] from the read's rows, matching them to the cart by SKU. */
static void collect_lines(const struct checkout_request *cart, const PGresult *rows, struct line_state *lines)
{
	memset(lines, 0, sizeof(*lines) * cart->n_items);
	for (int r = 0; r < PQntuples(rows); r++) {
		const char *sku = PQgetvalue(rows, r, 0);
		for (size_t i = 0; i < cart->n_items; i++) {
			if (strcmp(cart->items[i].sku, sku))
				continue;
			struct line_state *l = &lines[i];
			l->found = true;
			l->price_cents = strtoll(PQgetvalue(rows, r, 1), NULL, 10);
			l->stock = strtoll(PQgetvalue(rows, r, 2), NULL, 10);
			if (!PQgetisnull(rows, r, 3) && !PQgetisnull(rows, r, 4)) {
				snprintf(l->limit_group, sizeof(l->limit_group), "%s",
					 PQgetvalue(rows, r, 3));
				l->per_customer = strtoll(PQgetvalue(rows, r, 4), NULL, 10);
				l->bought = strtoll(PQgetvalue(rows, r, 5), NULL, 10);
			}
			break;
		}
	}
}

/*
 * Decide whether the cart can be admitted. Returns true when it can;
 * otherwise fills result with the rejection (422 unknown-sku, 409
 * out-of-stock, 409 purchase-limit-exceeded, checked in that order).
 */
bool checkout_decide(const struct checkout_request *cart, const struct line_state *lines,
		     struct checkout_result *result)
{
	json_t *unknown = json_array();
	json_t *short_items = json_array();
	bool admit = false;

	for (size_t i = 0; i < cart->n_items; i++) {
		const struct checkout_item *it = &cart->items[i];
		if (!lines[i].found)
			json_array_append_new(unknown, json_string(it->sku));
		else if (lines[i].stock < it->quantity)
			json_array_append_new(short_items, json_pack("{s:s, s:i, s:I}", "sku", it->sku,
								     "requested", it->quantity, "available",
								     (json_int_t)lines[i].stock));
	}
	if (json_array_size(unknown)) {
		result->status = 422;
		result->outcome = OUTCOME_UNKNOWN_SKU;
		result->body = problem_text(422, "unknown-sku", "Some SKUs of the cart do not exist.",
					    json_pack("{s:O}", "unknown", unknown));
		goto out;
	}
	if (json_array_size(short_items)) {
		result->status = 409;
		result->outcome = OUTCOME_OUT_OF_STOCK;
		result->body =
		    problem_text(409, "out-of-stock", "Not enough stock for some items; nothing was bought.",
				 json_pack("{s:O}", "unavailable", short_items));
		goto out;
	}
	/* the purchase limit: units per customer across every product of a group */
	for (size_t i = 0; i < cart->n_items; i++) {
		if (!lines[i].limit_group[0])
			continue;
		bool seen = false;
		long long requested = 0;
		for (size_t j = 0; j < cart->n_items; j++) {
			if (strcmp(lines[j].limit_group, lines[i].limit_group))
				continue;
			seen = seen || j < i;
			requested += cart->items[j].quantity;
		}
		if (seen || lines[i].bought + requested <= lines[i].per_customer)
			continue;
		char detail[400];
		snprintf(detail, sizeof(detail), "At most %lld units of group %s per customer.",
			 lines[i].per_customer, lines[i].limit_group);
		result->status = 409;
		result->outcome = OUTCOME_LIMIT_EXCEEDED;
		result->body = problem_text(
		    409, "purchase-limit-exceeded", detail,
		    json_pack("{s:s, s:I, s:I, s:I}", "limit_group", lines[i].limit_group, "per_customer",
			      (json_int_t)lines[i].per_customer, "already_bought",
			      (json_int_t)lines[i].bought, "requested", (json_int_t)requested));
		goto out;
	}
	admit = true;
out:
	json_decref(unknown);
	json_decref(short_items);
	return admit;
}

/*
 * The 201 body and the outbox payload (the same object without "status",
 * and with each line's stock after this order, which the views need and the
 * client is not told), as JSON text. Returns false when out of memory.
 */
bool checkout_build_admitted(const struct checkout_request *cart, const struct line_state *lines,
			     const char *order_id, const char *created_at, long long total, char **body,
			   char **payload)
{
	json_t *items = json_array();
	for (size_t i = 0; items && i < cart->n_items; i++)
		json_array_append_new(items, json_pack("{s:s, s:i, s:I}", "sku", cart->items[i].sku,
						       "quantity", cart->items[i].quantity,
						       "unit_price_cents", (json_int_t)lines[i].price_cents));
	json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:s}", "order_id", order_id, "status",
				"admitted", "customer_id", cart->customer_id, "email", cart->email, "items",
				items, "total_cents", (json_int_t)total, "created_at", created_at);
	json_decref(items);
	if (!obj)
		return false;
	*body = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_object_del(obj, "status");
	for (size_t i = 0; i < cart->n_items; i++)
		json_object_set_new(json_array_get(json_object_get(obj, "items"), i), "stock_after",
				    json_integer(lines[i].stock - cart->items[i].quantity));
	*payload = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	return *body && *payload;
}

/* ---- the transaction -------------------------------------------------- */

/* One attempt of the whole transaction on conn. */
static enum tx_status checkout_attempt(struct server *srv, PGconn *conn, const struct checkout_request *cart,
				       const char *key, const char *canonical, struct checkout_result *result,
				       char *err, size_t errlen)
{
	enum tx_status status = TX_FAILED;
	PGresult *reads[5] = {NULL};
	struct line_state *lines = NULL;
	char *skus = NULL, *body = NULL, *payload = NULL;
	char begin[64], sqlstate[6];
	int sent = 0, failed = -1;
	/* the pipeline's queries: BEGIN, settings, [claim], read, order id */
	const int q_claim = 2, q_read = key ? 3 : 2, q_id = q_read + 1;

	lines = calloc(cart->n_items, sizeof(*lines));
	skus = sku_array(cart);
	if (!lines || !skus) {
		errbuf_set(err, errlen, "out of memory");
		goto out;
	}

	/* 1. read: BEGIN, [the key's claim], the cart's products, a new order id and the time: one round trip */
	snprintf(begin, sizeof(begin), "BEGIN ISOLATION LEVEL %s", config_isolation_sql(srv->cfg->isolation));
	const char *read_params[] = {skus, cart->customer_id};
	const char *claim_params[] = {key, canonical};
	double step_started = monotonic_seconds();
	if (PQenterPipelineMode(conn) != 1 || !send_sql(conn, begin) ||
	    !send_prepared(conn, "checkout_settings", 0, NULL) ||
	    (key && !send_prepared(conn, "idempotency_claim", 2, claim_params)) ||
	    !send_prepared(conn, "checkout_read", 2, read_params) ||
	    !send_prepared(conn, "checkout_order_id", 0, NULL)) {
		/* a send fails only on a broken connection; the pool closes it on release */
		errbuf_set(err, errlen, "%s", PQerrorMessage(conn));
		status = TX_LOST_EARLY;
		goto out;
	}
	status = pipe_finish(conn, q_id + 1, reads, false, &failed, sqlstate, err, errlen);
	metrics_step(STEP_READ, monotonic_seconds() - step_started);
	/* lock_timeout while waiting for another transaction that holds the key */
	if (key && failed == q_claim && !strcmp(sqlstate, "55P03"))
		status = TX_KEY_BUSY;
	if (status != TX_OK)
		goto out;
	if (!reads[q_read] || !reads[q_id] || PQntuples(reads[q_id]) != 1 ||
	    (key && !reads[q_claim])) {
		errbuf_set(err, errlen, "unexpected result from the read");
		status = TX_FAILED;
		PQclear(db_exec(conn, "ROLLBACK"));
		goto out;
	}
	if (key && PQntuples(reads[q_claim]) == 0) {
		/* the key has an answer already: nothing to do in this transaction */
		PQclear(db_exec(conn, "ROLLBACK"));
		status = TX_KEY_TAKEN;
		goto out;
	}
	collect_lines(cart, reads[q_read], lines);

	/* a demonstration setting: widen the window between read and write */
	if (srv->cfg->race_pause_ms > 0)
		fiber_sleep_ms((unsigned)srv->cfg->race_pause_ms);

	/* 2. decide */
	step_started = monotonic_seconds();
	if (!checkout_decide(cart, lines, result)) {
		/* commit even a rejection: under SSI its reads must hold up, and the key keeps its answer */
		char code[16];
		snprintf(code, sizeof(code), "%u", result->status);
		const char *p[] = {key, code, result->body, NULL};
		bool ok = PQenterPipelineMode(conn) == 1 &&
			  (!key || send_prepared(conn, "idempotency_store", 4, p)) && send_sql(conn, "COMMIT");
		/* a rejection bought nothing: a lost connection is safe to retry */
		status = ok ? pipe_finish(conn, key ? 2 : 1, NULL, false, &failed, sqlstate, err, errlen)
			    : TX_LOST_EARLY;
		metrics_step(STEP_WRITE_COMMIT, monotonic_seconds() - step_started);
		if (!ok)
			errbuf_set(err, errlen, "%s", PQerrorMessage(conn));
		if (status != TX_OK) {
			free(result->body);
			result->body = NULL;
		}
		goto out;
	}

	/* 3. write: new stock levels in SKU order, order, lines, event, answer, COMMIT */
	const char *order_id = PQgetvalue(reads[q_id], 0, 0);
	const char *created_at = PQgetvalue(reads[q_id], 0, 1);
	long long total = 0;
	for (size_t i = 0; i < cart->n_items; i++)
		total += lines[i].price_cents * cart->items[i].quantity;
	if (!checkout_build_admitted(cart, lines, order_id, created_at, total, &body, &payload)) {
		errbuf_set(err, errlen, "out of memory");
		PQclear(db_exec(conn, "ROLLBACK"));
		status = TX_FAILED;
		goto out;
	}
	char location[64], total_text[32];
	snprintf(location, sizeof(location), "/v1/orders/%s", order_id);
	snprintf(total_text, sizeof(total_text), "%lld", total);

	bool ok = PQenterPipelineMode(conn) == 1;
	for (size_t i = 0; ok && i < cart->n_items; i++) {
		char stock[32];
		snprintf(stock, sizeof(stock), "%lld", lines[i].stock - cart->items[i].quantity);
		const char *p[] = {cart->items[i].sku, stock};
		ok = send_prepared(conn, "checkout_write_stock", 2, p);
		sent++;
	}
	const char *order_params[] = {order_id, cart->customer_id, cart->email, total_text, created_at};
	ok = ok && send_prepared(conn, "checkout_insert_order", 5, order_params);
	sent++;
	for (size_t i = 0; ok && i < cart->n_items; i++) {
		char quantity[16], price[32];
		snprintf(quantity, sizeof(quantity), "%d", cart->items[i].quantity);
		snprintf(price, sizeof(price), "%lld", lines[i].price_cents);
		const char *p[] = {order_id,	      cart->items[i].sku,
				   quantity,	      price,
				   cart->customer_id, lines[i].limit_group[0] ? lines[i].limit_group : NULL};
		ok = send_prepared(conn, "checkout_insert_line", 6, p);
		sent++;
	}
	const char *outbox_params[] = {order_id, payload, created_at};
	if (srv->cfg->events == EVENTS_WAL)
		ok = ok && send_prepared(conn, "checkout_emit_event", 1, outbox_params + 1);
	else
		ok = ok && send_prepared(conn, "checkout_insert_outbox", 3, outbox_params);
	sent++;
	if (key) {
		const char *p[] = {key, "201", body, location};
		ok = ok && send_prepared(conn, "idempotency_store", 4, p);
		sent++;
	}
	ok = ok && send_sql(conn, "COMMIT");
	sent++;
	if (!ok) {
		/* libpq may have flushed part of it: the outcome is unknown */
		errbuf_set(err, errlen, "%s", PQerrorMessage(conn));
		status = TX_LOST;
		goto out;
	}
	status = pipe_finish(conn, sent, NULL, true, &failed, sqlstate, err, errlen);
	metrics_step(STEP_WRITE_COMMIT, monotonic_seconds() - step_started);
	if (status != TX_OK)
		goto out;

	result->status = 201;
	result->outcome = OUTCOME_ADMITTED;
	result->body = body;
	body = NULL;
	snprintf(result->order_id, sizeof(result->order_id), "%s", order_id);
	snprintf(result->location, sizeof(result->location), "%s", location);
out:
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		PQclear(reads[i]);
	free(lines);
	free(skus);
	free(body);
	free(payload);
	return status;
}

/* Fill result with a problem answer. */
static void answer_problem(struct checkout_result *result, unsigned status, enum metrics_outcome outcome,
			   const char *name, const char *detail)
{
	free(result->body);
	result->status = status;
	result->outcome = outcome;
	result->body = problem_text(status, name, detail, NULL);
}

/* The key has an answer: fill result with it (or a mismatch). False when it must be claimed again. */
static bool answer_stored(struct server *srv, PGconn *conn, const char *key, const char *canonical,
			  struct checkout_result *result, char *err, size_t errlen)
{
	struct idempotency_response stored = {0};
	switch (idempotency_lookup(conn, key, canonical, &stored, err, errlen)) {
	case IDEMPOTENCY_REPLAY:
		result->status = stored.status;
		result->outcome = OUTCOME_REPLAYED;
		result->replayed = true;
		result->body = stored.body;
		stored.body = NULL;
		snprintf(result->location, sizeof(result->location), "%s", stored.location ? stored.location : "");
		idempotency_response_free(&stored);
		return true;
	case IDEMPOTENCY_MISMATCH:
		answer_problem(result, 422, OUTCOME_IDEMPOTENCY_CONFLICT, "idempotency-key-mismatch",
			       "This Idempotency-Key was first used with a different request.");
		return true;
	case IDEMPOTENCY_ABSENT:
		return false;
	case IDEMPOTENCY_DB_ERROR:
		break;
	}
	(void)srv;
	answer_problem(result, 503, OUTCOME_UNAVAILABLE, "database-unavailable",
		       "The database cannot be reached; nothing was bought. Retry later.");
	return true;
}

void checkout_run(struct server *srv, PGconn **conn, const struct checkout_request *cart, const char *key,
		  const char *canonical, struct checkout_result *result)
{
	char err[512] = "";
	int attempt = 0, reconnects = 0;
	bool unknown = false; /* an order's COMMIT went unanswered and no later attempt resolved it */
	const char *ctx = result->log_ctx;

	for (;;) {
		if (fiber_deadline_passed()) {
			snprintf(err, sizeof(err), "no answer within the request's %d ms", srv->cfg->request_timeout_ms);
			goto unavailable;
		}
		if (!*conn) {
			double asked = monotonic_seconds();
			*conn = db_pool_acquire(srv->pool, HTTP_DB_WAIT_MS, err, sizeof(err));
			metrics_step(STEP_POOL_WAIT, monotonic_seconds() - asked);
		}
		if (!*conn)
			goto unavailable;
		enum tx_status status = checkout_attempt(srv, *conn, cart, key, canonical, result, err, sizeof(err));
		switch (status) {
		case TX_OK:
			return;
		case TX_KEY_TAKEN:
			if (answer_stored(srv, *conn, key, canonical, result, err, sizeof(err)))
				return;
			if (attempt++ >= srv->cfg->max_retries)
				goto unavailable;
			continue; /* it expired and was purged meanwhile: claim it */
		case TX_KEY_BUSY:
			log_msg(LOG_INFO, ctx, "Idempotency-Key held by another request still running: %s", err);
			answer_problem(result, 409, OUTCOME_IDEMPOTENCY_CONFLICT, "idempotency-key-in-use",
				       "A request with this Idempotency-Key is still being processed; retry "
				       "after Retry-After seconds.");
			return;
		case TX_RETRY:
			if (attempt >= srv->cfg->max_retries) {
				log_msg(LOG_WARN, ctx, "checkout gave up after %d retries: %s", attempt, err);
				answer_problem(result, 503, OUTCOME_CONTENTION, "too-much-contention",
					       "The checkout conflicted with others too often; nothing was bought. "
					       "Retry.");
				return;
			}
			metrics_retry();
			/* full jitter over an exponentially growing window */
			unsigned window = BACKOFF_BASE_MS << (attempt < 10 ? attempt : 10);
			attempt++;
			log_msg(LOG_DEBUG, ctx, "retry %d after: %s", attempt, err);
			fiber_sleep_ms(jitter_ms(window < BACKOFF_CAP_MS ? window : BACKOFF_CAP_MS));
			continue;
		case TX_LOST:
			/*
			 * COMMIT was sent and not confirmed. With a key, the next attempt
			 * learns the outcome: it waits for that transaction if it still
			 * runs, then finds the key answered or free. Without one, a
			 * retry could order twice: say so.
			 */
			db_pool_release(srv->pool, *conn);
			*conn = NULL;
			unknown = true;
			if (!key)
				goto unavailable;
			if (reconnects++ <= srv->cfg->db_pool_size)
				continue;
			goto unavailable;
		case TX_LOST_EARLY:
			/* a pooled connection that died with a database restart: nothing was written */
			db_pool_release(srv->pool, *conn);
			*conn = NULL;
			if (reconnects++ <= srv->cfg->db_pool_size)
				continue;
			goto unavailable;
		case TX_FAILED:
			log_msg(LOG_ERROR, ctx, "checkout failed: %s", err);
			answer_problem(result, 500, OUTCOME_UNAVAILABLE, "internal-error",
				       "The checkout failed; nothing was bought.");
			return;
		}
	}
unavailable:
	if (unknown) {
		log_msg(LOG_WARN, ctx, "outcome unknown: COMMIT was sent, no answer came: %s", err);
		answer_problem(result, 503, OUTCOME_UNKNOWN, "outcome-unknown",
			       key ? "The database did not confirm the commit in time: the order may or may not "
				     "have been placed. Retry with the same Idempotency-Key to learn which."
				   : "The database did not confirm the commit: the order may or may not have been "
				     "placed. Send an Idempotency-Key with checkouts so that a retry is safe.");
		return;
	}
	log_msg(LOG_WARN, ctx, "database unavailable: %s", err);
	answer_problem(result, 503, OUTCOME_UNAVAILABLE, "database-unavailable",
		       "The database cannot be reached; nothing was bought. Retry later.");
}

/* ---- the handler ------------------------------------------------------ */

enum MHD_Result checkout_handle(struct http_request *req, const char *param)
{
	struct server *srv = req->srv;
	struct checkout_request *cart = malloc(sizeof(*cart));
	struct checkout_result result = {0};
	json_t *errors = NULL;
	char *canonical = NULL;
	PGconn *conn = NULL;
	enum MHD_Result ret = MHD_NO;
	const char *key = http_header(req, "Idempotency-Key");
	struct hotqueue_hold turn;

	(void)param;
	hotqueue_hold_init(&turn);
	if (!cart)
		goto out;
	if (key && !validate_idempotency_key(key)) {
		errors = json_pack("[{s:s, s:s}]", "field", "Idempotency-Key", "message",
				   "must be 1 to 255 visible ASCII characters");
		result.outcome = OUTCOME_INVALID;
		ret = http_reply_invalid(req, errors);
		goto out;
	}
	if (!validate_checkout(req->body, req->body_len, cart, &errors)) {
		result.outcome = OUTCOME_INVALID;
		ret = http_reply_invalid(req, errors);
		goto out;
	}
	/* every line about this checkout names its key, so an operator can follow one key */
	if (key)
		snprintf(result.log_ctx, sizeof(result.log_ctx), "key=%s", key);
	else
		snprintf(result.log_ctx, sizeof(result.log_ctx), "customer=%s", cart->customer_id);
	if (key && !(canonical = validate_canonical(cart)))
		goto out;

	/* Checkouts of the same SKU take turns in this process instead of failing each
	 * other in the database (an optimisation: SERIALIZABLE decides). The wait
	 * ends with the request's deadline like every other. */
	for (size_t i = 0; i < cart->n_items; i++)
		hotqueue_hold_add(&turn, cart->items[i].sku);
	double asked = monotonic_seconds();
	bool turn_taken = hotqueue_acquire(srv->hotq, &turn);
	metrics_step(STEP_HOT_SKU_WAIT, monotonic_seconds() - asked);
	if (turn_taken) {
		checkout_run(srv, &conn, cart, key, canonical, &result);
	} else {
		log_msg(LOG_WARN, result.log_ctx, "no turn for these SKUs within the request's %d ms",
			srv->cfg->request_timeout_ms);
		answer_problem(&result, 503, OUTCOME_CONTENTION, "too-much-contention",
			       "Too many checkouts of these items at once; nothing was bought. Retry.");
	}
	hotqueue_release(srv->hotq, &turn); /* the next checkout of these SKUs may go */
	db_pool_release(srv->pool, conn);
	conn = NULL;
	if (!result.body)
		goto out;

	bool retry_later = result.status == 503 || (result.status == 409 && result.outcome == OUTCOME_IDEMPOTENCY_CONFLICT);
	const char *headers[7] = {NULL};
	int h = 0;
	if (result.location[0]) {
		headers[h++] = "Location";
		headers[h++] = result.location;
	}
	if (result.replayed) {
		headers[h++] = "Idempotent-Replayed";
		headers[h++] = "true";
	}
	if (retry_later) {
		headers[h++] = "Retry-After";
		headers[h++] = "1";
	}
	ret = http_reply(req, result.status, result.status >= 400 ? "application/problem+json" : "application/json",
			 result.body, strlen(result.body), headers);
	if (result.status == 201 && !result.replayed) {
		char ctx[64];
		snprintf(ctx, sizeof(ctx), "order=%s", result.order_id);
		log_msg(LOG_INFO, ctx, "admitted customer=%s items=%zu%s%s", cart->customer_id, cart->n_items,
			key ? " " : "", key ? result.log_ctx : "");
	} else {
		log_msg(LOG_INFO, result.log_ctx, "%s customer=%s items=%zu: %u %s",
			result.replayed ? "replayed" : "rejected", cart->customer_id, cart->n_items, result.status,
			metrics_outcome_name(result.outcome));
	}
out:
	hotqueue_release(srv->hotq, &turn);
	metrics_checkout(result.outcome, monotonic_seconds() - req->started);
	db_pool_release(srv->pool, conn);
	free(result.body);
	free(canonical);
	free(cart);
	return ret;
}
