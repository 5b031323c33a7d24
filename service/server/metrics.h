/* metrics.h - the server's counters, rendered as Prometheus text.
 *
 * Every counter is updated with atomic operations, so handlers on any thread
 * record without locks. There is one process-wide set (metrics_*).
 */
#ifndef CHECKOUT_SERVER_METRICS_H
#define CHECKOUT_SERVER_METRICS_H

#include <stdbool.h>

struct db_pool;

/* Routes, as labelled in checkout_http_requests_total. */
enum metrics_route {
	ROUTE_CHECKOUT,
	ROUTE_PRODUCTS,
	ROUTE_PRODUCT,
	ROUTE_STOCK_ADJUSTMENTS,
	ROUTE_LIMIT,
	ROUTE_ORDER,
	ROUTE_HEALTHZ,
	ROUTE_READYZ,
	ROUTE_METRICS,
	ROUTE_UNKNOWN,
	ROUTE_COUNT
};

/* Outcomes of POST /v1/checkout, as labelled in checkout_outcomes_total. */
enum metrics_outcome {
	OUTCOME_ADMITTED,
	OUTCOME_OUT_OF_STOCK,
	OUTCOME_LIMIT_EXCEEDED,
	OUTCOME_UNKNOWN_SKU,
	OUTCOME_INVALID,
	OUTCOME_REPLAYED,
	OUTCOME_IDEMPOTENCY_CONFLICT,
	OUTCOME_UNAVAILABLE,
	OUTCOME_CONTENTION,
	OUTCOME_UNKNOWN, /* COMMIT sent, no answer: the client must retry with its key */
	OUTCOME_COUNT
};

/* The steps of a checkout, as labelled in checkout_step_seconds. */
enum metrics_step {
	STEP_HOT_SKU_WAIT, /* waiting for the turn of the cart's hot SKUs */
	STEP_POOL_WAIT,	   /* waiting for a pooled connection */
	STEP_READ,	   /* the read round trip: BEGIN, the cart's products */
	STEP_WRITE_COMMIT, /* the write round trip: stock, order, lines, outbox, COMMIT */
	STEP_COUNT
};
/* Count one answered request. */
void metrics_request(enum metrics_route route, unsigned status);

/* The outcome's label, e.g. "out_of_stock" (static; never NULL). */
const char *metrics_outcome_name(enum metrics_outcome outcome);

/* Count one checkout outcome and its latency in seconds. */
void metrics_checkout(enum metrics_outcome outcome, double seconds);

/* Count one step of a checkout and its time in seconds. */
void metrics_step(enum metrics_step step, double seconds);
/* Count one retry of the checkout transaction after 40001/40P01. */
void metrics_retry(void);

/*
 * Render every metric as Prometheus text (format 0.0.4); pool may be NULL.
 * Returns a malloc'd string (caller frees), or NULL when out of memory.
 */
char *metrics_render(struct db_pool *pool) __attribute__((warn_unused_result));

#endif
