/* checkout-server against the real PostgreSQL: the HTTP contract, the
 * checkout transaction's effects, idempotency, retries, restarts, admin. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkout/monotonic.h"
#include "serverenv.h"

static const char *const SEED = "INSERT INTO limit_groups VALUES ('gpu', 3);"
				"INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES"
				" ('apple', 'Apple', 120, 10, NULL),"
				" ('pear', 'Pear', 80, 5, NULL),"
				" ('plum', 'Plum', 50, 1, NULL),"
				" ('gpu-a', 'GPU A', 50000, 100, 'gpu'),"
				" ('gpu-b', 'GPU B', 70000, 100, 'gpu');"
				"ANALYZE;";

static const char *const ADMIN_ENV[] = {"ADMIN_TOKEN=s3cret-token", NULL};

static long stock_of(struct serverenv *s, const char *sku)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT stock FROM products WHERE sku = '%s'", sku);
	return testenv_query_long(s->conn, sql);
}

/* Rows of table; of outbox, the order events only (product events share it: migrations/010). */
static long count_rows(struct serverenv *s, const char *table)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s%s", table,
		 strcmp(table, "outbox") ? "" : " WHERE event_type = 'order.admitted'");
	return testenv_query_long(s->conn, sql);
}

static void post_checkout(struct serverenv *s, const char *body, const char *key, struct http_response *r)
{
	char header[300];
	const char *headers[] = {key ? header : NULL, NULL};
	if (key)
		snprintf(header, sizeof(header), "Idempotency-Key: %s", key);
	serverenv_call(s, "POST", "/v1/checkout", headers, body, r);
}

/* An RFC 9457 body whose type ends in /name. */
static void expect_problem(const struct http_response *r, long status, const char *name)
{
	char ct[128];
	cr_assert_eq(r->status, status, "expected %ld %s, got %ld: %s", status, name, r->status, r->body);
	cr_expect_str_eq(http_header(r, "Content-Type", ct, sizeof(ct)), "application/problem+json");
	cr_assert(r->json, "not JSON: %s", r->body);
	const char *type = json_string_value(json_object_get(r->json, "type"));
	cr_assert(type, "no type: %s", r->body);
	const char *slash = strrchr(type, '/');
	cr_expect(slash && !strcmp(slash + 1, name), "type %s is not %s", type, name);
	cr_expect(json_is_string(json_object_get(r->json, "title")));
	cr_expect(json_is_string(json_object_get(r->json, "detail")));
	cr_expect_eq(json_integer_value(json_object_get(r->json, "status")), status);
}

Test(server, admits_a_cart_and_commits_stock_order_lines_and_outbox_together)
{
	struct serverenv s;
	struct http_response r;
	char buf[256];
	serverenv_start(&s, SEED, NULL);

	post_checkout(&s,
		      "{\"customer_id\":\"cust-1\",\"email\":\"ann@example.com\",\"items\":"
		      "[{\"sku\":\"pear\",\"quantity\":2},{\"sku\":\"apple\",\"quantity\":3}]}",
		      NULL, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	cr_expect_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)), "application/json");
	const char *id = json_string_value(json_object_get(r.json, "order_id"));
	cr_assert(id && strlen(id) == 36);
	char location[128];
	snprintf(location, sizeof(location), "/v1/orders/%s", id);
	cr_expect_str_eq(http_header(&r, "Location", buf, sizeof(buf)), location);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "status")), "admitted");
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "customer_id")), "cust-1");
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "email")), "ann@example.com");
	cr_expect_eq(json_integer_value(json_object_get(r.json, "total_cents")), 3 * 120 + 2 * 80);
	const char *created = json_string_value(json_object_get(r.json, "created_at"));
	cr_assert(created && strlen(created) >= 20 && created[10] == 'T' &&
		      created[strlen(created) - 1] == 'Z',
		  "created_at %s", created);
	json_t *items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 2);
	json_t *first = json_array_get(items, 0);
	cr_expect_str_eq(json_string_value(json_object_get(first, "sku")), "apple");
	cr_expect_eq(json_integer_value(json_object_get(first, "quantity")), 3);
	cr_expect_eq(json_integer_value(json_object_get(first, "unit_price_cents")), 120);

	cr_expect_eq(stock_of(&s, "apple"), 7);
	cr_expect_eq(stock_of(&s, "pear"), 3);
	cr_expect_eq(count_rows(&s, "orders"), 1);
	cr_expect_eq(count_rows(&s, "order_lines"), 2);
	cr_expect_eq(count_rows(&s, "outbox"), 1);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT sum(quantity * unit_price_cents) FROM order_lines"),
		     520);

	/* the outbox payload is the 201 body without "status", each line with its stock after the order */
	PGresult *res = PQexec(s.conn, "SELECT payload::text, event_type, aggregate_id FROM outbox"
				       " WHERE event_type = 'order.admitted'");
	cr_assert_eq(PQntuples(res), 1);
	json_t *payload = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	cr_expect_str_eq(PQgetvalue(res, 0, 1), "order.admitted");
	cr_expect_str_eq(PQgetvalue(res, 0, 2), id);
	json_t *expected = json_deep_copy(r.json);
	json_object_del(expected, "status");
	json_t *lines = json_object_get(expected, "items");
	json_object_set_new(json_array_get(lines, 0), "stock_after", json_integer(7));
	json_object_set_new(json_array_get(lines, 1), "stock_after", json_integer(3));
	cr_expect_null(json_object_get(json_array_get(items, 0), "stock_after"),
		       "the client is not told the stock");
	cr_expect(json_equal(payload, expected), "payload %s vs body %s", PQgetvalue(res, 0, 0), r.body);
	json_decref(payload);
	json_decref(expected);
	PQclear(res);

	/* and the order reads back the same */
	struct http_response o;
	serverenv_call(&s, "GET", location, NULL, NULL, &o);
	cr_assert_eq(o.status, 200);
	cr_expect(json_equal(o.json, r.json), "%s vs %s", o.body, r.body);
	http_response_free(&o);
	http_response_free(&r);
	serverenv_stop(&s);
}

Test(server, order_and_event_ids_are_uuid_v7_and_grow_with_time)
{
	struct serverenv s;
	struct http_response r;
	char ids[3][40];
	serverenv_start(&s, SEED, NULL);

	for (int i = 0; i < 3; i++) {
		post_checkout(&s,
			      "{\"customer_id\":\"c\",\"email\":\"c@example.com\",\"items\":[{\"sku\":"
			      "\"apple\",\"quantity\":1}]}",
			      NULL, &r);
		cr_assert_eq(r.status, 201, "%s", r.body);
		const char *id = json_string_value(json_object_get(r.json, "order_id"));
		cr_assert(id && strlen(id) == 36, "%s", r.body);
		snprintf(ids[i], sizeof(ids[i]), "%s", id);
		/* RFC 9562: version 7 in the 13th hex digit, variant 10xx in the 17th */
		cr_expect_eq(id[14], '7', "version of %s", id);
		cr_expect(strchr("89ab", id[19]), "variant of %s", id);
		http_response_free(&r);
		struct timespec ms = {0, 2 * 1000 * 1000};
		nanosleep(&ms, NULL); /* the next one is in a later millisecond */
	}
	/* the leading 48 bits are the time, so ids taken later sort after earlier ones */
	cr_expect(strcmp(ids[0], ids[1]) < 0 && strcmp(ids[1], ids[2]) < 0, "%s %s %s", ids[0], ids[1],
		  ids[2]);
	long near_now = testenv_query_long(
	    s.conn, "SELECT count(*) FROM orders WHERE abs(extract(epoch FROM created_at) * 1000 - "
		    "('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint) < 1000");
	cr_expect_eq(near_now, 3, "the ids' time is the order's time");
	cr_expect_eq(testenv_query_long(s.conn,
					"SELECT count(*) FROM outbox WHERE event_type = 'order.admitted'"
					" AND substr(event_id, 15, 1) = '7'"),
		     3);
	serverenv_stop(&s);
}

