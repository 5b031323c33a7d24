/* checkout.c - THE checkout transaction, and the POST /v1/checkout handler.
 *
 * One transaction at the configured isolation level (SERIALIZABLE unless a
 * demonstration asks otherwise):
 *   1. read price, stock and limit group of every SKU in the cart, and what
 *      this customer already bought in each group (one statement);
 *   2. decide in C;
 *   3. write the new stock levels (in SKU order), the order, its lines, the
 *      outbox row for order.admitted (and the idempotent answer), commit.
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

#include "checkout/fiber.h"
#include "checkout/hotqueue.h"
#include "checkout/log.h"
#include "idempotency.h"

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
		      "WHERE p.sku = ANY ($1::text[])"},
    {"checkout_order_id", "SELECT uuid_v7()::text, "
			  "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"},
    {"checkout_write_stock", "UPDATE products SET stock = $2, updated_at = now() WHERE sku = $1"},
    {"checkout_insert_order",
     "INSERT INTO orders (id, customer_id, email, total_cents, created_at) VALUES ($1, $2, $3, $4, $5)"},
    {"checkout_insert_line",
     "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id, limit_group) "
     "VALUES ($1, $2, $3, $4, $5, $6)"},
    {"checkout_insert_outbox", "INSERT INTO outbox (event_id, event_type, aggregate_id, payload, created_at) "
			       "VALUES (uuid_v7(), 'order.admitted', $1, $2::jsonb, $3)"},
    {NULL, NULL},
};

/* How one attempt of the transaction ended. */
enum tx_status {
	TX_OK,	       /* committed (admitted, or a rejection decided) */
	TX_RETRY,      /* 40001/40P01: run the whole transaction again */
	TX_LOST_EARLY, /* the connection died before any write was sent: safe to retry */
	TX_LOST,       /* the connection died during the writes: outcome unknown */
	TX_FAILED,     /* any other error */
};

/* What the read found for one cart line. */
struct line_state {
	bool found;
	long long price_cents;
	long long stock;
	char limit_group[VALIDATE_ID_BUF]; /* "" when none */
	long long per_customer;
	long long bought;
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

static void set_err(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%.*s", (int)strcspn(msg ? msg : "", "\n"), msg ? msg : "");
}

/*
 * Sync the pipeline and read the results of its n queries. Tuple results go
 * into keep[i] when keep is not NULL (caller clears them). Leaves pipeline
 * mode, and rolls back a transaction left open by an error.
 */
static enum tx_status pipe_finish(PGconn *conn, int n, PGresult **keep, bool writes, char *err, size_t errlen)
{
	enum tx_status status = TX_OK;
	int query = 0;

