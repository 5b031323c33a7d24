/* event.c - see event.h. */
#include "event.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/errbuf.h"
#include "checkout/fields.h"

/* A header's value as a new NUL-terminated string, or NULL when absent. */
static char *header_dup(rd_kafka_headers_t *headers, const char *name)
{
	const void *value = NULL;
	size_t size = 0;
	if (!headers ||
	    rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !value)
		return NULL;
	if (memchr(value, '\0', size))
		return NULL;
	return strndup(value, size);
}

/* The created_at the server writes (RFC 3339): printable and short, like every string of the event. */
static const char *created_at_problem(const char *s, size_t len)
{
	return fields_text_ok(s, len, 1, 64) ? NULL : "must be 1 to 64 characters without control characters";
}

/* The order id: a UUID. */
static const char *order_id_problem(const char *s, size_t len)
{
	return strlen(s) == len && fields_uuid_ok(s) ? NULL : "is not a UUID";
}

static bool is_event_id(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 64)
		return false;
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	}
	return true;
}

/*
 * Copy a required string member that the rule of checkout/fields.h accepts
 * (the same rule the server admitted it by: no control characters, so no
 * header injection); false with err when missing, not a string or refused.
 */
static bool take_string(json_t *obj, const char *name, const char *(*rule)(const char *, size_t), char **out,
			char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	if (!json_is_string(v)) {
		snprintf(err, errlen, "field \"%s\" is missing or not a string", name);
		return false;
	}
	const char *problem = rule(json_string_value(v), json_string_length(v));
	if (problem) {
		snprintf(err, errlen, "field \"%s\" %s", name, problem);
		return false;
	}
	*out = strdup(json_string_value(v));
	if (!*out) {
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	return true;
}

static bool take_int(json_t *obj, const char *name, long long min, long long max, long long *out, char *err,
		     size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(err, errlen, "field \"%s\" is missing or not a whole number in %lld..%lld", name,
			 min, max);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

bool event_parse_parts(const void *value, size_t len, rd_kafka_headers_t *headers, struct order_event *ev,
		       char *err, size_t errlen)
{
	json_t *root = NULL;
	json_error_t jerr;
	bool ok = false;
	char why[256];

	memset(ev, 0, sizeof(*ev));
	ev->event_id = header_dup(headers, "ce_id");
	ev->type = header_dup(headers, "ce_type");
	if (!ev->event_id || !is_event_id(ev->event_id)) {
		errbuf_set(err, errlen, "header ce_id is missing or malformed");
		goto out;
	}
	if (!ev->type) {
		errbuf_set(err, errlen, "header ce_type is missing");
		goto out;
	}
	if (strcmp(ev->type, EVENT_TYPE_ORDER_ADMITTED) != 0) {
		snprintf(why, sizeof(why), "unknown ce_type \"%.100s\"", ev->type);
		errbuf_set(err, errlen, "%s", why);
		goto out;
	}
	if (!value || len == 0) {
		errbuf_set(err, errlen, "empty value");
		goto out;
	}
	root = json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(why, sizeof(why), "value is not JSON: %s (at byte %d)", jerr.text, jerr.position);
		errbuf_set(err, errlen, "%s", why);
		goto out;
	}
	if (!json_is_object(root)) {
		errbuf_set(err, errlen, "value is not a JSON object");
		goto out;
	}
	if (!take_string(root, "order_id", order_id_problem, &ev->order_id, err, errlen) ||
	    !take_string(root, "customer_id", fields_customer_id_problem, &ev->customer_id, err, errlen) ||
	    !take_string(root, "email", fields_email_problem, &ev->email, err, errlen) ||
	    !take_string(root, "created_at", created_at_problem, &ev->created_at, err, errlen) ||
	    !take_int(root, "total_cents", 0, 1000000000000000LL, &ev->total_cents, err, errlen))
		goto out;
	json_t *items = json_object_get(root, "items");
	if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > 1000) {
		errbuf_set(err, errlen, "field \"items\" is missing, empty or not an array");
		goto out;
	}
	ev->items = calloc(json_array_size(items), sizeof(*ev->items));
	if (!ev->items) {
		errbuf_set(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(items); i++) {
		json_t *it = json_array_get(items, i);
		struct event_item *item = &ev->items[i];
		long long q = 0;
		ev->n_items = i + 1; /* so event_free sees the sku of a half-parsed item */
		if (!json_is_object(it)) {
			errbuf_set(err, errlen, "an item is not an object");
			goto out;
		}
		if (!take_string(it, "sku", fields_sku_problem, &item->sku, err, errlen) ||
		    !take_int(it, "quantity", 1, 100000, &q, err, errlen) ||
		    !take_int(it, "unit_price_cents", 0, 1000000000000LL, &item->unit_price_cents, err,
			      errlen))
			goto out;
		/* absent in the events written before the checkout sent it */
		item->stock_after = -1;
		if (json_object_get(it, "stock_after") &&
		    !take_int(it, "stock_after", 0, EVENT_MAX_STOCK, &item->stock_after, err, errlen))
			goto out;
		item->quantity = (int)q;
		ev->units += q;
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

bool event_parse(const rd_kafka_message_t *msg, struct order_event *ev, char *err, size_t errlen)
{
	rd_kafka_headers_t *headers = NULL;
	/* the headers stay owned by the message */
	if (rd_kafka_message_headers(msg, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		headers = NULL;
	return event_parse_parts(msg->payload, msg->len, headers, ev, err, errlen);
}

void event_free(struct order_event *ev)
{
	if (!ev)
		return;
	for (size_t i = 0; i < ev->n_items && ev->items; i++)
		free(ev->items[i].sku);
	free(ev->items);
	free(ev->event_id);
	free(ev->type);
	free(ev->order_id);
	free(ev->customer_id);
	free(ev->email);
	free(ev->created_at);
	memset(ev, 0, sizeof(*ev));
}

const char *event_money(long long cents, char *buf, size_t buflen)
{
	unsigned long long abs = cents < 0 ? 0ULL - (unsigned long long)cents : (unsigned long long)cents;
	snprintf(buf, buflen, "%s%llu.%02llu", cents < 0 ? "-" : "", abs / 100, abs % 100);
	return buf;
}

void event_short_id(const char *order_id, char out[9])
{
	const char *id = order_id ? order_id : "?";
	size_t len = strlen(id);
	snprintf(out, 9, "%s", len > 8 ? id + len - 8 : id);
}
