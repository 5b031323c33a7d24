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
	char location[64]; /* "" unless admitted */
};

extern const struct db_stmt checkout_stmts[];

/*
 * Admit or reject cart in one transaction at the configured isolation level,
 * retrying the whole transaction (reads and decision included) after
 * 40001/40P01 up to cfg->max_retries times with jittered exponential
 * backoff. *conn is a pooled connection or NULL (then one is acquired); it
 * may be replaced after a lost connection, and the caller releases it. When
 * idempotency_key is not NULL, an admitted answer is stored for it inside the
 * same transaction. Always fills result (5xx when the database failed); the
 * caller frees result->body.
 */
void checkout_run(struct server *srv, PGconn **conn, const struct checkout_request *cart,
		  const char *idempotency_key, struct checkout_result *result);

/* The POST /v1/checkout handler (the body is complete and typed JSON). */
enum MHD_Result checkout_handle(struct http_request *req);

#endif
