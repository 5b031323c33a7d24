/* The event parser the three workers share: what is accepted, what is poison. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "orders.h"

static rd_kafka_headers_t *headers(const char *ce_id, const char *ce_type)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);
	rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
	if (ce_id)
		rd_kafka_header_add(h, "ce_id", -1, ce_id, -1);
	if (ce_type)
		rd_kafka_header_add(h, "ce_type", -1, ce_type, -1);
	return h;
}

/* Parse value with the given headers; returns the result, err filled. */
static bool parse(const char *value, const char *ce_id, const char *ce_type, struct order_event *ev,
		  char *err, size_t errlen)
{
	rd_kafka_headers_t *h = headers(ce_id, ce_type);
	bool ok = event_parse_parts(value, value ? strlen(value) : 0, h, ev, err, errlen);
	rd_kafka_headers_destroy(h);
	return ok;
}

Test(event, parses_the_contract_format)
{
	struct test_order o;
	struct order_event ev;
	char err[256] = "";
	orders_make(&o, 2);
	char *value = orders_json(&o);
	cr_assert(parse(value, o.event_id, "order.admitted", &ev, err, sizeof(err)), "%s", err);
	cr_expect_str_eq(ev.event_id, o.event_id);
	cr_expect_str_eq(ev.order_id, o.order_id);
	cr_expect_str_eq(ev.email, o.email);
	cr_expect_str_eq(ev.customer_id, o.customer_id);
	cr_expect_str_eq(ev.created_at, o.created_at);
	cr_expect_eq(ev.total_cents, o.total_cents);
	cr_assert_eq(ev.n_items, (size_t)o.n_items);
	for (int i = 0; i < o.n_items; i++) {
		cr_expect_str_eq(ev.items[i].sku, o.items[i].sku);
		cr_expect_eq(ev.items[i].quantity, o.items[i].quantity);
		cr_expect_eq(ev.items[i].unit_price_cents, o.items[i].unit_price_cents);
		cr_expect_eq(ev.items[i].stock_after, o.items[i].stock_after);
	}
	cr_expect_eq(ev.units, o.units);
	event_free(&ev);
	event_free(&ev); /* safe twice */
	free(value);
}

struct poison {
	const char *value, *ce_id, *ce_type, *reason;
};

Test(event, rejects_poison_with_a_reason)
{
	static const char good_items[] = "\"items\":[{\"sku\":\"a\",\"quantity\":1,\"unit_price_cents\":5}]";
	char ok_value[512], crlf_email[512], bad_uuid[512], zero_qty[512], bad_stock[512];
	snprintf(
	    ok_value, sizeof(ok_value),
	    "{\"order_id\":\"00000000-0000-4000-8000-000000000001\",\"customer_id\":\"c\",\"email\":\"a@b\","
	    "%s,\"total_cents\":5,\"created_at\":\"2026-01-01T00:00:00Z\"}",
	    good_items);
	snprintf(
	    crlf_email, sizeof(crlf_email),
	    "{\"order_id\":\"00000000-0000-4000-8000-000000000001\",\"customer_id\":\"c\","
	    "\"email\":\"a@b\\r\\nBcc: x@y\",%s,\"total_cents\":5,\"created_at\":\"2026-01-01T00:00:00Z\"}",
	    good_items);
	snprintf(bad_uuid, sizeof(bad_uuid),
		 "{\"order_id\":\"not-a-uuid\",\"customer_id\":\"c\",\"email\":\"a@b\",%s,\"total_cents\":5,"
		 "\"created_at\":\"2026-01-01T00:00:00Z\"}",
		 good_items);
	snprintf(
	    zero_qty, sizeof(zero_qty),
	    "{\"order_id\":\"00000000-0000-4000-8000-000000000001\",\"customer_id\":\"c\",\"email\":\"a@b\","
	    "\"items\":[{\"sku\":\"a\",\"quantity\":0,\"unit_price_cents\":5}],\"total_cents\":5,"
	    "\"created_at\":\"2026-01-01T00:00:00Z\"}");
	snprintf(
	    bad_stock, sizeof(bad_stock),
	    "{\"order_id\":\"00000000-0000-4000-8000-000000000001\",\"customer_id\":\"c\",\"email\":\"a@b\","
	    "\"items\":[{\"sku\":\"a\",\"quantity\":1,\"unit_price_cents\":5,\"stock_after\":-1}],"
	    "\"total_cents\":5,\"created_at\":\"2026-01-01T00:00:00Z\"}");
	const struct poison cases[] = {
	    {"this is { not JSON", "e1", "order.admitted", "not JSON"},
	    {"[1,2]", "e1", "order.admitted", "not a JSON object"},
	    {"{\"order_id\":\"00000000-0000-4000-8000-000000000001\"}", "e1", "order.admitted",
	     "\"customer_id\""},
	    {ok_value, "e1", "order.cancelled", "unknown ce_type"},
	    {ok_value, NULL, "order.admitted", "ce_id"},
	    {ok_value, "../../etc/passwd", "order.admitted", "ce_id"},
	    {ok_value, "e1", NULL, "ce_type"},
	    {crlf_email, "e1", "order.admitted", "\"email\""},
	    {bad_uuid, "e1", "order.admitted", "UUID"},
	    {zero_qty, "e1", "order.admitted", "\"quantity\""},
	    {bad_stock, "e1", "order.admitted", "\"stock_after\""},
	    {"", "e1", "order.admitted", "empty"},
	};
	struct order_event ev;
	char err[256];
	/* the baseline has no stock_after, like the events written before it existed */
	cr_assert(parse(ok_value, "e1", "order.admitted", &ev, err, sizeof(err)), "the baseline parses: %s",
		  err);
	cr_expect_eq(ev.items[0].stock_after, -1, "an event without stock_after leaves it unknown");
	event_free(&ev);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		cr_expect(!parse(cases[i].value, cases[i].ce_id, cases[i].ce_type, &ev, err, sizeof(err)),
			  "case %zu is rejected", i);
		cr_expect(strstr(err, cases[i].reason), "case %zu: reason '%s' mentions '%s'", i, err,
			  cases[i].reason);
		event_free(&ev);
	}
}

Test(event, short_ids_tell_orders_of_the_same_minute_apart)
{
	char a[9], b[9], c[9];
	/* two UUIDv7 ids taken a few milliseconds apart share their leading digits (the time) */
	event_short_id("01a234ef-7c61-7046-98de-2b85d6ef8263", a);
	event_short_id("01a234ef-7c62-782c-8553-fa0fee5c07dc", b);
	cr_expect_str_eq(a, "d6ef8263");
	cr_expect_str_eq(b, "ee5c07dc");
	event_short_id("abc", c);
	cr_expect_str_eq(c, "abc");
	event_short_id(NULL, c);
	cr_expect_str_eq(c, "?");
}

Test(event, formats_money)
{
	char buf[32];
	cr_expect_str_eq(event_money(5998, buf, sizeof(buf)), "59.98");
	cr_expect_str_eq(event_money(5, buf, sizeof(buf)), "0.05");
	cr_expect_str_eq(event_money(0, buf, sizeof(buf)), "0.00");
	cr_expect_str_eq(event_money(-150, buf, sizeof(buf)), "-1.50");
}
