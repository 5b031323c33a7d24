/* End to end: POST /v1/checkout on the real server, the relay, the topic.
 * Admitted carts appear on the topic as the 201 body without "status"; a
 * cart rejected with 409 never does. Runs in both event modes (EVENTS=wal
 * and EVENTS=outbox, tests/relay/CMakeLists.txt). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "testenv.h"
#include "topic.h"

static struct testenv_proc broker, server, relay;
static struct topic_reader topic;
static PGconn *db;
static char *conninfo;
static char bootstrap[256];
static char base[64];

static void setup(void)
{
	conninfo = testenv_db_new();
	db = testenv_db_connect(conninfo);
	testenv_exec(db, "INSERT INTO products (sku, name, price_cents, stock) VALUES"
			 " ('apple', 'Apple', 120, 10), ('plum', 'Plum', 50, 1)");
	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	topic_open(&topic, bootstrap);

	orders_start_server_and_relay(&server, &relay, conninfo, bootstrap, NULL, base, sizeof(base));
}

/* Criterion ignores assertions in a suite's .fini: what each test leaves running
 * is stopped, and its exit status checked, at the end of the test itself
 * (testenv_stop_clean: a leak the sanitizer reports at exit fails the test).
 * The .fini stops whatever a test that failed early left behind. */
static void stop_cleanly(void)
{
	testenv_stop_clean(&relay);
	testenv_stop_clean(&server);
	topic_close(&topic);
	testenv_stop_clean(&broker);
}

static void teardown(void)
{
	stop_cleanly();
	orders_drop_slot(db);
	PQfinish(db);
	free(conninfo);
}

TestSuite(relay_e2e, .init = setup, .fini = teardown);

static json_t *checkout(const char *body, long want_status)
{
	char url[128];
	struct http_response r;
	const char *headers[] = {"Content-Type: application/json", NULL};
	snprintf(url, sizeof(url), "%s/v1/checkout", base);
	cr_assert(http_call("POST", url, headers, body, &r), "POST %s", url);
	cr_assert_eq(r.status, want_status, "status %ld, want %ld: %s", r.status, want_status, r.body);
	json_t *j = r.json ? json_incref(r.json) : NULL;
	http_response_free(&r);
	return j;
}

Test(relay_e2e, admitted_checkouts_reach_the_topic_and_a_rejected_one_never_does)
{
	json_t *a =
	    checkout("{\"customer_id\":\"ann\",\"email\":\"ann@example.com\","
		     "\"items\":[{\"sku\":\"apple\",\"quantity\":2},{\"sku\":\"plum\",\"quantity\":1}]}",
		     201);
	json_t *rejected =
	    checkout("{\"customer_id\":\"bob\",\"email\":\"bob@example.com\","
		     "\"items\":[{\"sku\":\"apple\",\"quantity\":1},{\"sku\":\"plum\",\"quantity\":1}]}",
		     409);
	json_t *b = checkout("{\"customer_id\":\"cid\",\"email\":\"cid@example.com\","
			     "\"items\":[{\"sku\":\"apple\",\"quantity\":3}]}",
			     201);
	json_decref(rejected);

	json_t *admitted[] = {a, b};
	/* each line's stock after its order: apple 10 - 2, plum 1 - 1; then apple 8 - 3 */
	static const long long stock_after[2][2] = {{8, 0}, {5, -1}};
	for (int i = 0; i < 2; i++) {
		const char *order_id = json_string_value(json_object_get(admitted[i], "order_id"));
		cr_assert(order_id);
		cr_assert(topic_wait_key(&topic, order_id, 15000), "order %s reaches the topic", order_id);
		const struct topic_msg *m = NULL;
		cr_expect_eq(topic_count_key(&topic, order_id, &m), 1);
		json_t *value = json_loads(m->value, 0, NULL);
		json_t *want = json_deep_copy(admitted[i]);
		json_object_del(want, "status");
		for (size_t k = 0; k < json_array_size(json_object_get(want, "items")); k++)
			json_object_set_new(json_array_get(json_object_get(want, "items"), k), "stock_after",
					    json_integer(stock_after[i][k]));
		cr_expect(json_equal(value, want),
			  "the message is the 201 body without status, with each line's stock_after: %s",
			  m->value);
		cr_expect_str_eq(m->ce_type ? m->ce_type : "", "order.admitted");
		json_decref(value);
		json_decref(want);
	}
	/* b was admitted after the rejected cart: everything before it has been relayed */
	topic_read(&topic, 300);
	cr_expect_eq(topic.n, 2, "only the two admitted carts are on the topic (got %d)", topic.n);
	/* the WAL mode writes no row at all; the outbox mode one per admitted cart */
	cr_expect_eq(
	    testenv_query_long(db, "SELECT count(*) FROM outbox WHERE event_type = 'order.admitted'"),
	    orders_wal_mode() ? 0 : 2, "the 409 wrote no outbox row");
	json_decref(a);
	json_decref(b);
	stop_cleanly();
}
