/* idempotency.c - see idempotency.h. */
#include "idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/errbuf.h"

#define HASH "encode(sha256(convert_to($2, 'UTF8')), 'hex')"

const struct db_stmt idempotency_stmts[] = {
    /* a fresh key, or one past its 24 hours: this transaction takes it */
    {"idempotency_claim", "INSERT INTO idempotency_keys AS k (key, request_hash) VALUES ($1, " HASH ") "
			  "ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, status = NULL, "
			  "  response_body = NULL, location = NULL, created_at = now(), "
			  "  expires_at = now() + interval '24 hours' "
			  "WHERE k.expires_at < now() "
			  "RETURNING 1"},
    {"idempotency_store", "UPDATE idempotency_keys SET status = $2, response_body = $3, location = $4 "
			  "WHERE key = $1"},
    {"idempotency_lookup", "SELECT request_hash = " HASH ", status, response_body, location "
			   "FROM idempotency_keys WHERE key = $1 AND expires_at >= now()"},
    {NULL, NULL},
};

static char *dup_value(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

enum idempotency_lookup idempotency_lookup(PGconn *conn, const char *key, const char *canonical,
					   struct idempotency_response *stored, char *err, size_t errlen)
{
	const char *params[] = {key, canonical};
	enum idempotency_lookup result = IDEMPOTENCY_DB_ERROR;

	memset(stored, 0, sizeof(*stored));
	PGresult *res = db_exec_prepared(conn, "idempotency_lookup", 2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errbuf_set(err, errlen, "%s", db_error_message(res, conn));
		goto out;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
		/* purged meanwhile, or a claim left by a server before migration 008 */
		result = IDEMPOTENCY_ABSENT;
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t")) {
		result = IDEMPOTENCY_MISMATCH;
		goto out;
	}
	stored->status = (unsigned)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	stored->body = dup_value(res, 2);
	stored->location = dup_value(res, 3);
	if (!stored->body) {
		idempotency_response_free(stored);
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	result = IDEMPOTENCY_REPLAY;
out:
	PQclear(res);
	return result;
}

void idempotency_response_free(struct idempotency_response *r)
{
	free(r->body);
	free(r->location);
	r->body = r->location = NULL;
}
