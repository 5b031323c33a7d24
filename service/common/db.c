/* db.c - connections, prepared statements and a bounded pool. */
#include "checkout/db.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "checkout/errbuf.h"
#include "checkout/fiber.h"
#include "checkout/log.h"

#define DB_CONNECT_TIMEOUT_S 3
#define DB_CONNECT_TIMEOUT "3"

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

/*
 * Connection keywords every program uses. TCP keepalives and
 * tcp_user_timeout let the kernel notice a peer that vanished (a failed
 * over or unplugged host) in about 15 s instead of the kernel's two hours;
 * client_connection_check_interval makes a backend whose client went away
 * (for example a request that gave up at its deadline, db_result) stop its
 * statement within a second instead of running it to the end, commit
 * included.
 */
#define DB_SESSION_OPTIONS "-c client_connection_check_interval=1000"

/* The options the user gave (in url, else PGOPTIONS), or "": ours are added after them, never instead. */
static void user_options(const char *url, char *out, size_t outlen)
{
	const char *env = getenv("PGOPTIONS");
	snprintf(out, outlen, "%s", env ? env : "");
	PQconninfoOption *parsed = url && *url ? PQconninfoParse(url, NULL) : NULL;
	for (PQconninfoOption *o = parsed; o && o->keyword; o++)
		if (!strcmp(o->keyword, "options") && o->val)
			snprintf(out, outlen, "%s", o->val);
	PQconninfoFree(parsed);
}