Test(server, a_cart_of_100_items_is_admitted_in_one_transaction)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s,
			"INSERT INTO products (sku, name, price_cents, stock) "
			"SELECT 'item-' || g, 'Item', g, 10 FROM generate_series(1, 100) g; ANALYZE",
			NULL);
	json_t *items = json_array();
	for (int i = 1; i <= 100; i++) {
		char sku[32];
		snprintf(sku, sizeof(sku), "item-%d", i);
		json_array_append_new(items, json_pack("{s:s, s:i}", "sku", sku, "quantity", 1 + i % 3));
	}
	json_t *cart = json_pack("{s:s, s:s, s:o}", "customer_id", "big", "email", "big@b.c", "items", items);
	char *body = json_dumps(cart, JSON_COMPACT);
	post_checkout(&s, body, NULL, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	cr_expect_eq(json_array_size(json_object_get(r.json, "items")), 100);
	long expected = 0;
	for (int i = 1; i <= 100; i++)
		expected += (long)i * (1 + i % 3);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "total_cents")), expected);
	cr_expect_eq(count_rows(&s, "order_lines"), 100);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT sum(10 - stock) FROM products"), 200);
	http_response_free(&r);
	free(body);
	json_decref(cart);
	serverenv_stop(&s);
}

Test(server, rejects_the_whole_cart_when_one_item_is_short)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);

	post_checkout(
	    &s,
	    "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":2},"
	    "{\"sku\":\"pear\",\"quantity\":6},{\"sku\":\"plum\",\"quantity\":2}]}",
	    NULL, &r);
	expect_problem(&r, 409, "out-of-stock");
	json_t *unavailable = json_object_get(r.json, "unavailable");
	cr_assert_eq(json_array_size(unavailable), 2, "%s", r.body);
	json_t *pear = json_array_get(unavailable, 0);
	cr_expect_str_eq(json_string_value(json_object_get(pear, "sku")), "pear");
	cr_expect_eq(json_integer_value(json_object_get(pear, "requested")), 6);
	cr_expect_eq(json_integer_value(json_object_get(pear, "available")), 5);
	json_t *plum = json_array_get(unavailable, 1);
	cr_expect_str_eq(json_string_value(json_object_get(plum, "sku")), "plum");
	cr_expect_eq(json_integer_value(json_object_get(plum, "available")), 1);
	http_response_free(&r);

	cr_expect_eq(stock_of(&s, "apple"), 10);
	cr_expect_eq(stock_of(&s, "pear"), 5);
	cr_expect_eq(stock_of(&s, "plum"), 1);
	cr_expect_eq(count_rows(&s, "orders"), 0);
	cr_expect_eq(count_rows(&s, "order_lines"), 0);
	cr_expect_eq(count_rows(&s, "outbox"), 0);
	serverenv_stop(&s);
}

Test(server, unknown_skus_are_422_and_change_nothing)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);
	post_checkout(
	    &s,
	    "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1},"
	    "{\"sku\":\"kiwi\",\"quantity\":1},{\"sku\":\"fig\",\"quantity\":1}]}",
	    NULL, &r);
	expect_problem(&r, 422, "unknown-sku");
	json_t *unknown = json_object_get(r.json, "unknown");
	cr_assert_eq(json_array_size(unknown), 2, "%s", r.body);
	cr_expect_str_eq(json_string_value(json_array_get(unknown, 0)), "fig");
	cr_expect_str_eq(json_string_value(json_array_get(unknown, 1)), "kiwi");
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 10);
	cr_expect_eq(count_rows(&s, "orders"), 0);
	cr_expect_eq(count_rows(&s, "outbox"), 0);
	serverenv_stop(&s);
}

Test(server, the_same_sku_twice_is_summed)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);
	post_checkout(
	    &s,
	    "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"pear\",\"quantity\":2},"
	    "{\"sku\":\"pear\",\"quantity\":2}]}",
	    NULL, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	json_t *items = json_object_get(r.json, "items");
	cr_assert_eq(json_array_size(items), 1);
	cr_expect_eq(json_integer_value(json_object_get(json_array_get(items, 0), "quantity")), 4);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "pear"), 1);

	post_checkout(
	    &s,
	    "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"pear\",\"quantity\":1},"
	    "{\"sku\":\"pear\",\"quantity\":1}]}",
	    NULL, &r);
	expect_problem(&r, 409, "out-of-stock");
	json_t *pear = json_array_get(json_object_get(r.json, "unavailable"), 0);
	cr_expect_eq(json_integer_value(json_object_get(pear, "requested")), 2);
	cr_expect_eq(json_integer_value(json_object_get(pear, "available")), 1);
	http_response_free(&r);
	serverenv_stop(&s);
}

Test(server, purchase_limit_counts_units_across_the_group)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);

	post_checkout(
	    &s,
	    "{\"customer_id\":\"bob\",\"email\":\"b@b.c\",\"items\":[{\"sku\":\"gpu-a\",\"quantity\":2}]}",
	    NULL, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM order_lines WHERE limit_group = 'gpu'"),
		     1);

	/* 2 bought + 1 + 1 requested > 3 */
	post_checkout(
	    &s,
	    "{\"customer_id\":\"bob\",\"email\":\"b@b.c\",\"items\":[{\"sku\":\"gpu-b\",\"quantity\":1},"
	    "{\"sku\":\"gpu-a\",\"quantity\":1},{\"sku\":\"apple\",\"quantity\":1}]}",
	    NULL, &r);
	expect_problem(&r, 409, "purchase-limit-exceeded");
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "limit_group")), "gpu");
	cr_expect_eq(json_integer_value(json_object_get(r.json, "per_customer")), 3);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "already_bought")), 2);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "requested")), 2);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "gpu-b"), 100);
	cr_expect_eq(stock_of(&s, "apple"), 10);

	/* up to the limit is fine, and other customers have their own */
	post_checkout(
	    &s,
	    "{\"customer_id\":\"bob\",\"email\":\"b@b.c\",\"items\":[{\"sku\":\"gpu-b\",\"quantity\":1}]}",
	    NULL, &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	post_checkout(
	    &s,
	    "{\"customer_id\":\"eve\",\"email\":\"e@b.c\",\"items\":[{\"sku\":\"gpu-b\",\"quantity\":3}]}",
	    NULL, &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	post_checkout(
	    &s,
	    "{\"customer_id\":\"eve\",\"email\":\"e@b.c\",\"items\":[{\"sku\":\"gpu-a\",\"quantity\":1}]}",
	    NULL, &r);
	expect_problem(&r, 409, "purchase-limit-exceeded");
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "gpu-a"), 98);
	cr_expect_eq(stock_of(&s, "gpu-b"), 96);
	serverenv_stop(&s);
}

