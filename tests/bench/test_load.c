/* test_load.c - checkout-load: its histogram, and short runs against the real server.
 *
 * These are behaviour checks (the tool runs, talks to the server, counts
 * what the database confirms, writes valid JSON), never timing goals: the
 * benchmark is scripts/bench.
 */
#define _GNU_SOURCE
#include "hist.h"
#include "testenv.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

Test(load_hist, reports_percentiles_within_one_percent)
{
	static struct hist h;
	hist_reset(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		hist_record(&h, v);
	const double pcts[] = {50, 90, 99, 99.9};
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		double want = pcts[i] * 1000;
		double got = (double)hist_percentile(&h, pcts[i]);
		cr_expect(got >= want && got <= want * 1.01, "p%g: %g, want %g (+1%%)", pcts[i], got, want);
	}
	cr_expect_eq(hist_percentile(&h, 100), 100000);
	cr_expect_eq(h.min, 1);
	cr_expect_eq(h.count, 100000);
}

Test(load_hist, keeps_small_values_exact_and_huge_ones_in_range)
{
	static struct hist h;
	hist_reset(&h);
	for (uint64_t v = 0; v < 256; v++)
		cr_expect_eq(hist_bucket_high(hist_index(v)), v);
	/* every value lies in its bucket, and the bucket is less than 1/128 wide */
	for (uint64_t v = 256; v < (UINT64_C(1) << 40); v = v * 3 / 2 + 7) {
		unsigned i = hist_index(v);
		cr_assert_lt(i, HIST_BUCKETS);
		cr_expect_geq(hist_bucket_high(i), v);
		cr_expect_lt(hist_bucket_high(i) - v, v / 128 + 1);
	}
	hist_record(&h, UINT64_MAX);
	cr_expect_eq(h.buckets[HIST_BUCKETS - 1], 1);
	cr_expect_eq(hist_percentile(&h, 50), UINT64_MAX > hist_bucket_high(HIST_BUCKETS - 1)
						  ? hist_bucket_high(HIST_BUCKETS - 1)
						  : UINT64_MAX);
}

Test(load_hist, merges_counts)
{
	static struct hist a, b;
	hist_reset(&a);
	hist_reset(&b);
	hist_record(&a, 10);
	hist_record(&b, 1000);
	hist_record(&b, 20);
	hist_merge(&a, &b);
	cr_expect_eq(a.count, 3);
	cr_expect_eq(a.min, 10);
	cr_expect_eq(a.max, 1000);
	cr_expect_eq(hist_percentile(&a, 50), 20);
}

/* ---- against the server ---- */

static char *db;
static PGconn *conn;
static struct testenv_proc server;
static char url[64];

static void start_server(void)
{
	db = testenv_db_new();
	conn = testenv_db_connect(db);
	testenv_exec(
	    conn,
	    "INSERT INTO products (sku, name, price_cents, stock) "
	    "SELECT 'sku-' || lpad(i::text, 5, '0'), 'p' || i, 100, 1000000 FROM generate_series(0, 99) i");
	testenv_exec(
	    conn,
	    "INSERT INTO products (sku, name, price_cents, stock) VALUES ('sku-hot', 'hot', 100, 1000000)");
	int port = testenv_free_port();
	char listen[64], dburl[256];
	snprintf(listen, sizeof(listen), "LISTEN=127.0.0.1:%d", port);
	snprintf(dburl, sizeof(dburl), "DATABASE_URL=%s", db);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	const char *env[] = {listen, dburl, "DB_POOL_SIZE=4", "LOG_LEVEL=warn", NULL};
	testenv_spawn(&server, "checkout-server", NULL, env);
	cr_assert(testenv_wait_port(port, 15000), "the server did not start");
}

/* Criterion ignores assertions in a suite's .fini: what each test leaves running
 * is stopped, and its exit status checked, at the end of the test itself
 * (testenv_stop_clean: a leak the sanitizer reports at exit fails the test).
 * The .fini stops whatever a test that failed early left behind. */
static void stop_server(void)
{
	testenv_stop_clean(&server);
	if (conn)
		PQfinish(conn);
	free(db);
}

/* Run checkout-load with args (after --url), wait for it, return its exit status. */
static int run_load(const char *const *args, struct testenv_proc *p)
{
	const char *argv[32];
	int n = 0;
	argv[n++] = "--url";
	argv[n++] = url;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	testenv_spawn(p, "checkout-load", argv, NULL);
	int status = -1;
	for (int waited = 0; waited < 60000; waited += 50) {
		if (testenv_exited(p, &status))
			return status;
		testenv_sleep_ms(50);
	}
	testenv_stop(p, SIGKILL);
	cr_assert_fail("checkout-load did not finish within 60 s");
	return -1;
}

