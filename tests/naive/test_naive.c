/* test_naive.c - checkout-naive (NAIVE_MODE=view) oversells the last item and
 * breaks a purchase limit, while checkout-server (SERIALIZABLE) holds both,
 * in the same run, on the same database and the same bursts of requests.
 *
 * These assert that the anomaly APPEARS: if the naive program were made
 * correct by accident (say, the handler subtracted from the view itself),
 * this test fails.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testenv.h"

#define BURST 16

static struct testenv_proc broker, naive, server;
static char *db;

static void teardown(void)
{
	testenv_stop_clean(&naive);
	testenv_stop_clean(&server);
	testenv_stop_clean(&broker);
	free(db);
}

/* Start a program listening on a free port; url gets its base URL. */
static void start(struct testenv_proc *p, const char *program, const char *const *extra, char *url,
		  size_t len)
{
	static char env[2][6][200];
	int k = p == &naive;
	int port = testenv_free_port();
	snprintf(url, len, "http://127.0.0.1:%d", port);
	snprintf(env[k][0], sizeof(env[k][0]), "DATABASE_URL=%s", db);
	snprintf(env[k][1], sizeof(env[k][1]), "LISTEN=127.0.0.1:%d", port);
	snprintf(env[k][2], sizeof(env[k][2]), "%s", extra[0]);
	snprintf(env[k][3], sizeof(env[k][3]), "%s", extra[1]);
	snprintf(env[k][4], sizeof(env[k][4]), "%s", extra[2]);
	const char *envp[] = {env[k][0],
			      env[k][1],
			      env[k][2],
			      env[k][3],
			      env[k][4],
			      "LOG_LEVEL=warn",
			      "REQUEST_TIMEOUT_MS=60000",
			      NULL};
	testenv_spawn(p, program, NULL, envp);
	cr_assert(testenv_wait_port(port, 15000), "%s did not start; see %s", program, p->log_path);
}

struct shot {
	const char *url;
	char body[256];
	pthread_barrier_t *go;
	long status;
};

static void *fire(void *arg)
{
	struct shot *s = arg;
	char url[128];
	struct http_response r = {0};
	const char *headers[] = {"Content-Type: application/json", NULL};
	snprintf(url, sizeof(url), "%s/v1/checkout", s->url);
	pthread_barrier_wait(s->go);
	s->status = http_call("POST", url, headers, s->body, &r) ? r.status : 0;
	http_response_free(&r);
	return NULL;
}

/* BURST checkouts of one unit of sku at once, by one customer (same) or each its own; returns the 201s. */
static int burst(const char *url, const char *sku, bool same_customer)
{
	struct shot shots[BURST];
	pthread_t threads[BURST];
	pthread_barrier_t go;
	int admitted = 0;
	pthread_barrier_init(&go, NULL, BURST);
	for (int i = 0; i < BURST; i++) {
		shots[i] = (struct shot){.url = url, .go = &go};
		snprintf(shots[i].body, sizeof(shots[i].body),
			 "{\"customer_id\":\"c-%d\",\"email\":\"c%d@example.com\","
			 "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
			 same_customer ? 0 : i, i, sku);
		cr_assert_eq(pthread_create(&threads[i], NULL, fire, &shots[i]), 0);
	}
	for (int i = 0; i < BURST; i++) {
		pthread_join(threads[i], NULL);
		cr_expect(shots[i].status == 201 || shots[i].status == 409, "%s %s: answered %ld", url, sku,
			  shots[i].status);
		admitted += shots[i].status == 201;
	}
	pthread_barrier_destroy(&go);
	return admitted;
}

