/* idempotency.c - see idempotency.h. */
#include "idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH "encode(sha256(convert_to($2, 'UTF8')), 'hex')"
#define STR_(x) #x
#define STR(x) STR_(x)

const struct db_stmt idempotency_stmts[] = {
    /* a fresh key, an expired one, or one whose holder died: take it */
    {"idempotency_claim",
     "INSERT INTO idempotency_keys AS k (key, request_hash, locked_until) "
     "VALUES ($1, " HASH ", now() + interval '" STR(
	 IDEMPOTENCY_LEASE_SECONDS) " seconds') "
				    "ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
				    "status = NULL, "
				    "  response_body = NULL, location = NULL, locked_until = "
				    "EXCLUDED.locked_until, "
				    "  created_at = now(), expires_at = now() + interval '24 hours' "
				    "WHERE k.expires_at < now() OR (k.status IS NULL AND k.locked_until < "
				    "now()) "
				    "RETURNING 1"},
    {"idempotency_lookup", "SELECT request_hash = " HASH ", status, response_body, location "
			   "FROM idempotency_keys WHERE key = $1"},
    {"idempotency_store",
     "UPDATE idempotency_keys SET status = $2, response_body = $3, location = $4, locked_until = NULL "
     "WHERE key = $1"},
    {"idempotency_release", "DELETE FROM idempotency_keys WHERE key = $1 AND status IS NULL"},
    {NULL, NULL},
};

static char *dup_value(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

enum idempotency_claim idempotency_claim(PGconn *conn, const char *key, const char *canonical,
					 struct idempotency_response *stored, char *err, size_t errlen)
{
	const char *params[] = {key, canonical};
	enum idempotency_claim result = IDEMPOTENCY_DB_ERROR;
	PGresult *res = NULL;

	memset(stored, 0, sizeof(*stored));
	if (err && errlen)
		err[0] = '\0';
	res = db_exec_prepared(conn, "idempotency_claim", 2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto out;
	if (PQntuples(res) == 1) {
		result = IDEMPOTENCY_CLAIMED;
		goto out;
	}
	PQclear(res);
	res = db_exec_prepared(conn, "idempotency_lookup", 2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		goto out;
	if (PQntuples(res) != 1) {
		/* released between the two statements: the holder failed; let the client retry */
		result = IDEMPOTENCY_IN_USE;
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t")) {
		result = IDEMPOTENCY_MISMATCH;
		goto out;
	}
	if (PQgetisnull(res, 0, 1)) {
		result = IDEMPOTENCY_IN_USE;
		goto out;
	}
	stored->status = (unsigned)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	stored->body = dup_value(res, 2);
	stored->location = dup_value(res, 3);
	if (!stored->body) {
		idempotency_response_free(stored);
		snprintf(err, errlen, "out of memory");
		result = IDEMPOTENCY_DB_ERROR;
		goto out;
	}
	result = IDEMPOTENCY_REPLAY;
out:
	if (result == IDEMPOTENCY_DB_ERROR && err && !*err)
		snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	return result;
}

bool idempotency_store(PGconn *conn, const char *key, unsigned status, const char *body, const char *location)
{
	char code[16];
	snprintf(code, sizeof(code), "%u", status);
	const char *params[] = {key, code, body, location && *location ? location : NULL};
	PGresult *res = db_exec_prepared(conn, "idempotency_store", 4, params);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	return ok;
}

void idempotency_release(PGconn *conn, const char *key)
{
	const char *params[] = {key};
	PQclear(db_exec_prepared(conn, "idempotency_release", 1, params));
}

void idempotency_response_free(struct idempotency_response *r)
{
	free(r->body);
	free(r->location);
	r->body = r->location = NULL;
}