Test(server, invalid_bodies_are_400_with_the_field_that_is_wrong)
{
	static const struct {
		const char *body;
		const char *field;
	} cases[] = {
	    {"{\"customer_id\":", ""},
	    {"[1,2]", ""},
	    {"{\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}", "customer_id"},
	    {"{\"customer_id\":7,\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}",
	     "customer_id"},
	    {"{\"customer_id\":\"\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}",
	     "customer_id"},
	    {"{\"customer_id\":\"c\",\"email\":\"no-at-sign\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]"
	     "}",
	     "email"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b@c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}",
	     "email"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[]}", "items"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":{}}", "items"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1},"
	     "{\"sku\":\"pear\",\"quantity\":1},{\"sku\":\"plum\",\"quantity\":1001}]}",
	     "items[2].quantity"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":0}]}",
	     "items[0].quantity"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":\"2\"}]}",
	     "items[0].quantity"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1.5}]}",
	     "items[0].quantity"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"quantity\":1}]}", "items[0].sku"},
	    {"{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":"
	     "99999999999999999999}]}",
	     ""},
	    {"{\"customer_id\":\"c\xff\xfe\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":"
	     "1}]}",
	     ""},
	};
	struct serverenv s;
	serverenv_start(&s, SEED, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_response r;
		post_checkout(&s, cases[i].body, NULL, &r);
		expect_problem(&r, 400, "invalid-request");
		json_t *errors = json_object_get(r.json, "errors");
		cr_assert(json_array_size(errors) >= 1, "case %zu: %s", i, r.body);
		bool found = false;
		for (size_t e = 0; e < json_array_size(errors); e++) {
			json_t *err = json_array_get(errors, e);
			found = found ||
				!strcmp(json_string_value(json_object_get(err, "field")), cases[i].field);
			cr_expect(json_is_string(json_object_get(err, "message")));
		}
		cr_expect(found, "case %zu: no error for field '%s' in %s", i, cases[i].field, r.body);
		http_response_free(&r);
	}

	/* a 65-character customer id is one too many */
	char body[512];
	snprintf(
	    body, sizeof(body),
	    "{\"customer_id\":\"%065d\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}",
	    0);
	struct http_response r;
	post_checkout(&s, body, NULL, &r);
	expect_problem(&r, 400, "invalid-request");
	cr_expect_str_eq(
	    json_string_value(json_object_get(json_array_get(json_object_get(r.json, "errors"), 0), "field")),
	    "customer_id");
	http_response_free(&r);
	cr_expect_eq(count_rows(&s, "orders"), 0);
	serverenv_stop(&s);
}

Test(server, size_type_method_and_path_errors_are_problem_json)
{
	struct serverenv s;
	struct http_response r;
	char buf[128];
	serverenv_start(&s, SEED, NULL);

	size_t big = 64 * 1024 + 10;
	char *body = malloc(big + 1);
	memset(body, ' ', big);
	body[0] = '{';
	body[big - 1] = '}';
	body[big] = '\0';
	post_checkout(&s, body, NULL, &r);
	expect_problem(&r, 413, "payload-too-large");
	http_response_free(&r);
	free(body);

	const char *text[] = {"Content-Type: text/plain", NULL};
	serverenv_call(&s, "POST", "/v1/checkout", text, "hello", &r);
	expect_problem(&r, 415, "unsupported-media-type");
	http_response_free(&r);

	serverenv_call(&s, "GET", "/v1/checkout", NULL, NULL, &r);
	expect_problem(&r, 405, "method-not-allowed");
	cr_expect_str_eq(http_header(&r, "Allow", buf, sizeof(buf)), "POST");
	http_response_free(&r);

	serverenv_call(&s, "PATCH", "/v1/products/apple", NULL, NULL, &r);
	expect_problem(&r, 405, "method-not-allowed");
	cr_expect_str_eq(http_header(&r, "Allow", buf, sizeof(buf)), "GET, PUT, DELETE");
	http_response_free(&r);

	serverenv_call(&s, "GET", "/v2/nothing", NULL, NULL, &r);
	expect_problem(&r, 404, "not-found");
	http_response_free(&r);
	serverenv_stop(&s);
}

/*
 * The routes table (service/server/routes.c) as a client sees it: which path
 * and method reach which answer, checked in the order the server checks
 * them (size, path, method, parameter, token, Content-Type), and which
 * route each request is counted under in /metrics.
 */
