/* idempotency.h - Idempotency-Key: remember the first answer for 24 hours.
 *
 * A key is claimed with a lease before the checkout runs (status NULL,
 * locked_until in the future); the answer is stored when it is known (a 201
 * inside the checkout transaction itself, see checkout.c). A 5xx answer
 * releases the key. A key whose lease ran out (the server died mid-request)
 * may be claimed again; an expired key is claimed afresh.
 */
#ifndef CHECKOUT_SERVER_IDEMPOTENCY_H
#define CHECKOUT_SERVER_IDEMPOTENCY_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "checkout/db.h"

/* How long a claimed key stays locked without an answer (seconds). */
#define IDEMPOTENCY_LEASE_SECONDS 60

enum idempotency_claim {
	IDEMPOTENCY_CLAIMED,  /* run the request, then store or release */
	IDEMPOTENCY_REPLAY,   /* answer with the stored response */
	IDEMPOTENCY_MISMATCH, /* the key was used with another body: 422 */
	IDEMPOTENCY_IN_USE,   /* the first request is still running: 409 */
	IDEMPOTENCY_DB_ERROR, /* the database failed: 503 */
};

/* A stored answer. */
struct idempotency_response {
	unsigned status;
	char *body;
	char *location; /* NULL when none */
};

extern const struct db_stmt idempotency_stmts[];

/*
 * Claim key for a request whose canonical text is canonical. On
 * IDEMPOTENCY_REPLAY, *stored holds the answer (free it with
 * idempotency_response_free). On IDEMPOTENCY_DB_ERROR, err says why.
 */
enum idempotency_claim idempotency_claim(PGconn *conn, const char *key, const char *canonical,
					 struct idempotency_response *stored, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Store the answer of a claimed key. Returns false if the database failed. */
bool idempotency_store(PGconn *conn, const char *key, unsigned status, const char *body, const char *location)
    __attribute__((warn_unused_result));

/* Forget a claimed key that has no answer (after a 5xx). Best effort. */
void idempotency_release(PGconn *conn, const char *key);

/* Free a stored answer's strings; safe twice. */
void idempotency_response_free(struct idempotency_response *r);

#endif
