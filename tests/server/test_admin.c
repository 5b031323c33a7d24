/* The admin's writes to a product cannot lose a sale: GET gives an ETag that
 * every write of the row changes (a checkout's too), PUT honours If-Match
 * (412 when stale), and POST .../stock-adjustments changes the stock by a
 * delta in one statement, so a restock never undoes a sale made meanwhile. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serverenv.h"

static const char *const SEED = "INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES"
				" ('apple', 'Apple', 120, 10, NULL),"
				" ('pear', 'Pear', 80, 5, NULL);"
				"ANALYZE;";

static const char *const ADMIN_ENV[] = {"ADMIN_TOKEN=s3cret-token", NULL};
#define AUTH "Authorization: Bearer s3cret-token"

static long stock_of(struct serverenv *s, const char *sku)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT stock FROM products WHERE sku = '%s'", sku);
	return testenv_query_long(s->conn, sql);
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
	cr_expect_eq(json_integer_value(json_object_get(r->json, "status")), status);
}

/* True when the problem's errors name field. */
static bool names_field(const struct http_response *r, const char *field)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r->json, "errors"), i, e)
	{
		if (!strcmp(json_string_value(json_object_get(e, "field")), field))
			return true;
	}
	return false;
}

/* GET the product and copy its ETag into etag (empty when it has none). */
static void get_etag(struct serverenv *s, const char *sku, char *etag, size_t len)
{
	char path[128];
	struct http_response r;
	snprintf(path, sizeof(path), "/v1/products/%s", sku);
	serverenv_call(s, "GET", path, NULL, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	if (!http_header(&r, "ETag", etag, len))
		etag[0] = '\0';
	http_response_free(&r);
}

/* PUT a product with If-Match: etag (no If-Match when etag is NULL). */
static void put_product(struct serverenv *s, const char *sku, const char *etag, const char *body,
			struct http_response *r)
{
	char path[128], if_match[256];
	snprintf(path, sizeof(path), "/v1/products/%s", sku);
	snprintf(if_match, sizeof(if_match), "If-Match: %s", etag ? etag : "");
	const char *headers[] = {AUTH, etag ? if_match : NULL, NULL};
	serverenv_call(s, "PUT", path, headers, body, r);
}

static void adjust(struct serverenv *s, const char *sku, const char *body, struct http_response *r)
{
	char path[160];
	const char *headers[] = {AUTH, NULL};
	snprintf(path, sizeof(path), "/v1/products/%s/stock-adjustments", sku);
	serverenv_call(s, "POST", path, headers, body, r);
}

static void buy(struct serverenv *s, const char *sku, int quantity)
{
	char body[256];
	struct http_response r;
	snprintf(body, sizeof(body),
		 "{\"customer_id\":\"c\",\"email\":\"c@b.c\",\"items\":[{\"sku\":\"%s\",\"quantity\":%d}]}",
		 sku, quantity);
	serverenv_call(s, "POST", "/v1/checkout", NULL, body, &r);
	cr_assert_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
}

Test(admin, get_gives_a_strong_etag_that_every_write_of_the_row_changes)
{
	struct serverenv s;
	struct http_response r;
	char first[64], after_sale[64], after_put[64], after_adjust[64], got[64];
	serverenv_start(&s, SEED, ADMIN_ENV);

	get_etag(&s, "apple", first, sizeof(first));
	cr_assert(first[0] == '"' && strlen(first) >= 3 && first[strlen(first) - 1] == '"',
		  "not a strong ETag: '%s'", first);
	get_etag(&s, "apple", got, sizeof(got));
	cr_expect_str_eq(got, first, "the ETag changed without a write");

	buy(&s, "apple", 1);
	get_etag(&s, "apple", after_sale, sizeof(after_sale));
	cr_expect_str_neq(after_sale, first, "a checkout did not change the ETag");

	put_product(&s, "apple", NULL, "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":9}", &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect(http_header(&r, "ETag", got, sizeof(got)), "PUT answered without an ETag");
	http_response_free(&r);
	get_etag(&s, "apple", after_put, sizeof(after_put));
	cr_expect_str_eq(got, after_put, "PUT's ETag is not the one GET gives next");
	cr_expect_str_neq(after_put, after_sale, "a PUT that changed nothing did not change the ETag");

	adjust(&s, "apple", "{\"delta\":1,\"reason\":\"found one\"}", &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect(http_header(&r, "ETag", got, sizeof(got)), "the adjustment answered without an ETag");
	http_response_free(&r);
	get_etag(&s, "apple", after_adjust, sizeof(after_adjust));
	cr_expect_str_eq(got, after_adjust);
	cr_expect_str_neq(after_adjust, after_put);

	/* another product's writes leave this one's ETag alone */
	buy(&s, "pear", 1);
	get_etag(&s, "apple", got, sizeof(got));
	cr_expect_str_eq(got, after_adjust);
	serverenv_stop(&s);
}

Test(admin, a_checkout_between_get_and_put_makes_the_puts_if_match_stale)
{
	/* the lost update on the admin path: the admin reads stock 10, a customer
	 * buys 3, the admin writes 15 meaning "+5" and would restore the 3 sold */
	struct serverenv s;
	struct http_response r;
	char etag[64], current[64], buf[64];
	serverenv_start(&s, SEED, ADMIN_ENV);

	get_etag(&s, "apple", etag, sizeof(etag));
	if (!etag[0])
		snprintf(etag, sizeof(etag), "\"no-etag-given\"");
	buy(&s, "apple", 3);
	cr_assert_eq(stock_of(&s, "apple"), 7);

	put_product(&s, "apple", etag, "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":15}", &r);
	cr_expect_eq(stock_of(&s, "apple"), 7, "the PUT restored the units sold since the admin's read");
	expect_problem(&r, 412, "precondition-failed");
	get_etag(&s, "apple", current, sizeof(current));
	cr_expect_str_eq(http_header(&r, "ETag", buf, sizeof(buf)) ? buf : "", current,
			 "the 412 does not carry the current ETag");
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM order_lines"), 1);
	serverenv_stop(&s);
}

Test(admin, put_with_the_current_etag_succeeds_and_a_stale_one_is_412_and_changes_nothing)
{
	struct serverenv s;
	struct http_response r;
	char etag[64], next[64], buf[64];
	serverenv_start(&s, SEED, ADMIN_ENV);

	get_etag(&s, "apple", etag, sizeof(etag));
	put_product(&s, "apple", etag, "{\"name\":\"Red apple\",\"price_cents\":130,\"stock\":12}", &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "name")), "Red apple");
	cr_expect_eq(json_integer_value(json_object_get(r.json, "stock")), 12);
	cr_assert(http_header(&r, "ETag", next, sizeof(next)));
	cr_expect_str_neq(next, etag);
	http_response_free(&r);

	/* the first ETag is now stale: 412, the row as it was, the current ETag to retry with */
	put_product(&s, "apple", etag, "{\"name\":\"Green apple\",\"price_cents\":1,\"stock\":99}", &r);
	expect_problem(&r, 412, "precondition-failed");
	cr_expect_str_eq(http_header(&r, "ETag", buf, sizeof(buf)) ? buf : "", next);
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM products WHERE sku = 'apple' AND "
						"name = 'Red apple' AND price_cents = 130 AND stock = 12"),
		     1);

	/* a list of tags matches when one of them is current; * matches any existing product */
	char list[160];
	snprintf(list, sizeof(list), "\"1000000\", %s", next);
	put_product(&s, "apple", list, "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":12}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	put_product(&s, "apple", "*", "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":11}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_assert(http_header(&r, "ETag", next, sizeof(next)));
	http_response_free(&r);

	/* If-Match compares strongly: a weak tag never matches */
	char weak[80];
	snprintf(weak, sizeof(weak), "W/%s", next);
	put_product(&s, "apple", weak, "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":1}", &r);
	expect_problem(&r, 412, "precondition-failed");
	http_response_free(&r);

	/* If-Match on a product that does not exist cannot match, not even *: nothing is created */
	put_product(&s, "kiwi", "*", "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4}", &r);
	expect_problem(&r, 412, "precondition-failed");
	http_response_free(&r);
	put_product(&s, "kiwi", etag, "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4}", &r);
	expect_problem(&r, 412, "precondition-failed");
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM products WHERE sku = 'kiwi'"), 0);

	/* a header that is not a list of entity tags is a bad request, not a mismatch */
	put_product(&s, "apple", "12", "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":1}", &r);
	expect_problem(&r, 400, "invalid-request");
	cr_expect(names_field(&r, "If-Match"), "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 11);

	/* without If-Match a PUT is a blind overwrite (documented), and still creates */
	put_product(&s, "apple", NULL, "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":3}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	put_product(&s, "kiwi", NULL, "{\"name\":\"Kiwi\",\"price_cents\":30,\"stock\":4}", &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	cr_expect(http_header(&r, "ETag", buf, sizeof(buf)));
	http_response_free(&r);
	serverenv_stop(&s);
}

struct conditional_put {
	struct serverenv *s;
	const char *etag;
	int n;
	long status;
};

static void *put_thread(void *arg)
{
	struct conditional_put *p = arg;
	char url[128], if_match[160], body[128];
	struct http_response r;
	const char *headers[] = {AUTH, if_match, NULL};
	snprintf(url, sizeof(url), "%s/v1/products/apple", p->s->base);
	snprintf(if_match, sizeof(if_match), "If-Match: %s", p->etag);
	snprintf(body, sizeof(body), "{\"name\":\"Apple\",\"price_cents\":120,\"stock\":%d}", 100 + p->n);
	p->status = http_call("PUT", url, headers, body, &r) ? r.status : -1;
	http_response_free(&r);
	return NULL;
}

Test(admin, concurrent_puts_with_the_same_etag_let_exactly_one_through)
{
	struct serverenv s;
	struct conditional_put puts[8];
	pthread_t threads[8];
	char etag[64];
	serverenv_start(&s, SEED, ADMIN_ENV);
	get_etag(&s, "apple", etag, sizeof(etag));
	for (int i = 0; i < 8; i++) {
		puts[i] = (struct conditional_put){.s = &s, .etag = etag, .n = i};
		pthread_create(&threads[i], NULL, put_thread, &puts[i]);
	}
	int ok = 0, stale = 0, winner = -1;
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		if (puts[i].status == 200) {
			ok++;
			winner = i;
		}
		stale += puts[i].status == 412;
	}
	cr_expect_eq(ok, 1, "%d PUTs with one ETag went through", ok);
	cr_expect_eq(stale, 7);
	cr_expect_eq(stock_of(&s, "apple"), 100 + winner);
	serverenv_stop(&s);
}