Test(server, every_route_answers_its_methods_and_checks_in_order)
{
	static const struct {
		const char *method, *path;
		bool token, json;
		long status;
		const char *allow; /* the Allow header of a 405 */
		const char *route; /* its label in checkout_http_requests_total */
	} cases[] = {
	    {"GET", "/v1/checkout", true, true, 405, "POST", "/v1/checkout"},
	    {"POST", "/v1/checkout", true, false, 415, NULL, "/v1/checkout"},
	    {"GET", "/v1/products", false, false, 200, NULL, "/v1/products"},
	    {"HEAD", "/v1/products", false, false, 200, NULL, "/v1/products"},
	    {"POST", "/v1/products", true, true, 405, "GET", "/v1/products"},
	    {"GET", "/v1/products/", false, false, 404, NULL, "other"},
	    {"GET", "/v1/products/apple", false, false, 200, NULL, "/v1/products/{sku}"},
	    {"HEAD", "/v1/products/apple", false, false, 200, NULL, "/v1/products/{sku}"},
	    {"GET", "/v1/products/a%2Fb", false, false, 404, NULL, "/v1/products/{sku}"},
	    {"PATCH", "/v1/products/apple", true, true, 405, "GET, PUT, DELETE", "/v1/products/{sku}"},
	    {"DELETE", "/v1/products/apple", false, true, 401, NULL, "/v1/products/{sku}"},
	    {"DELETE", "/v1/products/%01", true, true, 404, NULL, "/v1/products/{sku}"},
	    {"PUT", "/v1/products/apple", false, true, 401, NULL, "/v1/products/{sku}"},
	    {"PUT", "/v1/products/apple", true, false, 415, NULL, "/v1/products/{sku}"},
	    {"PUT", "/v1/products/%01", true, true, 404, NULL, "/v1/products/{sku}"},
	    {"GET", "/v1/products/apple/stock-adjustments", true, true, 405, "POST",
	     "/v1/products/{sku}/stock-adjustments"},
	    {"POST", "/v1/products/apple/stock-adjustments", false, true, 401, NULL,
	     "/v1/products/{sku}/stock-adjustments"},
	    {"POST", "/v1/products/apple/stock-adjustments", true, false, 415, NULL,
	     "/v1/products/{sku}/stock-adjustments"},
	    {"POST", "/v1/products/%01/stock-adjustments", true, true, 404, NULL,
	     "/v1/products/{sku}/stock-adjustments"},
	    /* no SKU before the suffix: the rest is a SKU of the product route */
	    {"POST", "/v1/products//stock-adjustments", true, true, 405, "GET, PUT, DELETE",
	     "/v1/products/{sku}"},
	    {"GET", "/v1/limits/gpu", true, true, 405, "PUT", "/v1/limits/{group}"},
	    {"PUT", "/v1/limits/gpu", false, true, 401, NULL, "/v1/limits/{group}"},
	    {"PUT", "/v1/limits/gpu", true, false, 415, NULL, "/v1/limits/{group}"},
	    {"PUT", "/v1/limits/", true, true, 404, NULL, "other"},
	    {"GET", "/v1/orders/not-a-uuid", false, false, 404, NULL, "/v1/orders/{id}"},
	    {"GET", "/v1/orders/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", false, false, 404, NULL,
	     "/v1/orders/{id}"},
	    {"POST", "/v1/orders/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", true, true, 405, "GET",
	     "/v1/orders/{id}"},
	    {"POST", "/healthz", true, true, 405, "GET", "/healthz"},
	    {"POST", "/readyz", true, true, 405, "GET", "/readyz"},
	    {"PUT", "/metrics", true, true, 405, "GET", "/metrics"},
	    {"GET", "/v1", false, false, 404, NULL, "other"},
	    {"GET", "/v1/checkout/", false, false, 404, NULL, "other"},
	};
	struct serverenv s;
	struct http_response r;
	char buf[128], sample[160];
	serverenv_start(&s, SEED, ADMIN_ENV);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *headers[3] = {NULL};
		int h = 0;
		if (cases[i].token)
			headers[h++] = "Authorization: Bearer s3cret-token";
		headers[h++] = cases[i].json ? "Content-Type: application/json" : "Content-Type: text/plain";
		double before = 0;
		snprintf(sample, sizeof(sample), "checkout_http_requests_total{route=\"%s\",status=\"%ld\"}",
			 cases[i].route, cases[i].status);
		before = serverenv_metric(&s, sample);
		serverenv_call(
		    &s, cases[i].method, cases[i].path, headers,
		    strcmp(cases[i].method, "GET") && strcmp(cases[i].method, "HEAD") ? "{}" : NULL, &r);
		cr_expect_eq(r.status, cases[i].status, "%s %s: expected %ld, got %ld: %s", cases[i].method,
			     cases[i].path, cases[i].status, r.status, r.body);
		if (cases[i].status != 200 && strcmp(cases[i].method, "HEAD"))
			cr_expect_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)),
					 "application/problem+json", "%s %s", cases[i].method, cases[i].path);
		const char *allow = http_header(&r, "Allow", buf, sizeof(buf));
		if (cases[i].allow)
			cr_expect(allow && !strcmp(allow, cases[i].allow), "%s %s: Allow is %s, expected %s",
				  cases[i].method, cases[i].path, allow ? allow : "(none)", cases[i].allow);
		else
			cr_expect_null(allow, "%s %s: Allow %s", cases[i].method, cases[i].path, allow);
		http_response_free(&r);
		cr_expect_eq(serverenv_metric(&s, sample), before < 0 ? 1 : before + 1, "%s %s counted as %s",
			     cases[i].method, cases[i].path, sample);
	}
	serverenv_stop(&s);
}

static const char *const CART =
    "{\"customer_id\":\"idem\",\"email\":\"i@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}";
static const char *const CART2 =
    "{\"customer_id\":\"idem\",\"email\":\"i@b.c\",\"items\":[{\"sku\":\"apple\",\"quantity\":2}]}";

Test(server, idempotency_key_replays_the_first_answer_and_refuses_another_body)
{
	struct serverenv s;
	struct http_response first, again, other;
	char buf[256], loc[256];
	serverenv_start(&s, SEED, NULL);

	post_checkout(&s, CART, "key-1", &first);
	cr_assert_eq(first.status, 201, "%s", first.body);
	cr_expect_null(http_header(&first, "Idempotent-Replayed", buf, sizeof(buf)));
	post_checkout(&s, CART, "key-1", &again);
	cr_assert_eq(again.status, 201, "%s", again.body);
	cr_expect_str_eq(again.body, first.body);
	cr_expect_str_eq(http_header(&again, "Idempotent-Replayed", buf, sizeof(buf)), "true");
	cr_expect_str_eq(http_header(&again, "Location", buf, sizeof(buf)),
			 http_header(&first, "Location", loc, sizeof(loc)));
	cr_expect_eq(stock_of(&s, "apple"), 9);
	cr_expect_eq(count_rows(&s, "orders"), 1);
	cr_expect_eq(count_rows(&s, "outbox"), 1);

	post_checkout(&s, CART2, "key-1", &other);
	expect_problem(&other, 422, "idempotency-key-mismatch");
	cr_expect_eq(stock_of(&s, "apple"), 9);
	http_response_free(&first);
	http_response_free(&again);
	http_response_free(&other);

	/* a rejection is remembered too */
	post_checkout(
	    &s, "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"plum\",\"quantity\":5}]}",
	    "key-2", &first);
	expect_problem(&first, 409, "out-of-stock");
	testenv_exec(s.conn, "UPDATE products SET stock = 100 WHERE sku = 'plum'");
	post_checkout(
	    &s, "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"plum\",\"quantity\":5}]}",
	    "key-2", &again);
	expect_problem(&again, 409, "out-of-stock");
	cr_expect_str_eq(http_header(&again, "Idempotent-Replayed", buf, sizeof(buf)), "true");
	cr_expect_str_eq(again.body, first.body);
	http_response_free(&first);
	http_response_free(&again);

	/* a bad key is a 400 */
	post_checkout(&s, CART, "has space", &first);
	expect_problem(&first, 400, "invalid-request");
	http_response_free(&first);

	/* after 24 hours the key is free again */
	testenv_exec(s.conn, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours', "
			     "expires_at = now() - interval '1 hour' WHERE key = 'key-1'");
	post_checkout(&s, CART2, "key-1", &first);
	cr_expect_eq(first.status, 201, "%s", first.body);
	cr_expect_null(http_header(&first, "Idempotent-Replayed", buf, sizeof(buf)));
	cr_expect_eq(stock_of(&s, "apple"), 7);
	http_response_free(&first);
	serverenv_stop(&s);
}

