/* db.c - connections, prepared statements and a bounded pool. */
#include "checkout/db.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/log.h"

/* Copy the first line of msg into err. */
static void set_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
	if (!err || !errlen)
		return;
	size_t len = strcspn(msg ? msg : "", "\n");
	snprintf(err, errlen, "%s%.*s", prefix, (int)len, msg ? msg : "");
}

PGconn *db_connect(const char *url, const struct db_stmt *const *stmts, char *err, size_t errlen)
{
	const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
	const char *vals[] = {url && *url ? url : NULL, "3", "checkout", NULL};
	PGconn *conn = NULL;

	/* expand_dbname=1: dbname may be a whole connection string; later keys are defaults */
	if (!vals[0]) {
		keys[0] = "connect_timeout";
		vals[0] = "3";
		keys[1] = "application_name";
		vals[1] = "checkout";
		keys[2] = NULL;
	}
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		set_err(err, errlen, "", "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		set_err(err, errlen, "cannot connect to the database: ", PQerrorMessage(conn));
		goto fail;
	}
	for (size_t t = 0; stmts && stmts[t]; t++) {
		for (const struct db_stmt *s = stmts[t]; s->name; s++) {
			PGresult *res = PQprepare(conn, s->name, s->sql, 0, NULL);
			bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
			if (!ok) {
				char prefix[128];
				snprintf(prefix, sizeof(prefix), "preparing %s: ", s->name);
				set_err(err, errlen, prefix, PQresultErrorMessage(res));
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
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		set_err(err, errlen, "", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

struct db_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	char *url;
	const struct db_stmt *const *stmts;
	int size;
	int opened;  /* connections that exist, idle or taken */
	int n_idle;
	PGconn **idle;
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
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->freed, NULL);
	pool->size = size;
	pool->stmts = stmts;
	return pool;
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

PGconn *db_pool_acquire(struct db_pool *pool, int wait_ms, char *err, size_t errlen)
{
	PGconn *conn = NULL;
	bool counted = false;
	struct timespec deadline;

	deadline_in(&deadline, wait_ms);
	pthread_mutex_lock(&pool->lock);
	while (pool->n_idle == 0 && pool->opened >= pool->size) {
		if (!counted) {
			pool->waits++;
			counted = true;
		}
		if (pthread_cond_timedwait(&pool->freed, &pool->lock, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&pool->lock);
			set_err(err, errlen, "", "no database connection free in time");
			return NULL;
		}
	}
	if (pool->n_idle > 0)
		conn = pool->idle[--pool->n_idle];
	else
		pool->opened++;
	pthread_mutex_unlock(&pool->lock);

	/* an idle connection may have died with a database restart */
	if (conn && PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		conn = NULL;
	}
	if (!conn) {
		conn = db_connect(pool->url, pool->stmts, err, errlen);
		if (!conn) {
			pthread_mutex_lock(&pool->lock);
			pool->opened--;
			pthread_cond_signal(&pool->freed);
			pthread_mutex_unlock(&pool->lock);
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
	pthread_mutex_lock(&pool->lock);
	if (conn)
		pool->idle[pool->n_idle++] = conn;
	else
		pool->opened--;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->lock);
}

unsigned long db_pool_waits(struct db_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	unsigned long w = pool->waits;
	pthread_mutex_unlock(&pool->lock);
	return w;
}

void db_pool_destroy(struct db_pool *pool)
{
	if (!pool)
		return;
	for (int i = 0; i < pool->n_idle; i++)
		PQfinish(pool->idle[i]);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->freed);
	free(pool->idle);
	free(pool->url);
	free(pool);
}
