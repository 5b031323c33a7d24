/* CRUD as events: the catalogue on the products topic, keyed by SKU.
 * Create, update and delete through the admin API give upsert, upsert and a
 * tombstone for that key, in that order; a change that rolls back emits
 * nothing; a checkout's stock update is an upsert with the new stock; a
 * replay republishes each product's latest state. Runs in both event modes
 * (tests/relay/CMakeLists.txt). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "testenv.h"
#include "topic.h"

#define TOKEN "products-topic-token"

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
	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	topic_open_named(&topic, bootstrap, "products");

	orders_start_server_and_relay(&server, &relay, conninfo, bootstrap, "ADMIN_TOKEN=" TOKEN, base,
				      sizeof(base));
}

static void teardown(void)
{
	testenv_stop_clean(&relay);
	testenv_stop_clean(&server);
	topic_close(&topic);
	testenv_stop_clean(&broker);
	orders_drop_slot(db);
	PQfinish(db);
	free(conninfo);
}

TestSuite(products_topic, .init = setup, .fini = teardown);

/* method on base + path with the admin token; checks the status; returns the body as JSON (or NULL). */
static json_t *call(const char *method, const char *path, const char *body, long want)
{
	char url[256];
	struct http_response r;
	const char *headers[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN, NULL};
	snprintf(url, sizeof(url), "%s%s", base, path);
	cr_assert(http_call(method, url, headers, body, &r), "%s %s", method, url);
	cr_assert_eq(r.status, want, "%s %s: status %ld, want %ld: %s", method, path, r.status, want, r.body);
	json_t *j = r.json ? json_incref(r.json) : NULL;
	http_response_free(&r);
	return j;
}

/* Wait until the topic holds count messages for key. */
static bool wait_key_count(const char *key, int count, int timeout_ms)
{
	for (int waited = 0; topic_count_key(&topic, key, NULL) < count && waited < timeout_ms; waited += 50)
		topic_read(&topic, 50);
	return topic_count_key(&topic, key, NULL) >= count;
}

/* The i-th message (0-based) with key, or NULL. */
static const struct topic_msg *nth(const char *key, int i)
{
	for (int m = 0; m < topic.n; m++)
		if (!strcmp(topic.msgs[m].key, key) && i-- == 0)
			return &topic.msgs[m];
	return NULL;
}

static long long seq(const struct topic_msg *m)
{
	return m && m->ce_sequence ? strtoll(m->ce_sequence, NULL, 10) : -1;
}

/* The upsert's value field as a string ("" when absent). */
static void expect_upsert(const struct topic_msg *m, const char *name, long long stock)
{
	cr_assert(m);
	cr_expect_str_eq(m->ce_type, "product.upserted");
	cr_expect(!m->tombstone);
	cr_expect_str_eq(m->content_type ? m->content_type : "", "application/json");
	json_t *v = json_loads(m->value, 0, NULL);
	cr_assert(v, "not JSON: %s", m->value);
	cr_expect_str_eq(json_string_value(json_object_get(v, "sku")), m->key);
	cr_expect_str_eq(json_string_value(json_object_get(v, "name")), name);
	cr_expect_eq(json_integer_value(json_object_get(v, "stock")), stock);
	cr_expect_eq(json_integer_value(json_object_get(v, "version")), seq(m), "the version is ce_sequence");
	char id[128];
	snprintf(id, sizeof(id), "%s@%lld", m->key, seq(m));
	cr_expect_str_eq(m->ce_id, id);
	json_decref(v);
}

Test(products_topic, create_update_delete_give_upsert_upsert_tombstone_in_order)
{
	json_decref(
	    call("PUT", "/v1/products/lamp", "{\"name\":\"Lamp\",\"price_cents\":4500,\"stock\":3}", 201));
	json_decref(call("PUT", "/v1/products/lamp",
			 "{\"name\":\"Desk lamp\",\"price_cents\":4900,\"stock\":3}", 200));
	json_decref(call("DELETE", "/v1/products/lamp", NULL, 204));
	cr_assert(wait_key_count("lamp", 3, 15000), "got %d messages for lamp",
		  topic_count_key(&topic, "lamp", NULL));
	topic_read(&topic, 300);
	cr_expect_eq(topic_count_key(&topic, "lamp", NULL), 3, "exactly three events");

	const struct topic_msg *a = nth("lamp", 0), *b = nth("lamp", 1), *c = nth("lamp", 2);
	expect_upsert(a, "Lamp", 3);
	expect_upsert(b, "Desk lamp", 3);
	cr_expect_str_eq(c->ce_type, "product.deleted");
	cr_expect(c->tombstone, "a delete is a tombstone: no value");
	cr_expect(seq(a) < seq(b) && seq(b) < seq(c), "versions grow: %lld %lld %lld", seq(a), seq(b),
		  seq(c));

	/* gone for the API and for checkouts; a second delete is 404 */
	json_decref(call("GET", "/v1/products/lamp", NULL, 404));
	json_decref(call("DELETE", "/v1/products/lamp", NULL, 404));
	json_t *p = call("POST", "/v1/checkout",
			 "{\"customer_id\":\"c\",\"email\":\"c@example.com\",\"items\":[{\"sku\":\"lamp\","
			 "\"quantity\":1}]}",
			 422);
	cr_expect(strstr(json_string_value(json_object_get(p, "type")), "unknown-sku"));
	json_decref(p);

	/* created again: a new product, above its tombstone */
	json_decref(
	    call("PUT", "/v1/products/lamp", "{\"name\":\"New lamp\",\"price_cents\":100,\"stock\":1}", 201));
	cr_assert(wait_key_count("lamp", 4, 15000));
	expect_upsert(nth("lamp", 3), "New lamp", 1);
	cr_expect(seq(nth("lamp", 3)) > seq(c));
}