Test(server, idempotency_keys_past_their_24_hours_are_deleted_while_it_runs)
{
	static const char *const env[] = {"IDEMPOTENCY_PURGE_SECONDS=1", NULL};
	struct serverenv s;
	serverenv_start(&s, NULL, env);
	/* inserted after the start, so only the periodic pass can delete them */
	testenv_exec(
	    s.conn,
	    "INSERT INTO idempotency_keys (key, request_hash, status, expires_at) "
	    "SELECT 'old-' || i, 'h', 201, now() - interval '1 minute' FROM generate_series(1, 6000) i");
	testenv_exec(s.conn,
		     "INSERT INTO idempotency_keys (key, request_hash, status) VALUES ('fresh', 'h', 201)");
	long old = -1;
	for (int i = 0; i < 100 && old != 0; i++) {
		testenv_sleep_ms(100);
		old = testenv_query_long(s.conn,
					 "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'old-%'");
	}
	cr_expect_eq(old, 0, "%ld expired keys left after 10 s", old);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM idempotency_keys WHERE key = 'fresh'"),
		     1);
	/* one statement inserted them all, so one pass deletes them all, in two batches */
	cr_expect(testenv_wait_log(&s.proc, "deleted 6000 idempotency keys past their 24 hours", 2000));
	serverenv_stop(&s);
}

struct concurrent_call {
	struct serverenv *s;
	const char *body;
	const char *key;
	struct http_response r;
};

static void *call_thread(void *arg)
{
	struct concurrent_call *c = arg;
	char url[128], header[300];
	const char *headers[] = {c->key ? header : NULL, NULL};
	if (c->key)
		snprintf(header, sizeof(header), "Idempotency-Key: %s", c->key);
	snprintf(url, sizeof(url), "%s/v1/checkout", c->s->base);
	if (!http_call("POST", url, headers, c->body, &c->r))
		c->r.status = -1;
	return NULL;
}

