/* serverenv.h - start checkout-server on a fresh database for a test. */
#ifndef CHECKOUT_TEST_SERVERENV_H
#define CHECKOUT_TEST_SERVERENV_H

#include <libpq-fe.h>

#include "testenv.h"

struct serverenv {
	struct testenv_proc proc;
	char *db;     /* conninfo of the test's own database */
	PGconn *conn; /* a connection to it for assertions */
	int port;
	char base[64]; /* "http://127.0.0.1:PORT" */
};

/* Create a database, seed it with sql (may be NULL), start the server with
 * extra environment entries (NULL-terminated, may be NULL) and wait for it. */
void serverenv_start(struct serverenv *s, const char *seed_sql, const char *const *env);

/* Stop the server (asserting a clean exit 0) and free everything. */
void serverenv_stop(struct serverenv *s);

/* Make a request to path on the server; fails the test on a transport error. */
void serverenv_call(struct serverenv *s, const char *method, const char *path, const char *const *headers,
		    const char *body, struct http_response *out);

/* The value of one sample line of /metrics ("name{labels}"), or -1 if absent. */
double serverenv_metric(struct serverenv *s, const char *sample);

#endif