static PGconn *connect_with(const char *url, const char *options, const struct db_stmt *const *stmts,
			    char *err, size_t errlen)
{
	char theirs[256], all_options[1024];
	user_options(url, theirs, sizeof(theirs));
	/* the server takes the last -c of a name: the user's settings stay unless they are ours */
	snprintf(all_options, sizeof(all_options), "%s %s %s", theirs, DB_SESSION_OPTIONS,
		 options ? options : "");
	/*
	 * Our defaults first, then the url (expand_dbname=1: a whole connection
	 * string whose keys override the defaults; libpq takes PG* variables for
	 * what neither names), then the merged options, which must come last.
	 */
	const char *keys[] = {
	    "connect_timeout",	"application_name", "keepalives", "keepalives_idle", "keepalives_interval",
	    "keepalives_count", "tcp_user_timeout", "dbname",	  "options",	     NULL};
	const char *vals[] = {DB_CONNECT_TIMEOUT, "checkout",  "1", "5", "2", "3", "15000",
			      url ? url : "",	  all_options, NULL};
	PGconn *conn = PQconnectStartParams(keys, vals, 1);
	if (!conn) {
		errbuf_set(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD || !connect_finish(conn)) {
		if (PQstatus(conn) != CONNECTION_BAD)
			errbuf_set(err, errlen, "cannot connect to the database: timeout expired");
		else
			errbuf_set(err, errlen, "cannot connect to the database: %s", PQerrorMessage(conn));
		goto fail;
	}
	for (size_t t = 0; stmts && stmts[t]; t++) {
		for (const struct db_stmt *s = stmts[t]; s->name; s++) {
			PGresult *res = NULL;
			if (PQsendPrepare(conn, s->name, s->sql, 0, NULL) == 1)
				res = db_finish(conn);
			bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
			if (!ok)
				errbuf_set(err, errlen, "preparing %s: %s", s->name,
					   db_error_message(res, conn));
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

PGconn *db_connect(const char *url, const struct db_stmt *const *stmts, char *err, size_t errlen)
{
	return connect_with(url, NULL, stmts, err, errlen);
}

/*
 * The calling fiber's deadline passed while it waited for the server: shut
 * the socket down, so that libpq sees the connection end (CONNECTION_BAD:
 * every caller already handles a lost connection, and the pool closes it)
 * and the backend sees its client leave (client_connection_check_interval),
 * cancelling what it runs. A transaction whose COMMIT was not yet read
 * therefore rolls back; one whose COMMIT was already sent may still commit,
 * which callers report as an unknown outcome.
 */
static void abandon(PGconn *conn)
{
	log_debug("database did not answer before the deadline; closing the connection");
	shutdown(PQsocket(conn), SHUT_RDWR);
	(void)PQconsumeInput(conn);
}

PGresult *db_result(PGconn *conn)
{
	while (PQisBusy(conn)) {
		int r = fiber_wait_fd(PQsocket(conn), POLLIN, -1);
		if (r == 0) { /* only a fiber's deadline ends a wait without limit */
			abandon(conn);
			break;
		}
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

const char *db_error_message(const PGresult *res, const PGconn *conn)
{
	const char *msg = res ? PQresultErrorMessage(res) : "";
	if (!*msg && conn)
		msg = PQerrorMessage(conn);
	return msg;
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
		errbuf_set(err, errlen, "%s", db_error_message(res, conn));
	PQclear(res);
	return ok;
}

bool db_wal_level_logical(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, "SHOW wal_level");
	bool ok = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		errbuf_set(err, errlen, "reading wal_level: %s", db_error_message(res, conn));
	else if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0)
		snprintf(err, errlen,
			 "the database runs with wal_level = %s; EVENTS=wal needs wal_level = logical (set it in "
			 "postgresql.conf and restart PostgreSQL, or run the server and the relay with EVENTS=outbox)",
			 PQgetvalue(res, 0, 0));
	else
		ok = true;
	PQclear(res);
	return ok;
}

/* A fiber waiting for a connection, on its own stack, in the pool's FIFO. */
struct pool_waiter {
	struct pool_waiter *next;
	struct fiber_queue wake; /* only this fiber parks here */
	PGconn *conn;		 /* handed over by db_pool_release */
	bool slot;		 /* handed the right to open a connection instead */
};

struct db_pool {
	char *url;
	char *options; /* per-session settings ("-c name=value ..."), or NULL */
	const struct db_stmt *const *stmts;
	int size;
	int opened; /* connections that exist, idle or taken, or being opened */
	int n_idle;
	PGconn **idle;
	struct pool_waiter *head, *tail; /* fibers waiting, first come first served */
	unsigned long waits;
};

struct db_pool *db_pool_create(const char *url, int size, const struct db_stmt *const *stmts,
			       const char *options)
{
	struct db_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->url = strdup(url ? url : "");
	pool->options = options ? strdup(options) : NULL;
	pool->idle = calloc((size_t)size, sizeof(PGconn *));
	if (!pool->url || !pool->idle || (options && !pool->options)) {
		free(pool->url);
		free(pool->options);
		free(pool->idle);
		free(pool);
		return NULL;
	}
	pool->size = size;
	pool->stmts = stmts;
	return pool;
}

static void waiter_unlink(struct db_pool *pool, struct pool_waiter *w)
{
	struct pool_waiter **p = &pool->head, *prev = NULL;
	while (*p && *p != w) {
		prev = *p;
		p = &(*p)->next;
	}
	if (!*p)
		return;
	*p = w->next;
	if (pool->tail == w)
		pool->tail = prev;
}

/*
 * Hand conn (or, when conn is NULL, the right to open one) to the first
 * waiter still waiting. Returns false when nobody waits.
 */
static bool hand_over(struct db_pool *pool, PGconn *conn)
{
	while (pool->head) {
		struct pool_waiter *w = pool->head;
		pool->head = w->next;
		if (!pool->head)
			pool->tail = NULL;
		w->next = NULL;
		w->conn = conn;
		w->slot = !conn;
		if (fiber_queue_wake_one(&w->wake))
			return true;
		/* its wait just timed out (it runs next and finds itself unlinked): try the next one */
		w->conn = NULL;
		w->slot = false;
	}
	return false;
}

PGconn *db_pool_acquire(struct db_pool *pool, int wait_ms, char *err, size_t errlen)
{
	PGconn *conn = NULL;

	if (pool->n_idle > 0 && !pool->head) {
		conn = pool->idle[--pool->n_idle];
	} else if (pool->opened < pool->size && !pool->head) {
		pool->opened++;
	} else {
		/* wait in line: a connection given back goes straight to the first waiter */
		struct pool_waiter w = {0};
		pool->waits++;
		if (!fiber_current() || wait_ms <= 0) {
			errbuf_set(err, errlen, "no database connection free in time");
			return NULL;
		}
		if (pool->tail)
			pool->tail->next = &w;
		else
			pool->head = &w;
		pool->tail = &w;
		if (!fiber_queue_wait(&w.wake, wait_ms)) {
			waiter_unlink(pool, &w);
			errbuf_set(err, errlen, "no database connection free in time");
			return NULL;
		}
		conn = w.conn; /* or NULL with w.slot: open a new one in the slot handed over */
	}

	/* an idle connection may have died with a database restart */
	if (conn && PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		conn = NULL;
	}
	if (!conn) {
		conn = connect_with(pool->url, pool->options, pool->stmts, err, errlen);
		if (!conn && !hand_over(pool, NULL))
			pool->opened--;
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
	if (hand_over(pool, conn))
		return;
	if (conn)
		pool->idle[pool->n_idle++] = conn;
	else
		pool->opened--;
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
	free(pool->options);
	free(pool);
}