Test(server, serialization_failures_are_retried_and_both_checkouts_succeed)
{
	/* the hot-SKU queue would make the two take turns: no conflict to retry */
	static const char *const env[] = {"RACE_PAUSE_MS=300", "HOT_SKU_QUEUE=false", NULL};
	struct serverenv s;
	struct concurrent_call calls[2];
	pthread_t threads[2];
	serverenv_start(&s, SEED, env);
	cr_assert_eq(serverenv_metric(&s, "checkout_serialization_retries_total"), 0);

	/* both read stock 10 and both want to write it: SSI aborts one, the retry sees the other's write */
	for (int i = 0; i < 2; i++) {
		calls[i] = (struct concurrent_call){
		    .s = &s,
		    .body = i ? "{\"customer_id\":\"r2\",\"email\":\"r@b.c\",\"items\":"
				"[{\"sku\":\"apple\",\"quantity\":2}]}"
			      : "{\"customer_id\":\"r1\",\"email\":\"r@b.c\",\"items\":"
				"[{\"sku\":\"apple\",\"quantity\":3}]}"};
		pthread_create(&threads[i], NULL, call_thread, &calls[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(calls[i].r.status, 201, "call %d: %ld %s", i, calls[i].r.status,
			     calls[i].r.body);
		http_response_free(&calls[i].r);
	}
	cr_expect_eq(stock_of(&s, "apple"), 5);
	cr_expect_eq(count_rows(&s, "orders"), 2);
	cr_expect_gt(serverenv_metric(&s, "checkout_serialization_retries_total"), 0);
	cr_expect_eq(serverenv_metric(&s, "checkout_outcomes_total{outcome=\"admitted\"}"), 2);
	serverenv_stop(&s);
}

Test(server, disjoint_carts_do_not_conflict_because_every_read_uses_an_index)
{
	/* tables analysed while tiny: the planner would pick sequential scans, whose
	 * relation-wide SIREAD locks make any two checkouts conflict */
	static const char *const env[] = {"RACE_PAUSE_MS=300", NULL};
	struct serverenv s;
	struct concurrent_call calls[2];
	pthread_t threads[2];
	serverenv_start(&s, SEED, env);
	for (int i = 0; i < 2; i++) {
		calls[i] = (struct concurrent_call){
		    .s = &s,
		    .body = i ? "{\"customer_id\":\"d2\",\"email\":\"r@b.c\",\"items\":"
				"[{\"sku\":\"pear\",\"quantity\":1}]}"
			      : "{\"customer_id\":\"d1\",\"email\":\"r@b.c\",\"items\":"
				"[{\"sku\":\"apple\",\"quantity\":1}]}"};
		pthread_create(&threads[i], NULL, call_thread, &calls[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(calls[i].r.status, 201, "call %d: %ld %s", i, calls[i].r.status,
			     calls[i].r.body);
		http_response_free(&calls[i].r);
	}
	cr_expect_eq(serverenv_metric(&s, "checkout_serialization_retries_total"), 0);
	serverenv_stop(&s);
}

struct buyer {
	struct serverenv *s;
	int n;
	int admitted;
};

static void *buy_own_sku(void *arg)
{
	struct buyer *b = arg;
	char url[128], body[256];
	snprintf(url, sizeof(url), "%s/v1/checkout", b->s->base);
	snprintf(body, sizeof(body),
		 "{\"customer_id\":\"buyer-%d\",\"email\":\"b@b.c\",\"items\":[{\"sku\":\"own-%d\","
		 "\"quantity\":1}]}",
		 b->n, b->n);
	for (int i = 0; i < 15; i++) {
		struct http_response r;
		if (http_call("POST", url, NULL, body, &r) && r.status == 201)
			b->admitted++;
		http_response_free(&r);
	}
	return NULL;
}

Test(server, concurrent_checkouts_of_disjoint_skus_need_no_retries)
{
	/* foreign-key checks and the writes must not touch index pages other
	 * checkouts read: 8 buyers of their own SKU run (nearly) without a 40001 */
	struct serverenv s;
	struct buyer buyers[8];
	pthread_t threads[8];
	serverenv_start(&s,
			"INSERT INTO products (sku, name, price_cents, stock) "
			"SELECT 'own-' || g, 'Own', 10, 1000 FROM generate_series(0, 7) g; ANALYZE",
			NULL);
	for (int i = 0; i < 8; i++) {
		buyers[i] = (struct buyer){.s = &s, .n = i};
		pthread_create(&threads[i], NULL, buy_own_sku, &buyers[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(buyers[i].admitted, 15);
	}
	cr_expect_eq(count_rows(&s, "orders"), 8 * 15);
	/* with a foreign key from order_lines to orders this was 38-63; allow a
	 * rare conflict from PostgreSQL's own summarizing of old transactions */
	double retries = serverenv_metric(&s, "checkout_serialization_retries_total");
	cr_expect_leq(retries, 2, "%.0f serialization retries for 120 disjoint checkouts", retries);
	serverenv_stop(&s);
}

/* A TCP connection to the server on 127.0.0.1, not yet used. */
static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	return fd;
}

/* True when the server closes fd (end of file or a reset) within timeout_ms. */
static bool closed_within(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;
	return poll(&p, 1, timeout_ms) == 1 && recv(fd, &c, 1, 0) <= 0;
}

/* Send GET /healthz on a raw connection; true when it answers 200 within 5 s. */
static bool healthz_on(int fd)
{
	static const char get[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	char reply[512] = "";
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (send(fd, get, strlen(get), MSG_NOSIGNAL) != (ssize_t)strlen(get) || poll(&p, 1, 5000) != 1 ||
	    recv(fd, reply, sizeof(reply) - 1, 0) <= 0)
		return false;
	return !strncmp(reply, "HTTP/1.1 200", 12);
}

Test(server, connections_past_the_per_ip_limit_are_refused_and_idle_ones_closed)
{
	static const char *const env[] = {"HTTP_MAX_CONNECTIONS_PER_IP=2", "HTTP_IDLE_TIMEOUT_SECONDS=3",
					  NULL};
	struct serverenv s;
	serverenv_start(&s, SEED, env);

	/* two connections, each answering a request; the start-up's probes count against the
	 * limit until the server has seen them close, so try again until both get in */
	int first = -1, second = -1;
	for (int tries = 0; tries < 40; tries++) {
		first = raw_connect(s.port);
		second = raw_connect(s.port);
		if (healthz_on(first) && healthz_on(second))
			break;
		close(first);
		close(second);
		first = second = -1;
		testenv_sleep_ms(250);
	}
	cr_assert(first >= 0, "two connections from one address never both got an answer");

	int third = raw_connect(s.port);
	cr_expect(closed_within(third, 2000), "a third connection from one address was not refused");
	cr_expect(!closed_within(second, 0), "the second connection was closed at once");
	/* another gets in once one goes away (and the server has seen it go) */
	close(third);
	close(second);
	bool answered = false;
	for (int tries = 0; tries < 40 && !answered; tries++) {
		int again = raw_connect(s.port);
		answered = healthz_on(again);
		close(again);
		if (!answered)
			testenv_sleep_ms(100);
	}
	cr_expect(answered, "no new connection got in after two of three closed");

	/* the first, idle since its request, is closed after the idle timeout */
	cr_expect(closed_within(first, 10000), "an idle connection was still open after 10 s");
	close(first);
	serverenv_stop(&s);
}

Test(server, a_slow_checkout_does_not_stall_other_connections)
{
	static const char *const env[] = {"RACE_PAUSE_MS=1500", NULL};
	struct serverenv s;
	struct concurrent_call slow = {0};
	pthread_t thread;
	struct http_response r;
	serverenv_start(&s, SEED, env);

	slow.s = &s;
	slow.body = CART;
	pthread_create(&thread, NULL, call_thread, &slow);
	/* wait until the slow checkout is inside its transaction */
	bool inside = false;
	for (int i = 0; i < 300 && !inside; i++) {
		inside =
		    testenv_query_long(s.conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
					       "current_database() AND state = 'idle in transaction'") > 0;
		if (!inside)
			testenv_sleep_ms(10);
	}
	cr_expect(inside, "the slow checkout never started");
	serverenv_call(&s, "GET", "/v1/products/apple", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	http_response_free(&r);
	serverenv_call(&s, "GET", "/healthz", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	http_response_free(&r);
	/* both answered while the slow one still holds its transaction open */
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 0);
	cr_expect_gt(testenv_query_long(s.conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
						"current_database() AND state = 'idle in transaction'"),
		     0);
	pthread_join(thread, NULL);
	cr_expect_eq(slow.r.status, 201, "%s", slow.r.body);
	http_response_free(&slow.r);
	serverenv_stop(&s);
}

/* The PostgreSQL cluster the tests run on (pg_virtualenv's throw-away one), found
 * through a connection to it, so that a test can stop and start it with pg_ctl. */
struct pg_cluster {
	char data_dir[512];
	char pg_ctl[256];
	char log_path[600]; /* pg_ctl's output, and the restarted server's log */
	uid_t uid;	    /* the cluster's owner: pg_ctl refuses to run as root */
	gid_t gid;
};

/* The pg_ctl of PostgreSQL major version major, else of the newest installed version;
 * false if there is none. */
static bool pg_cluster_find_pg_ctl(int major, char *path, size_t len)
{
	snprintf(path, len, "/usr/lib/postgresql/%d/bin/pg_ctl", major);
	if (access(path, X_OK) == 0)
		return true;
	int newest = -1;
	DIR *dir = opendir("/usr/lib/postgresql");
	for (struct dirent *e = dir ? readdir(dir) : NULL; e; e = readdir(dir)) {
		char *end = NULL, candidate[320];
		long v = strtol(e->d_name, &end, 10);
		snprintf(candidate, sizeof(candidate), "/usr/lib/postgresql/%s/bin/pg_ctl", e->d_name);
		if (end != e->d_name && !*end && v > newest && v < 1000 && access(candidate, X_OK) == 0)
			newest = (int)v;
	}
	if (dir)
		closedir(dir);
	snprintf(path, len, "/usr/lib/postgresql/%d/bin/pg_ctl", newest);
	return newest >= 0;
}

/* Fill c from conn (a superuser connection, as under pg_virtualenv); fails the test if it cannot. */
static void pg_cluster_find(PGconn *conn, struct pg_cluster *c)
{
	memset(c, 0, sizeof(*c));
	PGresult *res = PQexec(conn, "SELECT current_setting('data_directory'),"
				     " current_setting('server_version_num')::int / 10000");
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1,
		  "cannot ask PostgreSQL for its data directory (the test needs a superuser): %s",
		  PQresultErrorMessage(res));
	snprintf(c->data_dir, sizeof(c->data_dir), "%s", PQgetvalue(res, 0, 0));
	int major = atoi(PQgetvalue(res, 0, 1));
	PQclear(res);
	cr_assert(pg_cluster_find_pg_ctl(major, c->pg_ctl, sizeof(c->pg_ctl)),
		  "no pg_ctl in /usr/lib/postgresql/*/bin to stop PostgreSQL %d", major);
	struct stat st;
	cr_assert_eq(stat(c->data_dir, &st), 0, "the data directory %s is not on this machine: %s",
		     c->data_dir, strerror(errno));
	c->uid = st.st_uid;
	c->gid = st.st_gid;
	mkdir(CHECKOUT_TEST_TMP, 0755);
	snprintf(c->log_path, sizeof(c->log_path), "%s/postgres-restart.%d.log", CHECKOUT_TEST_TMP,
		 (int)getpid());
}

/* Run pg_ctl ACTION -D data_dir extra... as the cluster's owner; true if it exits 0. */
static bool pg_cluster_ctl(const struct pg_cluster *c, const char *action, const char *const *extra)
{
	const char *argv[16] = {c->pg_ctl, action, "-D", c->data_dir, "-w", "-t", "60"};
	int n = 7;
	for (int i = 0; extra && extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int null = open("/dev/null", O_RDONLY);
		if (fd < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
		    dup2(fd, STDERR_FILENO) < 0)
			_exit(126);
		/* a started postmaster keeps what it inherits: none of the test runner's descriptors */
		close_range(3, ~0U, 0);
		if (geteuid() == 0 && c->uid != 0 &&
		    (setgroups(0, NULL) != 0 || setgid(c->gid) != 0 || setuid(c->uid) != 0)) {
			fprintf(stderr, "cannot become the cluster's owner (uid %d): %s\n", (int)c->uid,
				strerror(errno));
			_exit(126);
		}
		execv(c->pg_ctl, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", c->pg_ctl, strerror(errno));
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool pg_cluster_stop(const struct pg_cluster *c)
{
	const char *fast[] = {"-m", "fast", NULL};
	return pg_cluster_ctl(c, "stop", fast);
}

/* Start it again the way it was started: postmaster.opts has the original command line
 * (under Debian a config_file outside the data directory), after its program and -D. */
static bool pg_cluster_start(const struct pg_cluster *c)
{
	char path[600], opts[2048] = "";
	snprintf(path, sizeof(path), "%s/postmaster.opts", c->data_dir);
	char *text = testenv_read_file(path);
	cr_assert(text, "cannot read %s", path);
	char *args = strchr(text, ' '); /* after the program */
	const char *dashd = "\"-D\" \"";
	if (args && !strncmp(args + 1, dashd, strlen(dashd))) { /* skip "-D" "dir": pg_ctl adds it */
		char *end = strchr(args + 1 + strlen(dashd), '"');
		args = end ? end + 1 : NULL;
	}
	if (args)
		snprintf(opts, sizeof(opts), "%.*s", (int)strcspn(args, "\n"), args);
	free(text);
	const char *extra[] = {"-o", opts, NULL};
	return pg_cluster_ctl(c, "start", extra);
}

static long checkout_until(struct serverenv *s, long want, int timeout_ms)
{
	long status = 0;
	for (int waited = 0; waited <= timeout_ms; waited += 200) {
		struct http_response r;
		post_checkout(s, CART, NULL, &r);
		status = r.status;
		http_response_free(&r);
		if (status == want)
			break;
		testenv_sleep_ms(200);
	}
	return status;
}

Test(server, database_connections_lost_are_reopened)
{
	struct serverenv s;
	serverenv_start(&s, SEED, NULL);
	cr_assert_eq(checkout_until(&s, 201, 0), 201);

	/* what a restart does to the pooled connections */
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
		 "WHERE datname = current_database() AND pid <> pg_backend_pid()");
	cr_expect_gt(testenv_query_long(s.conn, sql), 0);
	struct http_response r;
	post_checkout(&s, CART, NULL, &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	serverenv_call(&s, "GET", "/readyz", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	http_response_free(&r);
	serverenv_stop(&s);
}

Test(server, database_restart_gives_503_during_and_201_after)
{
	struct serverenv s;
	struct http_response r;
	char buf[64];
	serverenv_start(&s, SEED, NULL);
	cr_assert_eq(checkout_until(&s, 201, 0), 201);
	struct pg_cluster pg;
	pg_cluster_find(s.conn, &pg);
	PQfinish(s.conn);
	s.conn = NULL;

	/* no way around it: a test that cannot stop the database has not shown anything */
	cr_assert(pg_cluster_stop(&pg), "cannot stop PostgreSQL with %s -D %s; see %s", pg.pg_ctl,
		  pg.data_dir, pg.log_path);
	cr_assert_eq(PQping(s.db), PQPING_NO_RESPONSE, "PostgreSQL is down");
	double t0 = monotonic_seconds();
	post_checkout(&s, CART, NULL, &r);
	double took = monotonic_seconds() - t0;
	long during = r.status;
	bool retry_after = http_header(&r, "Retry-After", buf, sizeof(buf)) != NULL;
	http_response_free(&r);
	serverenv_call(&s, "GET", "/readyz", NULL, NULL, &r);
	long ready_during = r.status;
	http_response_free(&r);
	serverenv_call(&s, "GET", "/healthz", NULL, NULL, &r);
	long alive_during = r.status;
	http_response_free(&r);

	cr_assert(pg_cluster_start(&pg), "PostgreSQL did not start again; see %s", pg.log_path);
	cr_expect_eq(during, 503);
	cr_expect(retry_after);
	cr_expect_lt(took, 3.0, "the 503 took %.1f s", took);
	cr_expect_eq(ready_during, 503);
	cr_expect_eq(alive_during, 200);
	cr_expect_eq(checkout_until(&s, 201, 20000), 201);
	s.conn = testenv_db_connect(s.db);
	serverenv_stop(&s);
}

Test(server, admin_writes_need_the_bearer_token)
{
	struct serverenv s;
	struct http_response r;
	char buf[64];
	serverenv_start(&s, SEED, ADMIN_ENV);
	const char *none[] = {NULL};
	const char *wrong[] = {"Authorization: Bearer s3cret-tokex", NULL};
	const char *right[] = {"Authorization: Bearer s3cret-token", NULL};

	serverenv_call(&s, "PUT", "/v1/products/kiwi", none,
		       "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4}", &r);
	expect_problem(&r, 401, "unauthorized");
	cr_expect_str_eq(http_header(&r, "WWW-Authenticate", buf, sizeof(buf)), "Bearer");
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/products/kiwi", wrong,
		       "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4}", &r);
	expect_problem(&r, 401, "unauthorized");
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM products WHERE sku = 'kiwi'"), 0);

	serverenv_call(&s, "PUT", "/v1/limits/fruit", right, "{\"per_customer\":2}", &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/limits/fruit", right, "{\"per_customer\":1}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "per_customer")), 1);
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/limits/fruit", right, "{\"per_customer\":0}", &r);
	expect_problem(&r, 400, "invalid-request");
	http_response_free(&r);

	serverenv_call(&s, "PUT", "/v1/products/kiwi", right,
		       "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4,\"limit_group\":\"fruit\"}", &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "limit_group")), "fruit");
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/products/kiwi", right,
		       "{\"name\":\"Kiwi\",\"price_cents\":35,\"stock\":9}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT price_cents FROM products WHERE sku = 'kiwi'"), 35);
	cr_expect_eq(stock_of(&s, "kiwi"), 9);
	serverenv_call(&s, "PUT", "/v1/products/kiwi", right,
		       "{\"name\":\"Kiwi\",\"price_cents\":35,\"stock\":9,\"limit_group\":\"nope\"}", &r);
	expect_problem(&r, 422, "unknown-limit-group");
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/products/kiwi", right,
		       "{\"name\":\"Kiwi\",\"price_cents\":-1,\"stock\":9}", &r);
	expect_problem(&r, 400, "invalid-request");
	http_response_free(&r);
	serverenv_stop(&s);
}

Test(server, admin_writes_are_forbidden_when_no_token_is_configured)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);
	const char *some[] = {"Authorization: Bearer anything", NULL};
	serverenv_call(&s, "PUT", "/v1/limits/gpu", some, "{\"per_customer\":9}", &r);
	expect_problem(&r, 403, "forbidden");
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT per_customer FROM limit_groups"), 3);
	serverenv_stop(&s);
}

Test(server, products_and_orders_can_be_read)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);
	serverenv_call(&s, "GET", "/v1/products", NULL, NULL, &r);
	cr_assert_eq(r.status, 200);
	json_t *products = json_object_get(r.json, "products");
	cr_assert_eq(json_array_size(products), 5);
	json_t *p = json_array_get(products, 0);
	cr_expect_str_eq(json_string_value(json_object_get(p, "sku")), "apple");
	cr_expect_str_eq(json_string_value(json_object_get(p, "name")), "Apple");
	cr_expect_eq(json_integer_value(json_object_get(p, "price_cents")), 120);
	cr_expect_eq(json_integer_value(json_object_get(p, "stock")), 10);
	cr_expect(json_is_null(json_object_get(p, "limit_group")));
	http_response_free(&r);

	serverenv_call(&s, "GET", "/v1/products/gpu-a", NULL, NULL, &r);
	cr_assert_eq(r.status, 200);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "limit_group")), "gpu");
	http_response_free(&r);
	serverenv_call(&s, "GET", "/v1/products/nope", NULL, NULL, &r);
	expect_problem(&r, 404, "not-found");
	http_response_free(&r);
	serverenv_call(&s, "GET", "/v1/orders/7d444840-9dc0-11d1-b245-5ffdce74fad2", NULL, NULL, &r);
	expect_problem(&r, 404, "not-found");
	http_response_free(&r);
	serverenv_call(&s, "GET", "/v1/orders/not-a-uuid", NULL, NULL, &r);
	expect_problem(&r, 404, "not-found");
	http_response_free(&r);
	serverenv_stop(&s);
}