Test(products_topic, a_sold_product_deleted_keeps_its_order_and_a_checkout_publishes_the_new_stock)
{
	json_decref(
	    call("PUT", "/v1/products/vase", "{\"name\":\"Vase\",\"price_cents\":900,\"stock\":5}", 201));
	json_t *o = call("POST", "/v1/checkout",
			 "{\"customer_id\":\"c\",\"email\":\"c@example.com\",\"items\":[{\"sku\":\"vase\","
			 "\"quantity\":2}]}",
			 201);
	cr_assert(wait_key_count("vase", 2, 15000));
	expect_upsert(nth("vase", 1), "Vase", 3);

	json_decref(call("DELETE", "/v1/products/vase", NULL, 204));
	char path[128];
	snprintf(path, sizeof(path), "/v1/orders/%s", json_string_value(json_object_get(o, "order_id")));
	json_t *got = call("GET", path, NULL, 200);
	cr_expect_eq(json_array_size(json_object_get(got, "items")), 1, "the past order keeps its line");
	json_decref(got);
	json_decref(o);
	cr_assert(wait_key_count("vase", 3, 15000));
	cr_expect(nth("vase", 2)->tombstone);
}

Test(products_topic, a_change_that_rolls_back_emits_nothing)
{
	json_decref(
	    call("PUT", "/v1/products/cup", "{\"name\":\"Cup\",\"price_cents\":300,\"stock\":9}", 201));
	cr_assert(wait_key_count("cup", 1, 15000));
	/* a PUT the database refuses (no such limit group) rolls back */
	json_decref(call("PUT", "/v1/products/cup",
			 "{\"name\":\"Cup\",\"price_cents\":300,\"stock\":9,\"limit_group\":\"nope\"}", 422));
	/* plain SQL that rolls back: an update and a delete */
	testenv_exec(db, "BEGIN; UPDATE products SET name = 'Rolled back' WHERE sku = 'cup';"
			 " DELETE FROM products WHERE sku = 'cup'; ROLLBACK");
	/* a committed change after them: once it is on the topic, anything before it would be too */
	json_decref(
	    call("PUT", "/v1/products/cup", "{\"name\":\"Mug\",\"price_cents\":300,\"stock\":9}", 200));
	cr_assert(wait_key_count("cup", 2, 15000));
	topic_read(&topic, 300);
	cr_expect_eq(topic_count_key(&topic, "cup", NULL), 2, "only the two committed changes");
	expect_upsert(nth("cup", 1), "Mug", 9);
}

Test(products_topic, replay_republishes_each_products_latest_state)
{
	json_decref(
	    call("PUT", "/v1/products/fork", "{\"name\":\"Fork\",\"price_cents\":100,\"stock\":1}", 201));
	json_decref(
	    call("PUT", "/v1/products/fork", "{\"name\":\"Fork 2\",\"price_cents\":100,\"stock\":2}", 200));
	json_decref(
	    call("PUT", "/v1/products/knife", "{\"name\":\"Knife\",\"price_cents\":100,\"stock\":1}", 201));
	json_decref(call("DELETE", "/v1/products/knife", NULL, 204));
	cr_assert(wait_key_count("fork", 2, 15000) && wait_key_count("knife", 2, 15000));

	struct testenv_proc replay;
	testenv_spawn(
	    &replay, "checkout-relay",
	    (const char *[]){"--database-url", conninfo, "--kafka-brokers", bootstrap, "--replay", NULL},
	    NULL);
	cr_expect_eq(testenv_stop(&replay, 0), 0, "replay exits 0; see %s", replay.log_path);
	cr_expect(testenv_wait_log(&replay, "replayed 2 products", 1000), "see %s", replay.log_path);
	cr_assert(wait_key_count("fork", 3, 15000) && wait_key_count("knife", 3, 15000));
	const struct topic_msg *f = nth("fork", 2), *k = nth("knife", 2);
	expect_upsert(f, "Fork 2", 2);
	cr_expect_eq(seq(f), seq(nth("fork", 1)), "the same version as its last change");
	cr_expect_str_eq(f->ce_id, nth("fork", 1)->ce_id, "and the same ce_id");
	cr_expect(k->tombstone);
	cr_expect_eq(seq(k), seq(nth("knife", 1)));
}
