/* orders.c - see orders.h. */
#include "orders.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void orders_uuid(char out[37])
{
	unsigned char b[16];
	FILE *f = fopen("/dev/urandom", "rb");
	cr_assert(f && fread(b, 1, sizeof(b), f) == sizeof(b));
	fclose(f);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void orders_make(struct test_order *o, int i)
{
	memset(o, 0, sizeof(*o));
	orders_uuid(o->order_id);
	orders_uuid(o->event_id);
	snprintf(o->customer_id, sizeof(o->customer_id), "customer-%d", i % 7);
	snprintf(o->email, sizeof(o->email), "customer%d@example.com", i % 7);
	o->n_items = 1 + i % ORDERS_MAX_ITEMS;
	for (int k = 0; k < o->n_items; k++) {
		struct test_item *it = &o->items[k];
		/* distinct SKUs within one order, as the checkout guarantees */
		snprintf(it->sku, sizeof(it->sku), "sku-%d", 1 + (i + k) % ORDERS_SKUS);
		it->quantity = 1 + (i * 7 + k) % 4;
		it->unit_price_cents = 100 * (1 + (i + k) % ORDERS_SKUS) - 1;
		it->stock_after = 1000;
		o->total_cents += it->unit_price_cents * it->quantity;
		o->units += it->quantity;
	}
	time_t now = time(NULL) - (i % 3) * 60;
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(o->created_at, sizeof(o->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *orders_json(const struct test_order *o)
{
	json_t *items = json_array();
	for (int k = 0; k < o->n_items; k++) {
		json_t *item =
		    json_pack("{s:s, s:i, s:I}", "sku", o->items[k].sku, "quantity", o->items[k].quantity,
			      "unit_price_cents", (json_int_t)o->items[k].unit_price_cents);
		if (item && o->items[k].stock_after >= 0)
			json_object_set_new(item, "stock_after", json_integer(o->items[k].stock_after));
		json_array_append_new(items, item);
	}
	json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:I, s:s}", "order_id", o->order_id, "customer_id",
				 o->customer_id, "email", o->email, "items", items, "total_cents",
				 (json_int_t)o->total_cents, "created_at", o->created_at);
	cr_assert(root);
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	cr_assert(text);
	return text;
}

rd_kafka_t *orders_producer_new(const char *bootstrap)
{
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	cr_assert(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ==
		  RD_KAFKA_CONF_OK);
	cr_assert(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) ==
		  RD_KAFKA_CONF_OK);
	/* the broker-outage test takes the broker down under it: keep its stderr quiet */
	cr_assert(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)) == RD_KAFKA_CONF_OK);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	cr_assert(rk, "%s", err);
	return rk;
}

void orders_produce_raw(rd_kafka_t *producer, const char *key, const char *value, const char *ce_id,
			const char *ce_type)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(6);
	rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
	if (ce_id)
		rd_kafka_header_add(h, "ce_id", -1, ce_id, -1);
	rd_kafka_header_add(h, "ce_source", -1, "/checkout", -1);
	if (ce_type)
		rd_kafka_header_add(h, "ce_type", -1, ce_type, -1);
	rd_kafka_header_add(h, "ce_time", -1, "2026-01-01T00:00:00Z", -1);
	rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
	rd_kafka_resp_err_t err =
	    rd_kafka_producev(producer, RD_KAFKA_V_TOPIC("orders"), RD_KAFKA_V_KEY(key, strlen(key)),
			      RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_HEADERS(h),
			      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	if (err)
		rd_kafka_headers_destroy(h); /* owned by the message only on success */
	cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(err));
}

void orders_produce(rd_kafka_t *producer, const struct test_order *o)
{
	char *value = orders_json(o);
	orders_produce_raw(producer, o->order_id, value, o->event_id, "order.admitted");
	free(value);
}

void orders_flush(rd_kafka_t *producer)
{
	cr_assert_eq(rd_kafka_flush(producer, 20000), RD_KAFKA_RESP_ERR_NO_ERROR, "flush");
}

static void exec_params(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

void orders_seed_products(PGconn *conn, int stock)
{
	char sku[16], price[32], st[16], name[32];
	for (int s = 1; s <= ORDERS_SKUS; s++) {
		snprintf(sku, sizeof(sku), "sku-%d", s);
		snprintf(name, sizeof(name), "Product %d", s);
		snprintf(price, sizeof(price), "%d", 100 * s - 1);
		snprintf(st, sizeof(st), "%d", stock);
		const char *p[] = {sku, name, price, st};
		exec_params(conn,
			    "INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4)", 4,
			    p);
	}
}

void orders_insert(PGconn *conn, const struct test_order *o)
{
	char total[32], qty[16], price[32];
	snprintf(total, sizeof(total), "%lld", o->total_cents);
	const char *p[] = {o->order_id, o->customer_id, o->email, total, o->created_at};
	exec_params(conn,
		    "INSERT INTO orders (id, customer_id, email, total_cents, created_at) VALUES ($1, $2, "
		    "$3, $4, $5)",
		    5, p);
	for (int k = 0; k < o->n_items; k++) {
		snprintf(qty, sizeof(qty), "%d", o->items[k].quantity);
		snprintf(price, sizeof(price), "%lld", o->items[k].unit_price_cents);
		const char *lp[] = {o->order_id, o->items[k].sku, qty, price, o->customer_id};
		exec_params(
		    conn,
		    "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id) "
		    "VALUES ($1, $2, $3, $4, $5)",
		    5, lp);
		const char *sp[] = {qty, o->items[k].sku};
		exec_params(conn, "UPDATE products SET stock = stock - $1::integer WHERE sku = $2", 2, sp);
	}
}
