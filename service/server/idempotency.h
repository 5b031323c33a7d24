/* idempotency.h - Idempotency-Key: remember the first answer for 24 hours.
 *
 * The key is claimed inside the checkout transaction itself, as its first
 * write (idempotency_claim, an INSERT into idempotency_keys), and the answer
 * is stored by the same transaction (idempotency_store) before it commits.
 * So a key and its answer exist only together with what the checkout wrote:
 *   - one key yields at most one order, whatever the timing: a second
 *     request with the key waits for the first one's transaction on the
 *     key's unique index (up to lock_timeout: then 409 in-use) and then sees
 *     its answer, or, if it rolled back, claims the key itself;
 *   - there is no lease to expire and nothing to release: a checkout that
 *     did not commit (an error, a lost connection, a server killed, a
 *     deadline) leaves no trace of the key, and the client's retry runs
 *     afresh as soon as the database answers again.
 * A key past its 24 hours is claimed afresh (and purged in batches).
 */
#ifndef CHECKOUT_SERVER_IDEMPOTENCY_H
#define CHECKOUT_SERVER_IDEMPOTENCY_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "checkout/db.h"

/*
 * Statements: idempotency_claim ($1 key, $2 canonical request text; returns
 * one row when this transaction now holds the key, none when an unexpired
 * answer exists), idempotency_store ($1 key, $2 status, $3 body, $4
 * location), idempotency_lookup (see below).
 */
extern const struct db_stmt idempotency_stmts[];

enum idempotency_lookup {
	IDEMPOTENCY_REPLAY,   /* *stored holds the first answer */
	IDEMPOTENCY_MISMATCH, /* the key was first used with another request: 422 */
	IDEMPOTENCY_ABSENT,   /* no answer (it expired and was purged meanwhile): claim again */
	IDEMPOTENCY_DB_ERROR, /* the database failed; err says why */
};

/* A stored answer. */
struct idempotency_response {
	unsigned status;
	char *body;
	char *location; /* NULL when none */
};

/*
 * Read the stored answer of key, outside any transaction, after a claim
 * found one. canonical is the request's canonical text, compared with the
 * first request's. On IDEMPOTENCY_REPLAY the caller frees *stored with
 * idempotency_response_free.
 */
enum idempotency_lookup idempotency_lookup(PGconn *conn, const char *key, const char *canonical,
					   struct idempotency_response *stored, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Free a stored answer's strings; safe twice. */
void idempotency_response_free(struct idempotency_response *r);

#endif
