/* End to end: POST /v1/checkout -> outbox -> checkout-relay -> the topic ->
 * each of the three workers applied the order. Built only when the server
 * and the relay are in the tree. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testenv.h"

enum { N_PROGS = 6 };
static struct testenv_proc broker, procs[N_PROGS];

/* Criterion ignores assertions in a suite's .fini: what each test leaves running
 * is stopped, and its exit status checked, at the end of the test itself
 * (testenv_stop_clean: a leak the sanitizer reports at exit fails the test).
 * The .fini stops whatever a test that failed early left behind. */
static void stop_cleanly(void)
{
	for (int i = 0; i < N_PROGS; i++)
		testenv_stop_clean(&procs[i]);
	testenv_stop_clean(&broker);
}

TestSuite(workers_e2e, .fini = stop_cleanly, .timeout = 120);

static long wait_value(PGconn *conn, const char *sql, long want)
{
	long v = -1;
	for (int waited = 0; waited < 30000; waited += 50) {
		v = testenv_query_long(conn, sql);
		if (v == want)
			break;
		testenv_sleep_ms(50);
	}
	return v;
}

Test(workers_e2e, an_admitted_checkout_reaches_every_worker_through_the_relay)
{
	enum { N = 3 };
	char bootstrap[256], db_env[256], brokers_env[300], listen_env[64], spool_env[600], url[128];
	char spool[512];
	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	char *db = testenv_db_new();
	PGconn *conn = testenv_db_connect(db);
	testenv_exec(conn, "INSERT INTO products (sku, name, price_cents, stock) VALUES"
			   " ('apple', 'Apple', 120, 100), ('pear', 'Pear', 80, 100)");
	int port = testenv_free_port();
	mkdir(CHECKOUT_TEST_TMP, 0755);
	snprintf(spool, sizeof(spool), "%s/e2e-mail-%d", CHECKOUT_TEST_TMP, (int)getpid());
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", db);
	snprintf(brokers_env, sizeof(brokers_env), "KAFKA_BROKERS=%s", bootstrap);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", port);
	snprintf(spool_env, sizeof(spool_env), "MAIL_SPOOL=%s", spool);
	const char *env[] = {db_env, brokers_env, listen_env, spool_env, NULL};

	testenv_spawn(&procs[0], "checkout-server", NULL, env);
	cr_assert(testenv_wait_port(port, 10000), "the server did not listen; see %s", procs[0].log_path);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/checkout", port);
	for (int i = 0; i < N; i++) {
		char body[256];
		struct http_response r;
		snprintf(body, sizeof(body),
			 "{\"customer_id\":\"e2e-%d\",\"email\":\"e2e%d@example.com\",\"items\":"
			 "[{\"sku\":\"apple\",\"quantity\":%d},{\"sku\":\"pear\",\"quantity\":1}]}",
			 i, i, i + 1);
		cr_assert(http_call("POST", url, NULL, body, &r));
		cr_assert_eq(r.status, 201, "%s", r.body);
		http_response_free(&r);
	}
	testenv_spawn(&procs[1], "checkout-relay", NULL, env);
	testenv_spawn(&procs[2], "checkout-email", NULL, env);
	testenv_spawn(&procs[3], "checkout-inventory", NULL, env);
	testenv_spawn(&procs[4], "checkout-analytics", NULL, env);

	/* each worker applied exactly the events the checkout wrote to its outbox */
	const char *schemas[] = {"email", "inventory", "analytics"};
	for (int w = 0; w < 3; w++) {
		char sql[256];
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM outbox o JOIN %s.inbox i ON i.event_id = o.event_id::text "
			 "AND i.order_id::text = o.aggregate_id",
			 schemas[w]);
		cr_assert_eq(wait_value(conn, sql, N), N, "%s applied every admitted order; see %s",
			     schemas[w], procs[2 + w].log_path);
	}
	cr_expect_eq(
	    testenv_query_long(conn, "SELECT count(*) FROM email.sent s JOIN orders o ON o.id = s.order_id "
				     "AND o.email = s.recipient"),
	    N);
	for (int i = 0; i < N; i++) {
		char path[700];
		PGresult *res = PQexec(conn, "SELECT event_id FROM outbox WHERE event_type = 'order.admitted' ORDER BY id");
		cr_assert_eq(PQntuples(res), N);
		snprintf(path, sizeof(path), "%s/%s.eml", spool, PQgetvalue(res, i, 0));
		PQclear(res);
		cr_expect_eq(access(path, R_OK), 0, "%s is in the spool", path);
	}
	cr_expect_eq(testenv_query_long(
			 conn,
			 "SELECT count(*) FROM ("
			 " (SELECT sku, sum(quantity)::bigint FROM order_lines GROUP BY sku"
			 "  EXCEPT SELECT sku, units_sold FROM inventory.stock_view)"
			 " UNION ALL"
			 " (SELECT sku, units_sold FROM inventory.stock_view"
			 "  EXCEPT SELECT sku, sum(quantity)::bigint FROM order_lines GROUP BY sku)) d"),
		     0, "the inventory view equals order_lines");
	cr_expect_eq(testenv_query_long(conn, "SELECT revenue_cents FROM analytics.totals"),
		     testenv_query_long(conn, "SELECT sum(total_cents) FROM orders"));
	cr_expect_eq(testenv_query_long(conn, "SELECT orders FROM analytics.totals"), N);
	for (int w = 2; w < 5; w++)
		cr_expect_eq(testenv_stop(&procs[w], SIGTERM), 0, "%s exits 0 on SIGTERM", procs[w].name);
	stop_cleanly();
	PQfinish(conn);
	free(db);
}
