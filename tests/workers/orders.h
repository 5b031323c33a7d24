/* orders.h - test helper: orders in the shared-contract format.
 *
 * Makes orders, produces them to the topic exactly as the relay does (key =
 * order id, value = the order JSON, CloudEvents binary-mode headers), and
 * writes the rows the checkout would have written (orders, order_lines) so
 * the workers' views can be compared with the database.
 */
#ifndef CHECKOUT_TESTS_ORDERS_H
#define CHECKOUT_TESTS_ORDERS_H

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>

#define ORDERS_SKUS 5 /* the catalogue: sku-1 .. sku-5 */
#define ORDERS_MAX_ITEMS 3

struct test_item {
	char sku[16];
	int quantity;
	long long unit_price_cents;
	long long stock_after; /* the SKU's stock after the order, as the checkout sends it; -1: left out */
};

struct test_order {
	char order_id[37];
	char event_id[37];
	char customer_id[32];
	char email[64];
	struct test_item items[ORDERS_MAX_ITEMS];
	int n_items;
	long long total_cents;
	long long units;
	char created_at[40];
};

/* A new random UUID (version 4) in text form. */
void orders_uuid(char out[37]);

/* Fill o with order number i: 1..3 items of the catalogue, fresh ids, a stock_after of 1000 each. */
void orders_make(struct test_order *o, int i);

/* The order's JSON value (the 201 body without "status"); the caller frees it. */
char *orders_json(const struct test_order *o);

/* A plain librdkafka producer for bootstrap; fails the test if it cannot. */
rd_kafka_t *orders_producer_new(const char *bootstrap);

/* Produce o as the relay would (ce_type "order.admitted"). */
void orders_produce(rd_kafka_t *producer, const struct test_order *o);

/* Produce any bytes with the given key and headers (NULL = header absent). */
void orders_produce_raw(rd_kafka_t *producer, const char *key, const char *value, const char *ce_id,
			const char *ce_type);

/* Wait until everything produced is acknowledged; fails the test otherwise. */
void orders_flush(rd_kafka_t *producer);

/* The catalogue: sku-1..sku-5 with the given stock each. */
void orders_seed_products(PGconn *conn, int stock);

/* Write the rows of o as the checkout would: orders, order_lines, stock decremented. */
void orders_insert(PGconn *conn, const struct test_order *o);

#endif