Test(admin, stock_adjustments_add_and_subtract_in_one_statement_and_are_recorded)
{
	struct serverenv s;
	struct http_response r;
	char etag[64], buf[64];
	serverenv_start(&s, SEED, ADMIN_ENV);

	adjust(&s, "apple", "{\"delta\":25,\"reason\":\"delivery 4711\"}", &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect_str_eq(http_header(&r, "Content-Type", buf, sizeof(buf)), "application/json");
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "sku")), "apple");
	cr_expect_eq(json_integer_value(json_object_get(r.json, "stock")), 35);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "price_cents")), 120);
	cr_assert(http_header(&r, "ETag", buf, sizeof(buf)));
	http_response_free(&r);
	get_etag(&s, "apple", etag, sizeof(etag));
	cr_expect_str_eq(buf, etag);

	/* a sale in between is kept: the delta applies to the stock as it is */
	buy(&s, "apple", 4);
	adjust(&s, "apple", "{\"delta\":-6,\"reason\":\"damaged in the shop\"}", &r);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect_eq(json_integer_value(json_object_get(r.json, "stock")), 25);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 25);

	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM stock_adjustments WHERE sku = 'apple'"),
		     2);
	cr_expect_eq(testenv_query_long(s.conn,
					"SELECT count(*) FROM stock_adjustments WHERE sku = 'apple' "
					"AND delta = 25 AND reason = 'delivery 4711' AND stock_after = 35 "
					"AND created_at <= now()"),
		     1);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM stock_adjustments WHERE sku = 'apple' "
						"AND delta = -6 AND reason = 'damaged in the shop' "
						"AND stock_after = 25"),
		     1);
	serverenv_stop(&s);
}