static json_t *load_json(const char *path)
{
	json_error_t error;
	json_t *j = json_load_file(path, 0, &error);
	cr_assert_not_null(j, "%s is not valid JSON: %s", path, error.text);
	return j;
}

static long long jint(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
	return json_integer_value(v);
}

TestSuite(load, .init = start_server, .fini = stop_server);

Test(load, five_second_closed_loop_run_gets_only_201s_and_every_one_is_an_order)
{
	char json_path[512];
	snprintf(json_path, sizeof(json_path), "%s/load-smoke-%d.json", CHECKOUT_TEST_TMP, (int)getpid());
	const char *args[] = {"--connections", "4",	"--duration", "5",	 "--skus",  "100",
			      "--mix",	       "multi", "--json",     json_path, "--quiet", NULL};
	struct testenv_proc p;
	cr_assert_eq(run_load(args, &p), 0, "checkout-load failed (see %s)", p.log_path);

	json_t *j = load_json(json_path);
	long long requests = jint(j, "requests"), created = jint(j, "created");
	cr_expect_gt(created, 0, "no checkout was admitted");
	cr_expect_eq(created, requests, "some checkouts were not admitted");
	cr_expect_eq(jint(j, "server_errors"), 0);
	cr_expect_eq(jint(j, "transport_errors"), 0);
	cr_expect_eq(jint(json_object_get(j, "status"), "201"), created);
	json_t *lat = json_object_get(j, "latency_us");
	cr_expect(jint(lat, "p50") <= jint(lat, "p99") && jint(lat, "p99") <= jint(lat, "max"));
	cr_expect_eq(json_array_size(json_object_get(j, "per_second")), 5);
	cr_expect_str_eq(json_string_value(json_object_get(j, "mix")), "multi");
	/* what the tool counted as admitted is what the database holds */
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM orders"), created);
	cr_expect_eq(
	    testenv_query_long(conn, "SELECT count(*) FROM outbox WHERE event_type = 'order.admitted'"),
	    created);
	cr_expect_gt(testenv_query_long(conn, "SELECT max(n) FROM (SELECT count(*) AS n FROM order_lines "
					      "GROUP BY order_id) c"),
		     1, "multi-item carts had one line each");
	json_decref(j);
	remove(json_path);
	testenv_stop_clean(&server);
}

Test(load, open_loop_sends_exactly_the_scheduled_requests)
{
	char json_path[512];
	snprintf(json_path, sizeof(json_path), "%s/load-open-%d.json", CHECKOUT_TEST_TMP, (int)getpid());
	/* 40/s for 2 s: 80 requests are due, however fast the server answers */
	const char *args[] = {"--connections", "4",   "--duration", "2",       "--rate",  "40",
			      "--mix",	       "hot", "--json",	    json_path, "--quiet", NULL};
	struct testenv_proc p;
	long long before = testenv_query_long(conn, "SELECT count(*) FROM orders");
	cr_assert_eq(run_load(args, &p), 0, "checkout-load failed (see %s)", p.log_path);

	json_t *j = load_json(json_path);
	cr_expect_eq(jint(j, "requests"), 80);
	cr_expect_eq(jint(j, "created"), 80);
	cr_expect_str_eq(json_string_value(json_object_get(j, "loop")), "open");
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM orders") - before, 80);
	cr_expect_eq(testenv_query_long(conn, "SELECT 1000000 - stock FROM products WHERE sku = 'sku-hot'"),
		     80);
	json_decref(j);
	remove(json_path);
	testenv_stop_clean(&server);
}

Test(load, counts_refusals_as_transport_errors_and_fails_when_nothing_answers)
{
	int port = testenv_free_port();
	char dead[64];
	snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", port);
	const char *argv[] = {"--url", dead, "--connections", "2", "--duration", "1", "--quiet", NULL};
	struct testenv_proc p;
	testenv_spawn(&p, "checkout-load", argv, NULL);
	int status = -1;
	for (int waited = 0; waited < 30000 && !testenv_exited(&p, &status); waited += 50)
		testenv_sleep_ms(50);
	cr_expect_eq(status, 1, "checkout-load should fail when no request got an answer");
	cr_expect_gt(testenv_count_log(&p, "transport-error"), 0, "the refusals were not reported");
	testenv_stop_clean(&server);
}
