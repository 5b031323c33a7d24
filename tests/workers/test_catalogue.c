/* checkout-inventory's catalogue, built from the products topic alone
 * (service/workers/catalogue.c): after admin changes and checkouts made at
 * the same time it equals the database's products, and again after a
 * replay from the database and a --rebuild; a redelivered older event never
 * overwrites a newer one. Runs in both event modes (tests/workers/CMakeLists.txt). */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "testenv.h"

#define TOKEN "catalogue-token"
#define N_SKUS 6

static struct testenv_proc broker, server, relay, inventory;
static PGconn *db;
static char *conninfo;
static char bootstrap[256];
static char base[64];
static char db_env[256], brokers_env[300];

static void setup(void)
{
	conninfo = testenv_db_new();
	db = testenv_db_connect(conninfo);
	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", conninfo);
	snprintf(brokers_env, sizeof(brokers_env), "KAFKA_BROKERS=%s", bootstrap);
}

static void teardown(void)
{
	testenv_stop_clean(&inventory);
	testenv_stop_clean(&relay);
	testenv_stop_clean(&server);
	testenv_stop_clean(&broker);
	if (db && getenv("EVENTS") && strcmp(getenv("EVENTS"), "outbox") != 0)
		PQclear(PQexec(db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
				   " WHERE database = current_database() AND NOT active"));
	PQfinish(db);
	free(conninfo);
}

TestSuite(catalogue, .init = setup, .fini = teardown, .timeout = 180);

static void start_pipeline(void)
{
	char listen_env[64];
	int port = testenv_free_port();
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", port);
	const char *env[] = {db_env, brokers_env, listen_env, "ADMIN_TOKEN=" TOKEN, NULL};
	testenv_spawn(&server, "checkout-server", NULL, env);
	cr_assert(testenv_wait_port(port, 20000), "the server did not start; see %s", server.log_path);
	testenv_spawn(&relay, "checkout-relay", NULL, env);
	cr_assert(testenv_wait_log(&relay, "relaying ", 10000), "see %s", relay.log_path);
	testenv_spawn(&inventory, "checkout-inventory", NULL, env);
}

/* method path body with the admin token; the status, or -1 on a transport error. */
static long call(const char *method, const char *path, const char *body)
{
	char url[256];
	struct http_response r;
	const char *headers[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN, NULL};
	snprintf(url, sizeof(url), "%s%s", base, path);
	if (!http_call(method, url, headers, body, &r))
		return -1;
	long status = r.status;
	http_response_free(&r);
	return status;
}

/* Rows where inventory.catalogue and products differ (a deleted product: deleted at the same version). */
static const char differ_sql[] =
    "SELECT count(*) FROM products p FULL JOIN inventory.catalogue c USING (sku) "
    "WHERE NOT (coalesce(c.version = p.version AND c.deleted = (p.deleted_at IS NOT NULL), false) "
    "  AND (p.deleted_at IS NOT NULL OR (c.name = p.name AND c.price_cents = p.price_cents "
    "   AND c.stock = p.stock AND c.limit_group IS NOT DISTINCT FROM p.limit_group)))";

static long wait_equal(int timeout_ms)
{
	long differ = -1;
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		differ = testenv_query_long(db, differ_sql);
		if (differ == 0)
			break;
		testenv_sleep_ms(100);
	}
	return differ;
}

static atomic_bool stop_load;
static atomic_long admitted, admin_writes;

static void *checkouts(void *arg)
{
	int n = (int)(long)arg;
	for (int i = 0; !atomic_load(&stop_load); i++) {
		char body[256];
		snprintf(body, sizeof(body),
			 "{\"customer_id\":\"c%d\",\"email\":\"c%d@example.com\",\"items\":"
			 "[{\"sku\":\"sku-%d\",\"quantity\":1}]}",
			 n, n, (i * 7 + n) % N_SKUS);
		if (call("POST", "/v1/checkout", body) == 201)
			atomic_fetch_add(&admitted, 1);
	}
	return NULL;
}

/* renames, restocks, deletes and creates again, round the SKUs */
static void *admin(void *arg)
{
	(void)arg;
	for (int i = 0; !atomic_load(&stop_load); i++) {
		char path[96], body[160];
		int sku = i % N_SKUS;
		long status = 0;
		switch (i % 4) {
		case 0:
			snprintf(path, sizeof(path), "/v1/products/sku-%d", sku);
			snprintf(body, sizeof(body),
				 "{\"name\":\"Renamed %d\",\"price_cents\":%d,\"stock\":50}", i, 100 + i);
			status = call("PUT", path, body);
			break;
		case 1:
			snprintf(path, sizeof(path), "/v1/products/sku-%d/stock-adjustments", sku);
			status = call("POST", path, "{\"delta\":5,\"reason\":\"delivery\"}");
			break;
		case 2:
			snprintf(path, sizeof(path), "/v1/products/sku-%d", (sku + 3) % N_SKUS);
			status = call("DELETE", path, NULL);
			break;
		case 3:
			snprintf(path, sizeof(path), "/v1/products/sku-%d", (sku + 2) % N_SKUS);
			status = call("PUT", path, "{\"name\":\"Again\",\"price_cents\":10,\"stock\":20}");
			break;
		}
		if (status >= 200 && status < 300)
			atomic_fetch_add(&admin_writes, 1);
	}
	return NULL;
}