Test(naive, view_oversells_and_breaks_the_limit_where_serializable_holds, .fini = teardown, .timeout = 120)
{
	char naive_url[64], server_url[64], brokers[200];
	db = testenv_db_new();
	PGconn *conn = testenv_db_connect(db);
	/* each program its own SKUs: the server's orders change the stock the naive one would read */
	testenv_exec(conn,
		     "INSERT INTO limit_groups VALUES ('drop-n', 1), ('drop-s', 1);"
		     "INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES "
		     "('last-n', 'Last', 100, 1, NULL), ('last-s', 'Last', 100, 1, NULL),"
		     "('drop-n', 'Drop', 100, 1000, 'drop-n'), ('drop-s', 'Drop', 100, 1000, 'drop-s')");
	snprintf(brokers, sizeof(brokers), "KAFKA_BROKERS=%s", testenv_broker_start(&broker));
	const char *naive_env[] = {brokers, "NAIVE_MODE=view", "DB_POOL_SIZE=4"};
	const char *server_env[] = {"HOT_SKU_QUEUE=false", "MAX_RETRIES=200",
				    "DB_POOL_SIZE="
				    "16"};
	start(&naive, "checkout-naive", naive_env, naive_url, sizeof(naive_url));
	start(&server, "checkout-server", server_env, server_url, sizeof(server_url));

	int naive_last = burst(naive_url, "last-n", false), server_last = burst(server_url, "last-s", false);
	int naive_drop = burst(naive_url, "drop-n", true), server_drop = burst(server_url, "drop-s", true);
	cr_log_info(
	    "last item (stock 1): naive admitted %d, serializable %d; limit 1: naive %d, serializable %d",
	    naive_last, server_last, naive_drop, server_drop);
	cr_expect_gt(naive_last, 1, "the view did not oversell the last item: %d admitted", naive_last);
	cr_expect_gt(naive_drop, 1, "the view did not break the limit of 1: %d admitted", naive_drop);
	cr_expect_eq(server_last, 1, "serializable admitted %d of the last item", server_last);
	cr_expect_eq(server_drop, 1, "serializable admitted %d under a limit of 1", server_drop);
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM orders"), 2,
		     "only the real server writes orders");

	/* the view does catch up: once the events came back, the item is gone and the limit used */
	int late = 0, late_admitted = 0;
	for (int i = 0; i < 100 && late != 409; i++) {
		struct http_response r = {0};
		const char *headers[] = {"Content-Type: application/json", NULL};
		char url[128];
		snprintf(url, sizeof(url), "%s/v1/checkout", naive_url);
		testenv_sleep_ms(50);
		cr_assert(http_call("POST", url, headers,
				    "{\"customer_id\":\"late\",\"email\":\"late@example.com\","
				    "\"items\":[{\"sku\":\"last-n\",\"quantity\":1}]}",
				    &r));
		late = (int)r.status;
		late_admitted += late == 201;
		if (late == 409)
			cr_expect(strstr(r.body, "out-of-stock") && strstr(r.body, "\"available\":"),
				  "not the out-of-stock problem: %s", r.body);
		http_response_free(&r);
	}
	cr_expect_eq(late, 409, "the view never learned that the last item was sold");

	/* GET /v1/products/{sku} answers the view's stock (checkout-race reads it): once the view
	 * has every event, 1 minus every unit admitted */
	char url[128], want[48];
	struct http_response r = {0};
	bool seen = false;
	snprintf(url, sizeof(url), "%s/v1/products/last-n", naive_url);
	snprintf(want, sizeof(want), "\"stock\":%d", 1 - naive_last - late_admitted);
	for (int i = 0; i < 100 && !seen; i++) {
		http_response_free(&r);
		testenv_sleep_ms(i ? 50 : 0);
		cr_assert(http_call("GET", url, NULL, NULL, &r));
		seen = r.status == 200 && strstr(r.body, want);
	}
	cr_expect(seen, "GET %s: %ld %s, expected %s", url, r.status, r.body, want);
	http_response_free(&r);
	snprintf(url, sizeof(url), "%s/v1/products/no-such-sku", naive_url);
	cr_assert(http_call("GET", url, NULL, NULL, &r));
	cr_expect_eq(r.status, 404, "GET %s: %ld %s", url, r.status, r.body);
	http_response_free(&r);
	PQfinish(conn);
	/* here, not only in the .fini: a leak (exit 23 under ASan) fails the test */
	testenv_stop_clean(&naive);
	testenv_stop_clean(&server);
	testenv_stop_clean(&broker);
}

/* One checkout of the given items (a JSON array); returns its status. */
static long checkout(const char *base, const char *customer, const char *items)
{
	char url[128], body[512];
	struct http_response r = {0};
	const char *headers[] = {"Content-Type: application/json", NULL};
	snprintf(url, sizeof(url), "%s/v1/checkout", base);
	snprintf(body, sizeof(body), "{\"customer_id\":\"%s\",\"email\":\"x@example.com\",\"items\":%s}",
		 customer, items);
	cr_assert(http_call("POST", url, headers, body, &r), "POST %s failed", url);
	long status = r.status;
	http_response_free(&r);
	return status;
}

