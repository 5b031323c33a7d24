/* event.h - an "order.admitted" event as the workers read it off the topic.
 *
 * The shared contract: key = order id, value = the order JSON (the 201 body
 * of POST /v1/checkout without "status", each item with "stock_after" too),
 * CloudEvents 1.0 binary-mode headers ce_id, ce_type, ce_source, ce_time.
 * Parsing lives here once, for the three workers and their tests.
 */
#ifndef CHECKOUT_WORKERS_EVENT_H
#define CHECKOUT_WORKERS_EVENT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

#define EVENT_TYPE_ORDER_ADMITTED "order.admitted"
/* The largest stock a product may have (the server's VALIDATE_MAX_STOCK). */
#define EVENT_MAX_STOCK 1000000000LL

struct event_item {
	char *sku;
	int quantity;
	long long unit_price_cents;
	/*
	 * The SKU's stock once this order took its units, as the checkout's
	 * transaction wrote it: what a view needs to know the stock without
	 * reading the catalogue. -1 when the event does not say (events written
	 * before it was sent).
	 */
	long long stock_after;
};

struct order_event {
	char *event_id; /* ce_id: letters, digits and '-' only (it names a file) */
	char *type;	/* ce_type */
	char *order_id; /* a UUID in text form */
	char *customer_id;
	char *email;
	struct event_item *items;
	size_t n_items;
	long long total_cents;
	char *created_at; /* RFC 3339, as sent */
	long long units;  /* sum of the items' quantities */
};

/*
 * Parse a consumed message into ev (zeroed first). Returns true when the
 * message is a well-formed order.admitted event; otherwise false with the
 * reason in err (not JSON, a missing or malformed field, an unknown
 * ce_type). Strings are validated so they can go into a file name or a mail
 * header safely, by the rules of checkout/fields.h that the server admitted
 * them by (lengths in characters, UTF-8, no control characters): an event
 * of an order the API admitted always parses. Call event_free(ev) whatever
 * the result.
 */
bool event_parse(const rd_kafka_message_t *msg, struct order_event *ev, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Same, from the parts of a message: headers may be NULL. */
bool event_parse_parts(const void *value, size_t len, rd_kafka_headers_t *headers, struct order_event *ev,
		       char *err, size_t errlen) __attribute__((warn_unused_result));

/* Free what ev holds and zero it. Accepts NULL; safe to call twice. */
void event_free(struct order_event *ev);

/* Format cents as "1234.56" (with a '-' when negative) into buf; returns buf. */
const char *event_money(long long cents, char *buf, size_t buflen);

/*
 * The last 8 characters of an order id (all of it when shorter), for log
 * contexts: order ids are UUIDv7, whose leading digits are the time and are
 * the same for every order of the same minute, while the tail is random.
 */
void event_short_id(const char *order_id, char out[9]);

#endif