/* The SKUs of a product list, joined with spaces, into out. */
static void list_skus(const struct http_response *r, char *out, size_t outlen)
{
	size_t i, w = 0;
	json_t *p;
	out[0] = '\0';
	json_array_foreach(json_object_get(r->json, "products"), i, p)
	{
		w += (size_t)snprintf(out + w, outlen - w, "%s%s", i ? " " : "",
				      json_string_value(json_object_get(p, "sku")));
		if (w >= outlen)
			break;
	}
}

Test(server, the_product_list_comes_in_pages_linked_by_next)
{
	struct serverenv s;
	struct http_response r;
	char skus[256];
	serverenv_start(&s, SEED, NULL);
	testenv_exec(s.conn, "INSERT INTO products (sku, name, price_cents, stock) VALUES "
			     "('a b/c&d', 'Odd SKU', 1, 1), ('zürich', 'Unicode SKU', 1, 1)");

	serverenv_call(&s, "GET", "/v1/products", NULL, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	list_skus(&r, skus, sizeof(skus));
	cr_expect_str_eq(skus, "a b/c&d apple gpu-a gpu-b pear plum zürich");
	cr_expect_null(json_object_get(r.json, "next"), "one page holds them all: %s", r.body);
	http_response_free(&r);

	/* follow next with two a page: every product once, in order, and no next on the last page */
	const char *expected[] = {"a b/c&d apple", "gpu-a gpu-b", "pear plum", "zürich"};
	char url[512] = "/v1/products?limit=2";
	for (size_t page = 0; page < 4; page++) {
		serverenv_call(&s, "GET", url, NULL, NULL, &r);
		cr_assert_eq(r.status, 200, "%s: %s", url, r.body);
		list_skus(&r, skus, sizeof(skus));
		cr_expect_str_eq(skus, expected[page], "page %zu (%s)", page, url);
		const char *next = json_string_value(json_object_get(r.json, "next"));
		if (page < 3) {
			cr_assert(next, "page %zu has no next: %s", page, r.body);
			snprintf(url, sizeof(url), "%s", next);
		} else {
			cr_expect_null(next, "the last page links on: %s", r.body);
		}
		http_response_free(&r);
	}
	/* the first next link percent-encodes the SKU it continues after */
	serverenv_call(&s, "GET", "/v1/products?limit=1", NULL, NULL, &r);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "next")),
			 "/v1/products?limit=1&after=a%20b%2Fc%26d");
	http_response_free(&r);

	const char *bad[][2] = {
	    {"/v1/products?limit=0", "limit"},	    {"/v1/products?limit=1001", "limit"},
	    {"/v1/products?limit=-1", "limit"},	    {"/v1/products?limit=abc", "limit"},
	    {"/v1/products?limit=2x", "limit"},	    {"/v1/products?limit=99999999999999999999", "limit"},
	    {"/v1/products?limit=", "limit"},	    {"/v1/products?after=", "after"},
	    {"/v1/products?after=%FF%FE", "after"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		serverenv_call(&s, "GET", bad[i][0], NULL, NULL, &r);
		expect_problem(&r, 400, "invalid-request");
		json_t *e = json_array_get(json_object_get(r.json, "errors"), 0);
		cr_expect_str_eq(json_string_value(json_object_get(e, "field")), bad[i][1], "%s: %s",
				 bad[i][0], r.body);
		http_response_free(&r);
	}
	serverenv_stop(&s);
}

