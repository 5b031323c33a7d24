/* checkout.h - POST /v1/checkout and THE checkout transaction.
 *
 * checkout_run() is the one SERIALIZABLE transaction that admits or rejects
 * a cart; checkout_handle() is the HTTP handler around it (validation,
 * Idempotency-Key, reply).
 */
#ifndef CHECKOUT_SERVER_CHECKOUT_H
#define CHECKOUT_SERVER_CHECKOUT_H

#include <libpq-fe.h>

#include "checkout/db.h"
#include "http.h"
#include "validate.h"

/* What a checkout ended with: the HTTP answer and the outcome label. */
struct checkout_result {
	unsigned status;
	char *body; /* JSON text: the 201 body or a problem; malloc'd */
	enum metrics_outcome outcome;
	char order_id[40]; /* "" unless admitted */
	char location[64]; /* "" unless admitted (or replayed with one) */
	bool replayed;	   /* the stored answer of the Idempotency-Key */
	char log_ctx[300]; /* what log lines about this checkout start with: "key=..." or "customer=..." */
};

/* What the read found for one cart line (from PostgreSQL, or checkout-naive's view). */
struct line_state {
	bool found;
	long long price_cents;
	long long stock;
	char limit_group[VALIDATE_ID_BUF]; /* "" when none */
	long long per_customer;
	long long bought;
};

extern const struct db_stmt checkout_stmts[];

/*
 * Decide whether cart can be admitted, given lines[i] for its items[i].
 * Returns true when it can; otherwise fills result with the rejection (422
 * unknown-sku, 409 out-of-stock, 409 purchase-limit-exceeded, checked in
 * that order). checkout-naive decides with the same function.
 */
bool checkout_decide(const struct checkout_request *cart, const struct line_state *lines,
		     struct checkout_result *result) __attribute__((warn_unused_result));

/*
 * The 201 body and the order.admitted payload (the same object without
 * "status", each line with its stock_after) as malloc'd JSON text. Returns
 * false when out of memory (the caller frees both either way).
 */
bool checkout_build_admitted(const struct checkout_request *cart, const struct line_state *lines,
			     const char *order_id, const char *created_at, long long total, char **body,
			     char **payload) __attribute__((warn_unused_result));

/*
 * Admit or reject cart in one transaction at the configured isolation level,
 * retrying the whole transaction (reads and decision included) after
 * 40001/40P01 up to cfg->max_retries times with jittered exponential
 * backoff, and after a lost connection, until the fiber's deadline. *conn is
 * a pooled connection or NULL (then one is acquired); it may be replaced
 * after a lost connection, and the caller releases it. When key is not NULL
 * (canonical: the request's canonical text), the transaction claims the key
 * and stores its answer (idempotency.h); a key already answered gives that
 * answer (result->replayed) or 422 mismatch, one held by a running
 * transaction 409 in-use. result->log_ctx is set by the caller. Always fills
 * result (503 database-unavailable or outcome-unknown when the database
 * failed); the caller frees result->body.
 */
void checkout_run(struct server *srv, PGconn **conn, const struct checkout_request *cart, const char *key,
		  const char *canonical, struct checkout_result *result);

/* The POST /v1/checkout handler (the body is complete and typed JSON; param is ""). */
enum MHD_Result checkout_handle(struct http_request *req, const char *param);

#endif