Test(admin, a_negative_adjustment_beyond_the_stock_is_409_and_changes_nothing)
{
	struct serverenv s;
	struct http_response r;
	char before[64], after[64];
	serverenv_start(&s, SEED, ADMIN_ENV);
	get_etag(&s, "apple", before, sizeof(before));

	adjust(&s, "apple", "{\"delta\":-11,\"reason\":\"stocktake\"}", &r);
	expect_problem(&r, 409, "insufficient-stock");
	cr_expect_eq(json_integer_value(json_object_get(r.json, "stock")), 10, "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 10);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM stock_adjustments"), 0);
	get_etag(&s, "apple", after, sizeof(after));
	cr_expect_str_eq(after, before, "a refused adjustment wrote the row");

	/* down to exactly zero is fine */
	adjust(&s, "apple", "{\"delta\":-10,\"reason\":\"stocktake\"}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 0);

	/* past the largest stock a PUT accepts is refused too */
	adjust(&s, "apple", "{\"delta\":1000000000,\"reason\":\"big delivery\"}", &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	adjust(&s, "apple", "{\"delta\":1,\"reason\":\"one more\"}", &r);
	expect_problem(&r, 409, "stock-out-of-range");
	http_response_free(&r);
	cr_expect_eq(stock_of(&s, "apple"), 1000000000);

	/* an unknown SKU is 404 */
	adjust(&s, "kiwi", "{\"delta\":5,\"reason\":\"delivery\"}", &r);
	expect_problem(&r, 404, "not-found");
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM products WHERE sku = 'kiwi'"), 0);
	serverenv_stop(&s);
}

Test(admin, invalid_adjustments_are_400_naming_the_field)
{
	static const struct {
		const char *body;
		const char *field;
	} cases[] = {
	    {"{\"delta\":", ""},
	    {"[1]", ""},
	    {"{\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":0,\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":\"5\",\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":1.5,\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":true,\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":1000000001,\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":-1000000001,\"reason\":\"r\"}", "delta"},
	    {"{\"delta\":5}", "reason"},
	    {"{\"delta\":5,\"reason\":\"\"}", "reason"},
	    {"{\"delta\":5,\"reason\":7}", "reason"},
	    {"{\"delta\":5,\"reason\":null}", "reason"},
	    {"{\"delta\":5,\"reason\":\"a\\u0000b\"}", "reason"},
	    {"{\"delta\":5,\"delta\":6,\"reason\":\"r\"}", ""},
	};
	struct serverenv s;
	struct http_response r;
	char buf[64];
	serverenv_start(&s, SEED, ADMIN_ENV);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		adjust(&s, "apple", cases[i].body, &r);
		expect_problem(&r, 400, "invalid-request");
		cr_expect(names_field(&r, cases[i].field), "case %zu: no error for '%s' in %s", i,
			  cases[i].field, r.body);
		http_response_free(&r);
	}
	/* both wrong: both named */
	adjust(&s, "apple", "{\"delta\":0}", &r);
	expect_problem(&r, 400, "invalid-request");
	cr_expect(names_field(&r, "delta") && names_field(&r, "reason"), "%s", r.body);
	http_response_free(&r);

	/* 200 characters of reason are enough, 201 are too many (characters, not bytes) */
	char body[1200], reason[900];
	size_t w = 0;
	for (int c = 0; c < 200; c++)
		w += (size_t)snprintf(reason + w, sizeof(reason) - w, "\xc3\xa9");
	snprintf(body, sizeof(body), "{\"delta\":1,\"reason\":\"%s\"}", reason);
	adjust(&s, "apple", body, &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	http_response_free(&r);
	snprintf(body, sizeof(body), "{\"delta\":1,\"reason\":\"%sx\"}", reason);
	adjust(&s, "apple", body, &r);
	expect_problem(&r, 400, "invalid-request");
	cr_expect(names_field(&r, "reason"), "%s", r.body);
	http_response_free(&r);

	/* the admin token, a JSON body and POST are required */
	const char *none[] = {"Content-Type: application/json", NULL};
	serverenv_call(&s, "POST", "/v1/products/apple/stock-adjustments", none,
		       "{\"delta\":1,\"reason\":\"r\"}", &r);
	expect_problem(&r, 401, "unauthorized");
	http_response_free(&r);
	const char *text[] = {AUTH, "Content-Type: text/plain", NULL};
	serverenv_call(&s, "POST", "/v1/products/apple/stock-adjustments", text,
		       "{\"delta\":1,\"reason\":\"r\"}", &r);
	expect_problem(&r, 415, "unsupported-media-type");
	http_response_free(&r);
	serverenv_call(&s, "GET", "/v1/products/apple/stock-adjustments", NULL, NULL, &r);
	expect_problem(&r, 405, "method-not-allowed");
	cr_expect_str_eq(http_header(&r, "Allow", buf, sizeof(buf)), "POST");
	http_response_free(&r);

	cr_expect_eq(stock_of(&s, "apple"), 11, "only the valid adjustment of +1 applied");
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM stock_adjustments"), 1);
	serverenv_stop(&s);
}

#define RACE_THREADS 3
#define RACE_ROUNDS 30

struct racer {
	struct serverenv *s;
	int n;
	bool adjusts; /* restocks +1, or buys 1 */
	int ok;
	int other; /* answers that are neither success nor a documented refusal */
};

static void *race_thread(void *arg)
{
	struct racer *p = arg;
	char url[160], body[256];
	const char *admin[] = {AUTH, NULL};
	if (p->adjusts) {
		snprintf(url, sizeof(url), "%s/v1/products/apple/stock-adjustments", p->s->base);
		snprintf(body, sizeof(body), "{\"delta\":1,\"reason\":\"restock by thread %d\"}", p->n);
	} else {
		snprintf(url, sizeof(url), "%s/v1/checkout", p->s->base);
		snprintf(body, sizeof(body),
			 "{\"customer_id\":\"racer-%d\",\"email\":\"r@b.c\",\"items\":[{\"sku\":\"apple\","
			 "\"quantity\":1}]}",
			 p->n);
	}
	for (int i = 0; i < RACE_ROUNDS; i++) {
		struct http_response r;
		bool sent = http_call("POST", url, p->adjusts ? admin : NULL, body, &r);
		long want = p->adjusts ? 200 : 201;
		if (sent && r.status == want)
			p->ok++;
		/* a checkout may run out of stock or of retries: both write nothing */
		else if (!sent || p->adjusts || (r.status != 409 && r.status != 503))
			p->other++;
		http_response_free(&r);
	}
	return NULL;
}

Test(admin, concurrent_checkouts_and_adjustments_lose_no_update)
{
	/* without the hot-SKU queue the checkouts conflict with each other and with
	 * the adjustments in the database, where the retries have to get it right */
	static const char *const env[] = {"ADMIN_TOKEN=s3cret-token", "HOT_SKU_QUEUE=false", NULL};
	struct serverenv s;
	struct racer racers[2 * RACE_THREADS];
	pthread_t threads[2 * RACE_THREADS];
	char etag[64];
	serverenv_start(&s, SEED, env);
	get_etag(&s, "apple", etag, sizeof(etag)); /* the client library is set up before the threads */
	long initial = stock_of(&s, "apple");

	for (int i = 0; i < 2 * RACE_THREADS; i++) {
		racers[i] = (struct racer){.s = &s, .n = i, .adjusts = i % 2 == 1};
		pthread_create(&threads[i], NULL, race_thread, &racers[i]);
	}
	int adjusted = 0, bought = 0;
	for (int i = 0; i < 2 * RACE_THREADS; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(racers[i].other, 0, "thread %d had %d unexpected answers", i, racers[i].other);
		if (racers[i].adjusts)
			adjusted += racers[i].ok;
		else
			bought += racers[i].ok;
	}
	cr_expect_eq(adjusted, RACE_THREADS * RACE_ROUNDS, "every +1 adjustment must succeed");
	long sold = testenv_query_long(s.conn, "SELECT coalesce(sum(quantity), 0) FROM order_lines");
	cr_expect_eq(sold, bought, "201 answers and order lines differ");
	cr_expect_eq(stock_of(&s, "apple"), initial + adjusted - sold,
		     "initial %ld + %d adjusted - %ld sold != %ld", initial, adjusted, sold,
		     stock_of(&s, "apple"));
	cr_expect_eq(testenv_query_long(s.conn, "SELECT coalesce(sum(delta), 0) FROM stock_adjustments"),
		     adjusted);
	cr_expect_gt(bought, 0);
	serverenv_stop(&s);
}