/* PAIRS limit-group SKUs and two-SKU carts: enough that some fall on different partitions (3). */
#define PAIRS 6

/*
 * Sequential, so the outcome does not depend on timing: per k, one customer
 * buys lim-k one unit each under a group limit of 1 (admitted: how many);
 * then b-k alone, then the cart {a-k, b-k} (refused: b-k is gone), then a-k
 * alone: refused only if the refused cart took a-k anyway (split).
 */
static void sequence(const char *url, const char *prefix, int *admitted_in_group, int *split)
{
	char items[256];
	*admitted_in_group = *split = 0;
	for (int k = 0; k < PAIRS; k++) {
		snprintf(items, sizeof(items), "[{\"sku\":\"%slim-%d\",\"quantity\":1}]", prefix, k);
		*admitted_in_group += checkout(url, "limited", items) == 201;
		snprintf(items, sizeof(items), "[{\"sku\":\"%sb-%d\",\"quantity\":1}]", prefix, k);
		cr_expect_eq(checkout(url, "first", items), 201);
		snprintf(items, sizeof(items),
			 "[{\"sku\":\"%sa-%d\",\"quantity\":1},{\"sku\":\"%sb-%d\",\"quantity\":1}]", prefix,
			 k, prefix, k);
		cr_expect_eq(checkout(url, "cart", items), 409, "the cart got b-%d, which was gone", k);
		snprintf(items, sizeof(items), "[{\"sku\":\"%sa-%d\",\"quantity\":1}]", prefix, k);
		*split += checkout(url, "after", items) == 409;
	}
}

Test(naive, intent_holds_the_last_item_but_not_limits_or_carts_across_partitions, .fini = teardown,
     .timeout = 120)
{
	char naive_url[64], server_url[64], brokers[200], sql[256];
	db = testenv_db_new();
	PGconn *conn = testenv_db_connect(db);
	testenv_exec(conn, "INSERT INTO limit_groups VALUES ('n-group', 1), ('s-group', 1);"
			   "INSERT INTO products (sku, name, price_cents, stock) VALUES "
			   "('last-n', 'Last', 100, 1), ('last-s', 'Last', 100, 1)");
	for (int k = 0; k < PAIRS; k++)
		for (int s = 0; s < 2; s++) {
			const char *p = s ? "s-" : "n-";
			snprintf(sql, sizeof(sql),
				 "INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES "
				 "('%slim-%d', 'L', 100, 100, '%sgroup'), ('%sa-%d', 'A', 100, 1, NULL), "
				 "('%sb-%d', 'B', 100, 1, NULL)",
				 p, k, p, p, k, p, k);
			testenv_exec(conn, sql);
		}
	snprintf(brokers, sizeof(brokers), "KAFKA_BROKERS=%s", testenv_broker_start(&broker));
	const char *naive_env[] = {brokers, "NAIVE_MODE=intent", "DB_POOL_SIZE=4"};
	const char *server_env[] = {"HOT_SKU_QUEUE=false", "MAX_RETRIES=200", "DB_POOL_SIZE=16"};
	start(&naive, "checkout-naive", naive_env, naive_url, sizeof(naive_url));
	start(&server, "checkout-server", server_env, server_url, sizeof(server_url));

	int naive_last = burst(naive_url, "last-n", false), server_last = burst(server_url, "last-s", false);
	int naive_group, naive_split, server_group, server_split;
	sequence(naive_url, "n-", &naive_group, &naive_split);
	sequence(server_url, "s-", &server_group, &server_split);
	cr_log_info("intent: last item %d admitted, group limit 1: %d admitted, carts split %d of %d; "
		    "serializable: %d, %d, %d",
		    naive_last, naive_group, naive_split, PAIRS, server_last, server_group, server_split);
	cr_expect_eq(naive_last, 1, "one partition sees every intent for the SKU: exactly 1, got %d",
		     naive_last);
	cr_expect_gt(naive_group, 1, "the limit held across partitions: %d admitted", naive_group);
	cr_expect_gt(naive_split, 0, "no cart across partitions was split");
	cr_expect_eq(server_last, 1);
	cr_expect_eq(server_group, 1);
	cr_expect_eq(server_split, 0, "serializable split %d carts", server_split);
	PQfinish(conn);
	testenv_stop_clean(&naive);
	testenv_stop_clean(&server);
	testenv_stop_clean(&broker);
}