Test(server, health_readiness_and_metrics)
{
	struct serverenv s;
	struct http_response r;
	serverenv_start(&s, SEED, NULL);
	serverenv_call(&s, "GET", "/healthz", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	http_response_free(&r);
	serverenv_call(&s, "GET", "/readyz", NULL, NULL, &r);
	cr_expect_eq(r.status, 200);
	http_response_free(&r);
	post_checkout(&s, CART, NULL, &r);
	http_response_free(&r);
	post_checkout(
	    &s, "{\"customer_id\":\"c\",\"email\":\"a@b.c\",\"items\":[{\"sku\":\"plum\",\"quantity\":5}]}",
	    NULL, &r);
	http_response_free(&r);
	cr_expect_eq(
	    serverenv_metric(&s, "checkout_http_requests_total{route=\"/v1/checkout\",status=\"201\"}"), 1);
	cr_expect_eq(
	    serverenv_metric(&s, "checkout_http_requests_total{route=\"/v1/checkout\",status=\"409\"}"), 1);
	cr_expect_eq(serverenv_metric(&s, "checkout_http_requests_total{route=\"/readyz\",status=\"200\"}"),
		     1);
	cr_expect_eq(serverenv_metric(&s, "checkout_outcomes_total{outcome=\"out_of_stock\"}"), 1);
	cr_expect_eq(serverenv_metric(&s, "checkout_duration_seconds_count"), 2);
	cr_expect_eq(serverenv_metric(&s, "checkout_duration_seconds_bucket{le=\"+Inf\"}"), 2);
	cr_expect_geq(serverenv_metric(&s, "checkout_db_pool_waits_total"), 0);
	/* both checkouts took every step once: the admitted one wrote, the other committed its reads */
	static const char *const steps[] = {"hot_sku_wait", "pool_wait", "read", "write_commit"};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char sample[96];
		snprintf(sample, sizeof(sample), "checkout_step_seconds_count{step=\"%s\"}", steps[i]);
		cr_expect_eq(serverenv_metric(&s, sample), 2, "%s", sample);
		snprintf(sample, sizeof(sample), "checkout_step_seconds_bucket{step=\"%s\",le=\"+Inf\"}",
			 steps[i]);
		cr_expect_eq(serverenv_metric(&s, sample), 2, "%s", sample);
	}
	cr_expect_gt(serverenv_metric(&s, "checkout_step_seconds_sum{step=\"read\"}"), 0);
	serverenv_stop(&s);
}

Test(server, weaker_isolation_logs_a_loud_warning)
{
	static const char *const env[] = {"ISOLATION=read-committed", NULL};
	struct serverenv s;
	serverenv_start(&s, SEED, env);
	cr_expect(testenv_wait_log(&s.proc, "NOT safe", 2000));
	cr_expect(testenv_wait_log(&s.proc, "isolation READ COMMITTED", 2000));
	serverenv_stop(&s);
}