Test(catalogue, equals_the_database_after_concurrent_changes_and_checkouts_and_after_a_rebuild)
{
	start_pipeline();
	for (int i = 0; i < N_SKUS; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/v1/products/sku-%d", i);
		cr_assert_eq(call("PUT", path, "{\"name\":\"First\",\"price_cents\":500,\"stock\":40}"), 201);
	}
	pthread_t t[3];
	pthread_create(&t[0], NULL, admin, NULL);
	pthread_create(&t[1], NULL, checkouts, (void *)1L);
	pthread_create(&t[2], NULL, checkouts, (void *)2L);
	testenv_sleep_ms(2000);
	atomic_store(&stop_load, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	cr_log_info("%ld checkouts admitted, %ld admin writes", atomic_load(&admitted),
		    atomic_load(&admin_writes));
	cr_assert(atomic_load(&admitted) > 0 && atomic_load(&admin_writes) > 0, "the load did something");
	cr_assert(testenv_query_long(db, "SELECT count(*) FROM products WHERE deleted_at IS NOT NULL") +
		      testenv_query_long(db, "SELECT count(*) FROM products WHERE version > 20") >
		  0);

	cr_expect_eq(wait_equal(20000), 0, "the catalogue equals the database; see %s", inventory.log_path);
	cr_expect_eq(testenv_stop(&inventory, SIGTERM), 0, "see %s", inventory.log_path);

	/* from the database: replay every product's latest state, then rebuild the catalogue */
	testenv_exec(db, "UPDATE inventory.catalogue SET name = 'wrong', version = 0");
	struct testenv_proc replay, rebuild;
	const char *env[] = {db_env, brokers_env, NULL};
	testenv_spawn(&replay, "checkout-relay", (const char *[]){"--replay", NULL}, env);
	cr_expect_eq(testenv_stop(&replay, 0), 0, "replay exits 0; see %s", replay.log_path);
	cr_expect(testenv_wait_log(&replay, "replayed 6 products", 1000), "see %s", replay.log_path);
	testenv_spawn(&rebuild, "checkout-inventory", (const char *[]){"--rebuild", NULL}, env);
	cr_expect_eq(testenv_stop(&rebuild, 0), 0, "the rebuild exits 0 when done; see %s", rebuild.log_path);
	cr_expect(testenv_wait_log(&rebuild, "catalogue: rebuilt", 1000), "see %s", rebuild.log_path);
	cr_expect_eq(testenv_query_long(db, differ_sql), 0, "equal again after the rebuild");
}

/* Produce one product event to partition 0 of "products" (value NULL: a tombstone). */
static void produce(rd_kafka_t *p, const char *sku, long long version, const char *value)
{
	char seq[24];
	snprintf(seq, sizeof(seq), "%lld", version);
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p, RD_KAFKA_V_TOPIC("products"), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(sku, strlen(sku)),
	    RD_KAFKA_V_VALUE((void *)value, value ? strlen(value) : 0),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADER("ce_type", value ? "product.upserted" : "product.deleted", -1),
	    RD_KAFKA_V_HEADER("ce_sequence", seq, -1),
	    RD_KAFKA_V_HEADER("ce_time", "2026-12-01T00:00:00Z", -1), RD_KAFKA_V_END);
	cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(err));
}

/* A message with no version (no ce_sequence header): not a product event. */
static void produce_unversioned(rd_kafka_t *p, const char *sku, const char *value)
{
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    p, RD_KAFKA_V_TOPIC("products"), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(sku, strlen(sku)),
	    RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADER("ce_type", "product.upserted", -1), RD_KAFKA_V_END);
	cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s", rd_kafka_err2str(err));
}

