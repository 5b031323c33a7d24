/* metrics.c - see metrics.h. */
#define _GNU_SOURCE
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "checkout/db.h"

#define STATUS_MIN 100
#define STATUS_MAX 599

static const char *const route_names[ROUTE_COUNT] = {
    [ROUTE_CHECKOUT] = "/v1/checkout",
    [ROUTE_PRODUCTS] = "/v1/products",
    [ROUTE_PRODUCT] = "/v1/products/{sku}",
    [ROUTE_STOCK_ADJUSTMENTS] = "/v1/products/{sku}/stock-adjustments",
    [ROUTE_LIMIT] = "/v1/limits/{group}",
    [ROUTE_ORDER] = "/v1/orders/{id}",
    [ROUTE_HEALTHZ] = "/healthz",
    [ROUTE_READYZ] = "/readyz",
    [ROUTE_METRICS] = "/metrics",
    [ROUTE_UNKNOWN] = "other",
};

static const char *const outcome_names[OUTCOME_COUNT] = {
    [OUTCOME_ADMITTED] = "admitted",
    [OUTCOME_OUT_OF_STOCK] = "out_of_stock",
    [OUTCOME_LIMIT_EXCEEDED] = "purchase_limit_exceeded",
    [OUTCOME_UNKNOWN_SKU] = "unknown_sku",
    [OUTCOME_INVALID] = "invalid",
    [OUTCOME_REPLAYED] = "replayed",
    [OUTCOME_IDEMPOTENCY_CONFLICT] = "idempotency_conflict",
    [OUTCOME_UNAVAILABLE] = "database_unavailable",
    [OUTCOME_CONTENTION] = "contention",
    [OUTCOME_UNKNOWN] = "outcome_unknown",
};

const char *metrics_outcome_name(enum metrics_outcome outcome)
{
	return outcome >= 0 && outcome < OUTCOME_COUNT && outcome_names[outcome] ? outcome_names[outcome] : "other";
}

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static const char *const step_names[STEP_COUNT] = {
    [STEP_HOT_SKU_WAIT] = "hot_sku_wait",
    [STEP_POOL_WAIT] = "pool_wait",
    [STEP_READ] = "read",
    [STEP_WRITE_COMMIT] = "write_commit",
};

struct histogram {
	unsigned long buckets[N_BUCKETS + 1]; /* last: +Inf */
	unsigned long count;
	unsigned long sum_us;
};

static unsigned long requests[ROUTE_COUNT][STATUS_MAX - STATUS_MIN + 1];
static unsigned long outcomes[OUTCOME_COUNT];
static struct histogram latency;
static struct histogram steps[STEP_COUNT];
static unsigned long retries;

static void add(unsigned long *counter, unsigned long n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static unsigned long get(const unsigned long *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

void metrics_request(enum metrics_route route, unsigned status)
{
	if (route >= ROUTE_COUNT || status < STATUS_MIN || status > STATUS_MAX)
		return;
	add(&requests[route][status - STATUS_MIN], 1);
}

static void observe(struct histogram *h, double seconds)
{
	size_t b = 0;
	while (b < N_BUCKETS && seconds > buckets[b])
		b++;
	add(&h->buckets[b], 1);
	add(&h->count, 1);
	add(&h->sum_us, (unsigned long)(seconds * 1e6));
}

/* The sample lines of one histogram; labels is "" or `name="value"`. */
static void render_histogram(FILE *f, const char *name, const char *labels, const struct histogram *h)
{
	const char *sep = *labels ? "," : "", *open = *labels ? "{" : "", *close = *labels ? "}" : "";
	unsigned long cumulative = 0;
	for (size_t b = 0; b < N_BUCKETS; b++) {
		cumulative += get(&h->buckets[b]);
		fprintf(f, "%s_bucket{%s%sle=\"%g\"} %lu\n", name, labels, sep, buckets[b], cumulative);
	}
	cumulative += get(&h->buckets[N_BUCKETS]);
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name, labels, sep, cumulative);
	fprintf(f, "%s_sum%s%s%s %.6f\n", name, open, labels, close, (double)get(&h->sum_us) / 1e6);
	fprintf(f, "%s_count%s%s%s %lu\n", name, open, labels, close, get(&h->count));
}

void metrics_checkout(enum metrics_outcome outcome, double seconds)
{
	if (outcome >= OUTCOME_COUNT)
		return;
	add(&outcomes[outcome], 1);
	observe(&latency, seconds);
}

void metrics_step(enum metrics_step step, double seconds)
{
	if (step < STEP_COUNT)
		observe(&steps[step], seconds);
}

void metrics_retry(void)
{
	add(&retries, 1);
}

char *metrics_render(struct db_pool *pool)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;

	fputs("# HELP checkout_http_requests_total HTTP requests answered, by route and status.\n"
	      "# TYPE checkout_http_requests_total counter\n",
	      f);
	for (int r = 0; r < ROUTE_COUNT; r++)
		for (int s = STATUS_MIN; s <= STATUS_MAX; s++) {
			unsigned long n = get(&requests[r][s - STATUS_MIN]);
			if (n)
				fprintf(f, "checkout_http_requests_total{route=\"%s\",status=\"%d\"} %lu\n",
					route_names[r], s, n);
		}

	fputs("# HELP checkout_outcomes_total Results of POST /v1/checkout.\n"
	      "# TYPE checkout_outcomes_total counter\n",
	      f);
	for (int o = 0; o < OUTCOME_COUNT; o++)
		fprintf(f, "checkout_outcomes_total{outcome=\"%s\"} %lu\n", outcome_names[o],
			get(&outcomes[o]));

	fputs("# HELP checkout_duration_seconds Time to answer POST /v1/checkout.\n"
	      "# TYPE checkout_duration_seconds histogram\n",
	      f);
	render_histogram(f, "checkout_duration_seconds", "", &latency);

	fputs("# HELP checkout_step_seconds Where a checkout's time goes: waiting for the hot SKU's turn, "
	      "for a pooled connection, the read round trip, the write and COMMIT round trip (per attempt).\n"
	      "# TYPE checkout_step_seconds histogram\n",
	      f);
	for (int st = 0; st < STEP_COUNT; st++) {
		char labels[48];
		snprintf(labels, sizeof(labels), "step=\"%s\"", step_names[st]);
		render_histogram(f, "checkout_step_seconds", labels, &steps[st]);
	}

	fprintf(
	    f,
	    "# HELP checkout_serialization_retries_total Checkout transactions retried after 40001/40P01.\n"
	    "# TYPE checkout_serialization_retries_total counter\n"
	    "checkout_serialization_retries_total %lu\n",
	    get(&retries));
	fprintf(f,
		"# HELP checkout_db_pool_waits_total Requests that waited for a free database connection.\n"
		"# TYPE checkout_db_pool_waits_total counter\n"
		"checkout_db_pool_waits_total %lu\n",
		pool ? db_pool_waits(pool) : 0UL);

	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