	if (PQpipelineSync(conn) != 1) {
		set_err(err, errlen, PQerrorMessage(conn));
		status = TX_LOST;
		goto out;
	}
	for (;;) {
		PGresult *res = db_result(conn);
		if (!res) {
			if (PQstatus(conn) == CONNECTION_BAD || ++query > n) {
				if (status == TX_OK || status == TX_FAILED)
					set_err(err, errlen, PQerrorMessage(conn));
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
			status = db_is_retryable(res) ? TX_RETRY : TX_FAILED;
			set_err(err, errlen, PQresultErrorMessage(res));
		}
		if (st == PGRES_TUPLES_OK && keep && query < n && !keep[query])
			keep[query] = res;
		else
			PQclear(res);
	}
out:
	if (status == TX_LOST || PQstatus(conn) == CONNECTION_BAD)
		return writes ? TX_LOST : TX_LOST_EARLY;
	if (PQexitPipelineMode(conn) != 1)
		return writes ? TX_LOST : TX_LOST_EARLY;
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

static char *problem_text(unsigned status, const char *name, const char *detail, json_t *extra)
{
	json_t *problem = http_problem(status, name, detail);
	if (problem && extra)
		json_object_update(problem, extra);
	json_decref(extra);
	char *text = problem ? json_dumps(problem, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(problem);
	return text;
}

/*
 * Decide whether the cart can be admitted. Returns true when it can;
 * otherwise fills result with the rejection (422 unknown-sku, 409
 * out-of-stock, 409 purchase-limit-exceeded, checked in that order).
 */
static bool decide(const struct checkout_request *cart, const struct line_state *lines,
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
 * The 201 body and the outbox payload (the same object without "status"),
 * as JSON text. Returns false when out of memory.
 */
static bool build_admitted(const struct checkout_request *cart, const struct line_state *lines,
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
	*payload = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	return *body && *payload;
}

/* ---- the transaction -------------------------------------------------- */

/* One attempt of the whole transaction on conn. */
static enum tx_status checkout_attempt(struct server *srv, PGconn *conn, const struct checkout_request *cart,
				       const char *idempotency_key, struct checkout_result *result, char *err,
				       size_t errlen)
{
	enum tx_status status = TX_FAILED;
	PGresult *reads[4] = {NULL};
	struct line_state *lines = NULL;
	char *skus = NULL, *body = NULL, *payload = NULL;
	char begin[64];
	int sent = 0;

	lines = calloc(cart->n_items, sizeof(*lines));
	skus = sku_array(cart);
	if (!lines || !skus) {
		set_err(err, errlen, "out of memory");
		goto out;
	}

	/* 1. read: BEGIN, the cart's products, a new order id and the time, in one round trip */
	snprintf(begin, sizeof(begin), "BEGIN ISOLATION LEVEL %s", config_isolation_sql(srv->cfg->isolation));
	const char *read_params[] = {skus, cart->customer_id};
	double step_started = http_now();
	if (PQenterPipelineMode(conn) != 1 || !send_sql(conn, begin) ||
	    !send_prepared(conn, "checkout_settings", 0, NULL) ||
	    !send_prepared(conn, "checkout_read", 2, read_params) ||
	    !send_prepared(conn, "checkout_order_id", 0, NULL)) {
		/* a send fails only on a broken connection; the pool closes it on release */
		set_err(err, errlen, PQerrorMessage(conn));
		status = TX_LOST_EARLY;
		goto out;
	}
	status = pipe_finish(conn, 4, reads, false, err, errlen);
	metrics_step(STEP_READ, http_now() - step_started);
	if (status != TX_OK)
		goto out;
	if (!reads[2] || !reads[3] || PQntuples(reads[3]) != 1) {
		set_err(err, errlen, "unexpected result from the read");
		status = TX_FAILED;
		PQclear(db_exec(conn, "ROLLBACK"));
		goto out;
	}
	collect_lines(cart, reads[2], lines);

	/* a demonstration setting: widen the window between read and write */
	if (srv->cfg->race_pause_ms > 0)
		fiber_sleep_ms((unsigned)srv->cfg->race_pause_ms);

	/* 2. decide */
	step_started = http_now();
	if (!decide(cart, lines, result)) {
		/* commit the read-only transaction: under SSI even a rejection's reads must hold up */
		PGresult *res = db_exec(conn, "COMMIT");
		metrics_step(STEP_WRITE_COMMIT, http_now() - step_started);
		if (PQresultStatus(res) == PGRES_COMMAND_OK)
			status = TX_OK;
		else if (PQstatus(conn) == CONNECTION_BAD)
			status = TX_LOST_EARLY;
		else
			status = db_is_retryable(res) ? TX_RETRY : TX_FAILED;
		if (status != TX_OK) {
			set_err(err, errlen, PQresultErrorMessage(res));
			free(result->body);
			result->body = NULL;
		}
		PQclear(res);
		goto out;
	}

	/* 3. write: new stock levels in SKU order, order, lines, outbox, answer, COMMIT */
	const char *order_id = PQgetvalue(reads[3], 0, 0);
	const char *created_at = PQgetvalue(reads[3], 0, 1);
	long long total = 0;
	for (size_t i = 0; i < cart->n_items; i++)
		total += lines[i].price_cents * cart->items[i].quantity;
	if (!build_admitted(cart, lines, order_id, created_at, total, &body, &payload)) {
		set_err(err, errlen, "out of memory");
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
	ok = ok && send_prepared(conn, "checkout_insert_outbox", 3, outbox_params);
	sent++;
	if (idempotency_key) {
		const char *p[] = {idempotency_key, "201", body, location};
		ok = ok && send_prepared(conn, "idempotency_store", 4, p);
		sent++;
	}
	ok = ok && send_sql(conn, "COMMIT");
	sent++;
	if (!ok) {
		set_err(err, errlen, PQerrorMessage(conn));
		status = TX_LOST;
		goto out;
	}
	status = pipe_finish(conn, sent, NULL, true, err, errlen);
	metrics_step(STEP_WRITE_COMMIT, http_now() - step_started);
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

void checkout_run(struct server *srv, PGconn **conn, const struct checkout_request *cart,
		  const char *idempotency_key, struct checkout_result *result)
{
	char err[512] = "";
	int attempt = 0, reconnects = 0;

	memset(result, 0, sizeof(*result));
	for (;;) {
		if (!*conn) {
			double asked = http_now();
			*conn = db_pool_acquire(srv->pool, HTTP_DB_WAIT_MS, err, sizeof(err));
			metrics_step(STEP_POOL_WAIT, http_now() - asked);
		}
		if (!*conn)
			goto unavailable;
		enum tx_status status =
		    checkout_attempt(srv, *conn, cart, idempotency_key, result, err, sizeof(err));
		switch (status) {
		case TX_OK:
			return;
		case TX_RETRY:
			if (attempt >= srv->cfg->max_retries) {
				log_msg(LOG_WARN, cart->customer_id, "checkout gave up after %d retries: %s",
					attempt, err);
				result->status = 503;
				result->outcome = OUTCOME_CONTENTION;
				result->body = problem_text(
				    503, "too-much-contention",
				    "The checkout conflicted with others too often; retry.", NULL);
				return;
			}
			metrics_retry();
			/* full jitter over an exponentially growing window */
			unsigned window = BACKOFF_BASE_MS << (attempt < 10 ? attempt : 10);
			attempt++;
			log_msg(LOG_DEBUG, cart->customer_id, "retry %d after: %s", attempt, err);
			fiber_sleep_ms(jitter_ms(window < BACKOFF_CAP_MS ? window : BACKOFF_CAP_MS));
			continue;
		case TX_LOST_EARLY:
			/* a pooled connection that died with a database restart: nothing was written */
			db_pool_release(srv->pool, *conn);
			*conn = NULL;
			if (reconnects++ <= srv->cfg->db_pool_size)
				continue;
			goto unavailable;
		case TX_LOST:
			db_pool_release(srv->pool, *conn);
			*conn = NULL;
			goto unavailable;
		case TX_FAILED:
			log_msg(LOG_ERROR, cart->customer_id, "checkout failed: %s", err);
			result->status = 500;
			result->outcome = OUTCOME_UNAVAILABLE;
			result->body = problem_text(500, "internal-error",
						    "The checkout failed; nothing was bought.", NULL);
			return;
		}
	}
unavailable:
	log_msg(LOG_WARN, cart->customer_id, "database unavailable: %s", err);
	result->status = 503;
	result->outcome = OUTCOME_UNAVAILABLE;
	result->body =
	    problem_text(503, "database-unavailable", "The database cannot be reached; retry later.", NULL);
}

/* ---- the handler ------------------------------------------------------ */

/* Claim the key, reconnecting past connections that died with a database restart. */
static enum idempotency_claim claim_key(struct server *srv, PGconn **conn, const char *key,
					const char *canonical, struct idempotency_response *stored, char *err,
					size_t errlen)
{
	for (int tries = 0; tries <= srv->cfg->db_pool_size + 1; tries++) {
		if (!*conn)
			*conn = db_pool_acquire(srv->pool, HTTP_DB_WAIT_MS, err, errlen);
		if (!*conn)
			return IDEMPOTENCY_DB_ERROR;
		enum idempotency_claim c = idempotency_claim(*conn, key, canonical, stored, err, errlen);
		if (c != IDEMPOTENCY_DB_ERROR || PQstatus(*conn) != CONNECTION_BAD)
			return c;
		db_pool_release(srv->pool, *conn);
		*conn = NULL;
	}
	return IDEMPOTENCY_DB_ERROR;
}

enum MHD_Result checkout_handle(struct http_request *req)
{
	struct server *srv = req->srv;
	struct checkout_request *cart = malloc(sizeof(*cart));
	struct checkout_result result = {0};
	struct idempotency_response stored = {0};
	json_t *errors = NULL;
	char *canonical = NULL;
	PGconn *conn = NULL;
	enum MHD_Result ret = MHD_NO;
	const char *key = http_header(req, "Idempotency-Key");
	bool claimed = false;
	char err[512] = "";
	struct hotqueue_hold turn;

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

	if (key) {
		canonical = validate_canonical(cart);
		if (!canonical)
			goto out;
		switch (claim_key(srv, &conn, key, canonical, &stored, err, sizeof(err))) {
		case IDEMPOTENCY_CLAIMED:
			claimed = true;
			break;
		case IDEMPOTENCY_REPLAY: {
			const char *headers[] = {"Idempotent-Replayed", "true",
						 stored.location ? "Location" : NULL, stored.location, NULL};
			result.outcome = OUTCOME_REPLAYED;
			ret =
			    http_reply(req, stored.status,
				       stored.status >= 400 ? "application/problem+json" : "application/json",
				       stored.body, strlen(stored.body), headers);
			goto out;
		}
		case IDEMPOTENCY_MISMATCH:
			result.outcome = OUTCOME_IDEMPOTENCY_CONFLICT;
			ret = http_reply_problem(
			    req, 422, "idempotency-key-mismatch",
			    "This Idempotency-Key was first used with a different request.", NULL);
			goto out;
		case IDEMPOTENCY_IN_USE:
			result.outcome = OUTCOME_IDEMPOTENCY_CONFLICT;
			ret = http_reply_problem(
			    req, 409, "idempotency-key-in-use",
			    "A request with this Idempotency-Key is still being processed.", NULL);
			goto out;
		case IDEMPOTENCY_DB_ERROR:
			log_msg(LOG_WARN, key, "idempotency claim failed: %s", err);
			result.outcome = OUTCOME_UNAVAILABLE;
			ret = http_reply_unavailable(req, "database-unavailable",
						     "The database cannot be reached.");
			goto out;
		}
	}

	/* Checkouts of the same SKU take turns in this process instead of failing each
	 * other in the database (an optimisation: SERIALIZABLE decides). Nobody waits
	 * for a turn holding a pooled connection (the claim above has committed), so
	 * the holder of a turn always finds one. */
	for (size_t i = 0; i < cart->n_items; i++)
		hotqueue_hold_add(&turn, cart->items[i].sku);
	if (srv->hotq && conn) {
		db_pool_release(srv->pool, conn);
		conn = NULL;
	}
	if (srv->hotq) {
		double asked = http_now();
		hotqueue_acquire(srv->hotq, &turn);
		metrics_step(STEP_HOT_SKU_WAIT, http_now() - asked);
	}
	checkout_run(srv, &conn, cart, claimed ? key : NULL, &result);
	if (!result.body)
		goto out;

	if (claimed && result.status >= 500 && conn)
		idempotency_release(conn, key);
	else if (claimed && result.status != 201 && conn &&
		 !idempotency_store(conn, key, result.status, result.body, NULL))
		log_msg(LOG_WARN, key, "could not store the idempotent answer");
	hotqueue_release(srv->hotq, &turn); /* the next checkout of these SKUs may go */

	const char *headers[] = {result.status == 201	? "Location"
				 : result.status == 503 ? "Retry-After"
							: NULL,
				 result.status == 201 ? result.location : "1", NULL};
	ret = http_reply(req, result.status,
			 result.status >= 400 ? "application/problem+json" : "application/json", result.body,
			 strlen(result.body), headers);
	if (result.status == 201) {
		char ctx[64];
		snprintf(ctx, sizeof(ctx), "order=%s", result.order_id);
		log_msg(LOG_INFO, ctx, "admitted customer=%s items=%zu", cart->customer_id, cart->n_items);
	} else {
		log_msg(LOG_INFO, NULL, "rejected customer=%s items=%zu: %u %s", cart->customer_id,
			cart->n_items, result.status, metrics_outcome_name(result.outcome));
	}
out:
	hotqueue_release(srv->hotq, &turn);
	metrics_checkout(result.outcome, http_now() - req->started);
	db_pool_release(srv->pool, conn);
	idempotency_response_free(&stored);
	free(result.body);
	free(canonical);
	free(cart);
	return ret;
}