Test(catalogue, a_redelivered_older_event_never_overwrites_a_newer_one)
{
	const char *env[] = {db_env, brokers_env, NULL};
	testenv_spawn(&inventory, "checkout-inventory", NULL, env);
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
		     RD_KAFKA_CONF_OK);
	rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	cr_assert(p, "%s", err);
	produce(p, "mug", 100,
		"{\"sku\":\"mug\",\"name\":\"Mug v100\",\"price_cents\":1,\"stock\":7,\"limit_group\":null}");
	/* older events after it: a redelivered upsert, a reordered tombstone, the same version again */
	produce(p, "mug", 50,
		"{\"sku\":\"mug\",\"name\":\"Mug v50\",\"price_cents\":1,\"stock\":99,\"limit_group\":null}");
	produce(p, "mug", 60, NULL);
	produce(
	    p, "mug", 100,
	    "{\"sku\":\"mug\",\"name\":\"Mug again\",\"price_cents\":1,\"stock\":1,\"limit_group\":null}");
	/* bad messages, dead-lettered and not in the way: no version, a value that is not a product */
	produce_unversioned(p, "cup", "{\"sku\":\"cup\",\"name\":\"Cup\",\"price_cents\":1,\"stock\":1}");
	produce(p, "cup", 7, "not json");
	/* a tombstone of another SKU, newer than its upsert, and a marker after everything on the partition
	 */
	produce(p, "bowl", 10,
		"{\"sku\":\"bowl\",\"name\":\"Bowl\",\"price_cents\":1,\"stock\":1,\"limit_group\":null}");
	produce(p, "bowl", 11, NULL);
	produce(p, "marker", 1,
		"{\"sku\":\"marker\",\"name\":\"M\",\"price_cents\":1,\"stock\":1,\"limit_group\":null}");
	cr_assert_eq(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(p);

	long seen = 0;
	for (int waited = 0; waited < 20000 && seen == 0; waited += 100) {
		seen =
		    testenv_query_long(db, "SELECT count(*) FROM inventory.catalogue WHERE sku = 'marker'");
		testenv_sleep_ms(100);
	}
	cr_assert_eq(seen, 1, "the marker was applied; see %s", inventory.log_path);
	cr_expect_eq(
	    testenv_query_long(db, "SELECT count(*) FROM inventory.catalogue WHERE sku = 'mug'"
				   " AND name = 'Mug v100' AND stock = 7 AND version = 100 AND NOT deleted"),
	    1, "version 100 stays; see %s", inventory.log_path);
	cr_expect_eq(testenv_query_long(db, "SELECT count(*) FROM inventory.catalogue WHERE sku = 'bowl'"
					    " AND deleted AND version = 11"),
		     1, "the newer tombstone deleted bowl");
	cr_expect_eq(testenv_query_long(db,
					"SELECT count(*) FROM inventory.dead_letters WHERE topic = 'products'"
					" AND key = 'cup' AND value IS NOT NULL AND reason <> ''"),
		     2, "two dead letters; see %s", inventory.log_path);
	cr_expect_eq(testenv_query_long(db, "SELECT count(*) FROM inventory.catalogue WHERE sku = 'cup'"), 0);
	cr_expect_eq(testenv_count_log(&inventory, "ignored"), 3,
		     "three older or equal events ignored; see %s", inventory.log_path);
	cr_expect_eq(testenv_stop(&inventory, SIGTERM), 0, "see %s", inventory.log_path);
}

Test(catalogue, the_inventory_names_skus_from_it_and_warns_of_no_deleted_product)
{
	const char *env[] = {db_env, brokers_env, "LOW_STOCK_THRESHOLD=5", NULL};
	testenv_spawn(&inventory, "checkout-inventory", NULL, env);
	rd_kafka_t *p = orders_producer_new(bootstrap);
	produce(
	    p, "sku-1", 5,
	    "{\"sku\":\"sku-1\",\"name\":\"Blue mug\",\"price_cents\":1,\"stock\":6,\"limit_group\":null}");
	produce(
	    p, "sku-2", 6,
	    "{\"sku\":\"sku-2\",\"name\":\"Red mug\",\"price_cents\":1,\"stock\":6,\"limit_group\":null}");
	produce(p, "sku-2", 7, NULL);
	orders_flush(p);
	long ready = 0;
	for (int waited = 0; waited < 20000 && ready != 2; waited += 100) {
		ready = testenv_query_long(
		    db, "SELECT count(*) FROM inventory.catalogue WHERE (sku = 'sku-1' AND NOT deleted)"
			" OR (sku = 'sku-2' AND deleted)");
		testenv_sleep_ms(100);
	}
	cr_assert_eq(ready, 2, "the catalogue has sku-1 and sku-2 deleted; see %s", inventory.log_path);

	/* one order takes both to the threshold: stock 6 -> 5 */
	struct test_order o;
	orders_make(&o, 0);
	o.n_items = 2;
	for (int k = 0; k < 2; k++) {
		snprintf(o.items[k].sku, sizeof(o.items[k].sku), "sku-%d", k + 1);
		o.items[k].quantity = 1;
		o.items[k].unit_price_cents = 1;
		o.items[k].stock_after = 5;
	}
	o.total_cents = 2;
	o.units = 2;
	orders_produce(p, &o);
	orders_flush(p);
	rd_kafka_destroy(p);
	cr_assert(testenv_wait_log(&inventory, "sku-1 (Blue mug) x1", 20000), "the line is named; see %s",
		  inventory.log_path);
	cr_expect(testenv_wait_log(&inventory, "low stock: sku-1 down to 5", 2000), "see %s",
		  inventory.log_path);
	cr_expect_eq(testenv_count_log(&inventory, "low stock: sku-2"), 0,
		     "no warning for a product the catalogue says is deleted; see %s", inventory.log_path);
	cr_expect_eq(testenv_stop(&inventory, SIGTERM), 0, "see %s", inventory.log_path);
}
