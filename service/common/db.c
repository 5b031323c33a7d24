/* db.c - connections, prepared statements and a bounded pool. */
#include "checkout/db.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/fiber.h"
#include "checkout/log.h"

#define DB_CONNECT_TIMEOUT_S 3
#define DB_CONNECT_TIMEOUT "3"

/* Copy the first line of msg into err. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
	if (!err || !errlen)
		return;
	size_t len = strcspn(msg ? msg : "", "\n");
	snprintf(err, errlen, "%s%.*s", prefix, (int)len, msg ? msg : "");
}

/* Drive a connection started with PQconnectStartParams to the end, waiting through fibers. */
static bool connect_finish(PGconn *conn)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	for (;;) {
		if (st == PGRES_POLLING_OK)
			return true;
		if (st == PGRES_POLLING_FAILED)
			return false;
		/* connect_timeout bounds each wait, as libpq's own blocking connect does */
		int r = fiber_wait_fd(PQsocket(conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
				      DB_CONNECT_TIMEOUT_S * 1000);
		if (r <= 0)
			return false;
		st = PQconnectPoll(conn);
	}
}

PGconn *db_connect(const char *url, const struct db_stmt *const *stmts, char *err, size_t errlen)
{
	const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
	const char *vals[] = {url && *url ? url : NULL, DB_CONNECT_TIMEOUT, "checkout", NULL};
	PGconn *conn = NULL;

	/* expand_dbname=1: dbname may be a whole connection string; later keys are defaults */
	if (!vals[0]) {
		keys[0] = "connect_timeout";
		vals[0] = DB_CONNECT_TIMEOUT;
		keys[1] = "application_name";
		vals[1] = "checkout";
		keys[2] = NULL;
	}
	conn = PQconnectStartParams(keys, vals, 1);
	if (!conn) {
		set_err(err, errlen, "", "out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD || !connect_finish(conn)) {
		if (PQstatus(conn) != CONNECTION_BAD)
			set_err(err, errlen, "cannot connect to the database: ", "timeout expired");
		else
			set_err(err, errlen, "cannot connect to the database: ", PQerrorMessage(conn));
		goto fail;
	}
	for (size_t t = 0; stmts && stmts[t]; t++) {
		for (const struct db_stmt *s = stmts[t]; s->name; s++) {
			PGresult *res = NULL;
			if (PQsendPrepare(conn, s->name, s->sql, 0, NULL) == 1)
				res = db_finish(conn);
			bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
			if (!ok) {
				char prefix[128];
				snprintf(prefix, sizeof(prefix), "preparing %s: ", s->name);
				set_err(err, errlen, prefix,
					res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
			}
			PQclear(res);
			if (!ok)
				goto fail;
		}
	}
	return conn;
fail:
	PQfinish(conn);
	return NULL;
}

PGresult *db_result(PGconn *conn)
{
	while (PQisBusy(conn)) {
		int r = fiber_wait_fd(PQsocket(conn), POLLIN, -1);
		/* on an error PQconsumeInput notices the broken connection and PQgetResult says so */
		if (r < 0 || !PQconsumeInput(conn))
			break;
	}
	return PQgetResult(conn);
}

PGresult *db_finish(PGconn *conn)
{
	PGresult *last = NULL, *res;
	while ((res = db_result(conn))) {
		/* like PQexec: the last result, but an error wins over what follows it */
		if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
			PQclear(res);
			continue;
		}
		PQclear(last);
		last = res;
		if (PQstatus(conn) == CONNECTION_BAD)
			break;
	}
	return last;
}

PGresult *db_exec(PGconn *conn, const char *sql)
{
	/* the simple protocol, like PQexec: sql may hold several statements */
	if (PQsendQuery(conn, sql) != 1)
		return NULL;
	return db_finish(conn);
}

PGresult *db_exec_prepared(PGconn *conn, const char *name, int n, const char *const *params)
{
	if (PQsendQueryPrepared(conn, name, n, params, NULL, NULL, 0) != 1)
		return NULL;
	return db_finish(conn);
}

bool db_wait(const char *url, int seconds, char *err, size_t errlen)
{
	for (int tries = 0;; tries++) {
		PGconn *conn = db_connect(url, NULL, err, errlen);
		if (conn) {
			PQfinish(conn);
			return true;
		}
		if (tries >= seconds * 2)
			return false;
		if (tries == 0)
			log_info("the database does not answer yet; waiting up to %d s", seconds);
		struct timespec half = {0, 500 * 1000 * 1000L};
		nanosleep(&half, NULL);
	}
}

const char *db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

bool db_is_retryable(const PGresult *res)
{
	const char *s = db_sqlstate(res);
	return !strcmp(s, "40001") || !strcmp(s, "40P01");
}

bool db_command(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = db_exec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		set_err(err, errlen, "", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

struct db_pool {
	char *url;
	const struct db_stmt *const *stmts;
	int size;
	int opened; /* connections that exist, idle or taken, or being opened */
	int n_idle;
	PGconn **idle;
	struct fiber_queue freed; /* fibers waiting for a connection */
	unsigned long waits;
};

struct db_pool *db_pool_create(const char *url, int size, const struct db_stmt *const *stmts)
{
	struct db_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->url = strdup(url ? url : "");
	pool->idle = calloc((size_t)size, sizeof(PGconn *));
	if (!pool->url || !pool->idle) {
		free(pool->url);
		free(pool->idle);
		free(pool);
		return NULL;
	}
	pool->size = size;
	pool->stmts = stmts;
	return pool;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

PGconn *db_pool_acquire(struct db_pool *pool, int wait_ms, char *err, size_t errlen)
{
	PGconn *conn = NULL;

	/* first come, first served: a newcomer queues behind fibers already waiting */
	bool counted = false;
	double deadline = now_ms() + wait_ms;
	while ((!counted && pool->freed.head) || (pool->n_idle == 0 && pool->opened >= pool->size)) {
		if (!counted)
			pool->waits++;
		counted = true;
		int left = (int)(deadline - now_ms());
		if (!fiber_current() || left <= 0 || !fiber_queue_wait(&pool->freed, left)) {
			set_err(err, errlen, "", "no database connection free in time");
			return NULL;
		}
	}
	if (pool->n_idle > 0)
		conn = pool->idle[--pool->n_idle];
	else
		pool->opened++;

	/* an idle connection may have died with a database restart */
	if (conn && PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		conn = NULL;
	}
	if (!conn) {
		conn = db_connect(pool->url, pool->stmts, err, errlen);
		if (!conn) {
			pool->opened--;
			fiber_queue_wake_one(&pool->freed);
		}
	}
	return conn;
}

void db_pool_release(struct db_pool *pool, PGconn *conn)
{
	if (!conn)
		return;
	if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE) {
		PQfinish(conn);
		conn = NULL;
	}
	if (conn)
		pool->idle[pool->n_idle++] = conn;
	else
		pool->opened--;
	fiber_queue_wake_one(&pool->freed);
}

unsigned long db_pool_waits(struct db_pool *pool)
{
	return pool->waits;
}

void db_pool_destroy(struct db_pool *pool)
{
	if (!pool)
		return;
	for (int i = 0; i < pool->n_idle; i++)
		PQfinish(pool->idle[i]);
	free(pool->idle);
	free(pool->url);
	free(pool);
}
