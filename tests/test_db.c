/* test_db.c - the connection pool: first come, first served, against a real database. */
#include "checkout/db.h"
#include "checkout/fiber.h"
#include "testenv.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pool_case {
	struct db_pool *pool;
	atomic_int a_done, b_done;
	atomic_bool a_again; /* A's immediate re-acquire (no wait) got a connection */
	atomic_bool b_got;   /* B, who waited, got one */
};

/* A holds the only connection, gives it back while B waits, and at once asks again without waiting. */
static void fiber_a(void *arg)
{
	struct pool_case *c = arg;
	char err[256];
	PGconn *conn = db_pool_acquire(c->pool, 1000, err, sizeof(err));
	cr_assert_not_null(conn, "%s", err);
	fiber_sleep_ms(200); /* B queues meanwhile */
	db_pool_release(c->pool, conn);
	conn = db_pool_acquire(c->pool, 0, err, sizeof(err));
	atomic_store(&c->a_again, conn != NULL);
	db_pool_release(c->pool, conn);
	atomic_store(&c->a_done, 1);
}

static void fiber_b(void *arg)
{
	struct pool_case *c = arg;
	char err[256];
	fiber_sleep_ms(50); /* after A took the connection */
	PGconn *conn = db_pool_acquire(c->pool, 2000, err, sizeof(err));
	atomic_store(&c->b_got, conn != NULL);
	fiber_sleep_ms(50);
	db_pool_release(c->pool, conn);
	atomic_store(&c->b_done, 1);
}

Test(db, a_released_connection_goes_to_the_first_waiter_not_a_newcomer)
{
	char *url = testenv_db_new();
	char err[256];
	struct pool_case c = {0};
	c.pool = db_pool_create(url, 1, NULL, NULL);
	cr_assert_not_null(c.pool);
	struct fiber_loop *l = fiber_loop_start(err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	cr_assert(fiber_spawn(l, fiber_a, &c));
	cr_assert(fiber_spawn(l, fiber_b, &c));
	for (int i = 0; i < 500 && !(atomic_load(&c.a_done) && atomic_load(&c.b_done)); i++)
		usleep(10000);
	cr_assert(atomic_load(&c.a_done) && atomic_load(&c.b_done), "the fibers did not finish");
	cr_expect(atomic_load(&c.b_got), "the fiber that waited got no connection");
	cr_expect(!atomic_load(&c.a_again), "a newcomer took the connection from the fiber that waited");
	fiber_loop_stop(l);
	db_pool_destroy(c.pool);
	free(url);
}

/* The text of SHOW name on conn. */
static char *show(PGconn *conn, const char *name)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SHOW %s", name);
	PGresult *res = PQexec(conn, sql);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	char *v = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

Test(db, the_sessions_keep_the_users_options_and_add_their_own)
{
	char *db = testenv_db_new();
	char url[512], err[256];
	snprintf(url, sizeof(url),
		 "%s options='-c work_mem=1234kB -c statement_timeout=99' application_name=mine", db);
	struct db_pool *pool = db_pool_create(url, 1, NULL, "-c statement_timeout=4321");
	cr_assert_not_null(pool);
	PGconn *conn = db_pool_acquire(pool, 0, err, sizeof(err));
	cr_assert_not_null(conn, "%s", err);
	char *v[] = {show(conn, "work_mem"), show(conn, "statement_timeout"),
		     show(conn, "client_connection_check_interval"), show(conn, "application_name")};
	cr_expect_str_eq(v[0], "1234kB", "the user's setting was dropped");
	cr_expect_str_eq(v[1], "4321ms", "the pool's own deadline must win");
	cr_expect_str_eq(v[2], "1s");
	cr_expect_str_eq(v[3], "mine", "the url's keys override the defaults");
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		free(v[i]);
	db_pool_release(pool, conn);
	db_pool_destroy(pool);
	free(db);
}
