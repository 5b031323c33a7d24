/* checkout-naive: POST /v1/checkout decided the inside-out way. DELIBERATELY WRONG.
 *
 * The architecture the project argues against (seed 002), built so that its
 * anomalies can be measured beside the real server: the same request, the
 * same validation (validate.c), the same decision (checkout_decide) and the
 * same 201/409/422 bodies, but no transaction.
 *
 * NAIVE_MODE=view: stock and each customer's purchases in a limit group come
 * from a view that a consumer of the orders topic maintains, in memory in
 * this process (the simplest store, and the one whose staleness is only the
 * topic's: no second database hides or adds lag). The handler reads the
 * view, decides, and appends order.admitted to the topic; the consumer then
 * subtracts the units from the view, and stock may go below zero. Two
 * checkouts that read the view before either event came back both get the
 * last unit.
 *
 * The catalogue (price, the stock a product was created with, its limit
 * group) is read from PostgreSQL the first time a SKU is asked for;
 * afterwards only the topic changes the view. Nothing is written to
 * PostgreSQL. The consumer reads the topic from its start, so give this
 * program a topic of its own (ORDERS_TOPIC) that the relay does not write.
 * Idempotency-Key is not supported.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "checkout.h"
#include "checkout/config.h"
#include "checkout/db.h"
#include "checkout/fiber.h"
#include "checkout/kafka.h"
#include "checkout/log.h"
#include "checkout/partition.h"
#include "http.h"
#include "probes.h"
#include "routes.h"
#include "validate.h"

#define VIEW_BUCKETS 4096
/* Lags kept for the figures at stop (8 MB at most). */
#define VIEW_MAX_LAGS 1000000

/* One product in the view: the catalogue's row, its stock moved by the topic. */
struct product {
	struct product *next;
	long long price_cents, stock, per_customer;
	char limit_group[VALIDATE_ID_BUF];
	char sku[];
};

/* Units one customer bought in one limit group, by the topic. */
struct bought {
	struct bought *next;
	long long units, per_customer;
	char key[]; /* customer id, '\n', group */
};

/* Products and purchases: the view (mode view), or one partition's decider state (mode intent). */
struct table {
	struct product *products[VIEW_BUCKETS];
	struct bought *bought[VIEW_BUCKETS];
};

/* The view (in mode intent: the catalogue the deciders copy from); written by the consumer thread. */
static struct {
	pthread_mutex_t mu; /* guards the view, the partitions' tables and the pending decisions */
	struct table t;
	double *lag_ms; /* per event applied: its age when the view took it in (timestamp to now) */
	size_t n_lag, cap_lag;
} view = {.mu = PTHREAD_MUTEX_INITIALIZER};

static rd_kafka_t *producer, *consumer;
static const char *topic;
static atomic_bool consumer_stop;
static struct table *parts; /* mode intent: each partition's decider state */
static int n_parts;
static int mode; /* enum config_naive_mode */

static const struct db_stmt naive_stmts[] = {
    {"naive_product",
     "SELECT p.price_cents, p.stock, coalesce(p.limit_group, ''), "
     "  coalesce((SELECT g.per_customer FROM limit_groups g WHERE g.name = p.limit_group), 0) "
     "FROM products p WHERE p.sku = $1"},
    {NULL, NULL},
};

static unsigned hash(const char *s)
{
	return partition_hash(s) % VIEW_BUCKETS;
}

/* The product of sku, or NULL; view.mu held. */
static struct product *product_find(struct table *t, const char *sku)
{
	for (struct product *p = t->products[hash(sku)]; p; p = p->next)
		if (!strcmp(p->sku, sku))
			return p;
	return NULL;
}

/* The purchases of customer in group, created at 0 when absent (NULL: out of memory); view.mu held. */
static struct bought *bought_find(struct table *t, const char *customer, const char *group,
				  long long per_customer)
{
	char key[2 * VALIDATE_ID_BUF + 2];
	snprintf(key, sizeof(key), "%s\n%s", customer, group);
	unsigned h = hash(key);
	for (struct bought *b = t->bought[h]; b; b = b->next)
		if (!strcmp(b->key, key))
			return b;
	struct bought *b = calloc(1, sizeof(*b) + strlen(key) + 1);
	if (!b)
		return NULL;
	strcpy(b->key, key);
	b->per_customer = per_customer;
	b->next = t->bought[h];
	t->bought[h] = b;
	return b;
}

static void table_free(struct table *t)
{
	for (size_t h = 0; h < VIEW_BUCKETS; h++) {
		for (struct product *p = t->products[h], *n; p; p = n) {
			n = p->next;
			free(p);
		}
		for (struct bought *b = t->bought[h], *n; b; b = n) {
			n = b->next;
			free(b);
		}
	}
}

/*
 * Make sure sku is in the view, reading its catalogue row the first time.
 * False after replying itself (*ret) when the database cannot be asked.
 */
static bool view_load(struct http_request *req, const char *sku, enum MHD_Result *ret)
{
	pthread_mutex_lock(&view.mu);
	bool known = product_find(&view.t, sku) != NULL;
	pthread_mutex_unlock(&view.mu);
	if (known)
		return true;
	const char *params[] = {sku};
	PGresult *res = http_db_exec(req, "naive_product", 1, params, ret);
	if (!res)
		return false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		*ret = http_reply_db_error(req, res);
		PQclear(res);
		return false;
	}
	struct product *p = PQntuples(res) ? calloc(1, sizeof(*p) + strlen(sku) + 1) : NULL;
	if (p) {
		strcpy(p->sku, sku);
		p->price_cents = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		p->stock = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		snprintf(p->limit_group, sizeof(p->limit_group), "%s", PQgetvalue(res, 0, 2));
		p->per_customer = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		pthread_mutex_lock(&view.mu);
		if (product_find(&view.t, sku)) { /* another request loaded it meanwhile */
			free(p);
		} else {
			unsigned h = hash(sku);
			p->next = view.t.products[h];
			view.t.products[h] = p;
		}
		pthread_mutex_unlock(&view.mu);
	}
	PQclear(res);
	return true; /* an unknown SKU stays out of the view: the decision says 422 */
}

/* The consumer applies one order.admitted event to the view: stock may go below zero. */
static void view_apply(const rd_kafka_message_t *m)
{
	json_t *ev = json_loadb(m->payload, m->len, 0, NULL);
	const char *customer = json_string_value(json_object_get(ev, "customer_id"));
	json_t *items = json_object_get(ev, "items"), *item;
	size_t i;
	if (!customer || !json_is_array(items)) {
		log_warn("skipping a message that is not an order.admitted event (offset %lld)",
			 (long long)m->offset);
		json_decref(ev);
		return;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t produced = rd_kafka_message_timestamp(m, NULL);
	pthread_mutex_lock(&view.mu);
	if (produced > 0 && view.n_lag < VIEW_MAX_LAGS) {
		if (view.n_lag == view.cap_lag) {
			size_t cap = view.cap_lag ? 2 * view.cap_lag : 4096;
			double *more = realloc(view.lag_ms, cap * sizeof(*more));
			if (more) {
				view.lag_ms = more;
				view.cap_lag = cap;
			}
		}
		if (view.n_lag < view.cap_lag)
			view.lag_ms[view.n_lag++] =
			    (double)now.tv_sec * 1e3 + now.tv_nsec / 1e6 - (double)produced;
	}
	json_array_foreach(items, i, item)
	{
		const char *sku = json_string_value(json_object_get(item, "sku"));
		json_int_t quantity = json_integer_value(json_object_get(item, "quantity"));
		struct product *p = sku ? product_find(&view.t, sku) : NULL;
		if (!p)
			continue;
		p->stock -= quantity;
		struct bought *b = p->limit_group[0]
				       ? bought_find(&view.t, customer, p->limit_group, p->per_customer)
				       : NULL;
		if (b)
			b->units += quantity;
	}
	pthread_mutex_unlock(&view.mu);
	json_decref(ev);
}

static void intent_decide(const rd_kafka_message_t *m);

/* The consumer thread: applies the topic to the view, and serves the producer's delivery reports. */
static void *consume(void *arg)
{
	(void)arg;
	while (!atomic_load(&consumer_stop)) {
		rd_kafka_poll(producer, 0);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 50);
		if (!m)
			continue;
		if (!m->err)
			(mode == NAIVE_INTENT ? intent_decide : view_apply)(m);
		else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("consumer: %s", rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
	}
	return NULL;
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk, (void)opaque;
	if (m->err)
		log_error("order.admitted not appended (the order was answered 201): %s",
			  rd_kafka_err2str(m->err));
}

/* A random (version 4) UUID as text. */
static void new_uuid(char out[37]);

/* A new order's id and its time (created_at[len], ISO 8601 UTC with microseconds). */
static void new_order_id(char id[37], char *created_at, size_t len)
{
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(created_at, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(created_at + strlen(created_at), len - strlen(created_at), ".%06ldZ", now.tv_nsec / 1000);
	new_uuid(id);
}

/* A random (version 4) UUID as text. */
static void new_uuid(char out[37])
{
	unsigned char b[16] = {0};
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (unsigned char)rand();
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- mode intent ------------------------------------------------------ */

/* A checkout waiting for the deciders of its partitions. */
struct pending {
	struct pending *next;
	unsigned long long id;			     /* the request id the intents carry */
	int efd;				     /* written once every partition has decided */
	int waiting;				     /* partitions yet to decide */
	unsigned status;			     /* of the first refusal */
	char *refusal;				     /* the first refusal's problem text; NULL: none */
	struct line_state lines[VALIDATE_MAX_ITEMS]; /* what the deciders read, by cart line */
};

static struct pending *pending_list; /* view.mu */
static atomic_ullong last_request_id;

/*
 * The decider of the intent's partition: applies it to that partition's
 * own state (stock and purchases copied from the catalogue the first time
 * it sees a SKU), with checkout_decide, and hands the decision to the
 * waiting request. It knows nothing another partition decided.
 */
static void intent_decide(const rd_kafka_message_t *m)
{
	json_t *in = json_loadb(m->payload, m->len, 0, NULL), *item;
	json_t *items = json_object_get(in, "items");
	const char *customer = json_string_value(json_object_get(in, "customer_id"));
	const char *email = json_string_value(json_object_get(in, "email"));
	unsigned long long id = (unsigned long long)json_integer_value(json_object_get(in, "request_id"));
	struct checkout_request *sub = calloc(1, sizeof(*sub));
	struct line_state *lines = calloc(VALIDATE_MAX_ITEMS, sizeof(*lines));
	struct checkout_result r = {0};
	int index[VALIDATE_MAX_ITEMS];
	size_t i;
	if (!sub || !lines || !customer || !email || !json_is_array(items) || !json_array_size(items) ||
	    json_array_size(items) > VALIDATE_MAX_ITEMS || m->partition < 0 || m->partition >= n_parts) {
		log_warn("skipping a message that is not a checkout intent (offset %lld)",
			 (long long)m->offset);
		goto out;
	}
	snprintf(sub->customer_id, sizeof(sub->customer_id), "%s", customer);
	snprintf(sub->email, sizeof(sub->email), "%s", email);
	json_array_foreach(items, i, item)
	{
		const char *sku = json_string_value(json_object_get(item, "sku"));
		snprintf(sub->items[i].sku, sizeof(sub->items[i].sku), "%s", sku ? sku : "");
		sub->items[i].quantity = (int)json_integer_value(json_object_get(item, "quantity"));
		index[i] = (int)json_integer_value(json_object_get(item, "i"));
	}
	sub->n_items = json_array_size(items);
	struct table *t = &parts[m->partition];
	pthread_mutex_lock(&view.mu);
	for (i = 0; i < sub->n_items; i++) {
		const char *sku = sub->items[i].sku;
		struct product *p = product_find(t, sku);
		const struct product *c = p ? NULL : product_find(&view.t, sku);
		if (c && (p = malloc(sizeof(*p) + strlen(sku) + 1))) {
			memcpy(p, c, sizeof(*p) + strlen(sku) + 1);
			p->next = t->products[hash(sku)];
			t->products[hash(sku)] = p;
		}
		if (!p)
			continue;
		const struct bought *b =
		    p->limit_group[0] ? bought_find(t, customer, p->limit_group, p->per_customer) : NULL;
		lines[i] =
		    (struct line_state){.found = true, .price_cents = p->price_cents, .stock = p->stock};
		if (p->limit_group[0]) {
			snprintf(lines[i].limit_group, sizeof(lines[i].limit_group), "%s", p->limit_group);
			lines[i].per_customer = p->per_customer;
			lines[i].bought = b ? b->units : 0;
		}
	}
	bool admit = checkout_decide(sub, lines, &r);
	for (i = 0; admit && i < sub->n_items; i++) {
		struct product *p = product_find(t, sub->items[i].sku);
		p->stock -= sub->items[i].quantity;
		struct bought *b =
		    p->limit_group[0] ? bought_find(t, customer, p->limit_group, p->per_customer) : NULL;
		if (b)
			b->units += sub->items[i].quantity;
	}
	struct pending *w = pending_list;
	while (w && w->id != id)
		w = w->next;
	if (w) { /* else the request gave up waiting: the decision stands all the same */
		for (i = 0; i < sub->n_items; i++)
			if (index[i] >= 0 && index[i] < VALIDATE_MAX_ITEMS)
				w->lines[index[i]] = lines[i];
		if (!admit && !w->refusal) {
			w->refusal = r.body;
			w->status = r.status;
			r.body = NULL;
		}
		if (--w->waiting == 0) {
			uint64_t one = 1;
			if (write(w->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
				log_warn("cannot wake a waiting checkout");
		}
	}
	pthread_mutex_unlock(&view.mu);
out:
	free(r.body);
	free(lines);
	free(sub);
	json_decref(in);
}

/* The partition of a SKU's intents (the function checkout-race picks crossing carts by). */
static int sku_partition(const char *sku)
{
	return partition_of(sku, n_parts);
}

/*
 * Mode intent: one intent per partition the cart's SKUs fall on (keyed by
 * its first SKU), then wait for every decision until the request's deadline
 * (503 decision-timeout). Refused by any partition: that refusal, though
 * another partition may have taken its items already.
 */
static enum MHD_Result intent_checkout(struct http_request *req, const struct checkout_request *cart)
{
	struct pending *w = calloc(1, sizeof(*w));
	json_t **intents = calloc((size_t)n_parts, sizeof(*intents));
	enum MHD_Result ret = MHD_NO;
	char *body = NULL, *payload = NULL;
	bool listed = false, done = false;
	if (!w || !intents || (w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto out;
	w->id = atomic_fetch_add(&last_request_id, 1) + 1;
	for (size_t i = 0; i < cart->n_items; i++) {
		int part = sku_partition(cart->items[i].sku);
		if (!intents[part]) {
			intents[part] =
			    json_pack("{s:I, s:s, s:s, s:[]}", "request_id", (json_int_t)w->id, "customer_id",
				      cart->customer_id, "email", cart->email, "items");
			w->waiting++;
		}
		json_array_append_new(json_object_get(intents[part], "items"),
				      json_pack("{s:s, s:i, s:i}", "sku", cart->items[i].sku, "quantity",
						cart->items[i].quantity, "i", (int)i));
	}
	pthread_mutex_lock(&view.mu);
	w->next = pending_list;
	pending_list = w;
	listed = true;
	pthread_mutex_unlock(&view.mu);
	for (int part = 0; part < n_parts; part++) {
		if (!intents[part])
			continue;
		char *text = json_dumps(intents[part], JSON_COMPACT);
		const char *key = json_string_value(
		    json_object_get(json_array_get(json_object_get(intents[part], "items"), 0), "sku"));
		rd_kafka_resp_err_t kerr =
		    text ? rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
					     RD_KAFKA_V_KEY(key, strlen(key)),
					     RD_KAFKA_V_VALUE(text, strlen(text)),
					     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)
			 : RD_KAFKA_RESP_ERR__FAIL;
		free(text);
		if (kerr) {
			ret = http_reply_unavailable(req, "broker-unavailable", rd_kafka_err2str(kerr));
			goto out;
		}
	}
	for (;;) {
		pthread_mutex_lock(&view.mu);
		done = w->waiting == 0;
		pthread_mutex_unlock(&view.mu);
		int left = fiber_deadline_left_ms();
		if (done || left <= 0)
			break;
		uint64_t n;
		if (fiber_wait_fd(w->efd, POLLIN, left) > 0 && read(w->efd, &n, sizeof(n)) < 0)
			continue;
	}
	if (!done) {
		ret = http_reply_unavailable(
		    req, "decision-timeout",
		    "No decision within the request's deadline; the checkout may yet be "
		    "admitted.");
		goto out;
	}
	if (w->refusal) {
		ret = http_reply(req, w->status, "application/problem+json", w->refusal, strlen(w->refusal),
				 NULL);
		goto out;
	}
	char order_id[37], created_at[40], location[64];
	long long total = 0;
	for (size_t i = 0; i < cart->n_items; i++)
		total += w->lines[i].price_cents * cart->items[i].quantity;
	new_order_id(order_id, created_at, sizeof(created_at));
	snprintf(location, sizeof(location), "/v1/orders/%s", order_id);
	if (!checkout_build_admitted(cart, w->lines, order_id, created_at, total, &body, &payload))
		goto out;
	const char *headers[] = {"Location", location, NULL};
	ret = http_reply(req, 201, "application/json", body, strlen(body), headers);
out:
	if (listed) {
		pthread_mutex_lock(&view.mu);
		struct pending **at = &pending_list;
		while (*at != w)
			at = &(*at)->next;
		*at = w->next;
		pthread_mutex_unlock(&view.mu);
	}
	for (int part = 0; intents && part < n_parts; part++)
		json_decref(intents[part]);
	free(intents);
	if (w && w->efd > 0)
		close(w->efd);
	if (w)
		free(w->refusal);
	free(w);
	free(body);
	free(payload);
	return ret;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/*
 * At stop, what the view got wrong: units sold below zero stock, units
 * admitted beyond a customer's limit, and how far behind the topic the view
 * was (each event's age when the consumer applied it; a decision made in
 * that window did not see the order).
 */
static void view_report(void)
{
	long long oversold = 0, over_limit = 0;
	for (size_t h = 0; h < VIEW_BUCKETS; h++) {
		for (const struct product *p = view.t.products[h]; p; p = p->next)
			oversold += p->stock < 0 ? -p->stock : 0;
		for (const struct bought *b = view.t.bought[h]; b; b = b->next)
			over_limit += b->units > b->per_customer ? b->units - b->per_customer : 0;
	}
	double p50 = 0, p99 = 0;
	if (view.n_lag) {
		qsort(view.lag_ms, view.n_lag, sizeof(double), by_value);
		p50 = view.lag_ms[(view.n_lag - 1) / 2];
		p99 = view.lag_ms[(size_t)((double)(view.n_lag - 1) * 0.99)];
	}
	log_info("view report: units oversold %lld, units over a purchase limit %lld, view lag p50 %.1f ms "
		 "p99 %.1f ms over %zu events",
		 oversold, over_limit, p50, p99, view.n_lag);
}

/* POST /v1/checkout, the view way. */
static enum MHD_Result naive_checkout(struct http_request *req, const char *param)
{
	struct checkout_request *cart = malloc(sizeof(*cart));
	struct line_state *lines = NULL;
	struct checkout_result result = {0};
	json_t *errors = NULL;
	char *payload = NULL;
	enum MHD_Result ret = MHD_NO;

	(void)param;
	if (!cart)
		goto out;
	if (!validate_checkout(req->body, req->body_len, cart, &errors)) {
		ret = http_reply_invalid(req, errors);
		goto out;
	}
	if (!(lines = calloc(cart->n_items, sizeof(*lines))))
		goto out;
	for (size_t i = 0; i < cart->n_items; i++)
		if (!view_load(req, cart->items[i].sku, &ret))
			goto out;
	if (mode == NAIVE_INTENT) {
		ret = intent_checkout(req, cart);
		goto out;
	}
	/* read the view: what the topic said so far */
	long long total = 0;
	pthread_mutex_lock(&view.mu);
	for (size_t i = 0; i < cart->n_items; i++) {
		const struct product *p = product_find(&view.t, cart->items[i].sku);
		if (!p)
			continue;
		lines[i].found = true;
		lines[i].price_cents = p->price_cents;
		lines[i].stock = p->stock;
		total += p->price_cents * cart->items[i].quantity;
		if (p->limit_group[0]) {
			const struct bought *b =
			    bought_find(&view.t, cart->customer_id, p->limit_group, p->per_customer);
			snprintf(lines[i].limit_group, sizeof(lines[i].limit_group), "%s", p->limit_group);
			lines[i].per_customer = p->per_customer;
			lines[i].bought = b ? b->units : 0;
		}
	}
	pthread_mutex_unlock(&view.mu);

	if (checkout_decide(cart, lines, &result)) {
		char order_id[37], created_at[40], location[64];
		new_order_id(order_id, created_at, sizeof(created_at));
		snprintf(location, sizeof(location), "/v1/orders/%s", order_id);
		if (!checkout_build_admitted(cart, lines, order_id, created_at, total, &result.body,
					     &payload))
			goto out;
		/* "commit": append the event; the view learns of it when the consumer reads it back */
		rd_kafka_resp_err_t kerr = rd_kafka_producev(
		    producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(order_id, strlen(order_id)),
		    RD_KAFKA_V_VALUE(payload, strlen(payload)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_END);
		if (kerr) {
			ret = http_reply_unavailable(req, "broker-unavailable", rd_kafka_err2str(kerr));
			goto out;
		}
		const char *headers[] = {"Location", location, NULL};
		ret = http_reply(req, 201, "application/json", result.body, strlen(result.body), headers);
	} else if (result.body) {
		ret = http_reply(req, result.status, "application/problem+json", result.body,
				 strlen(result.body), NULL);
	}
out:
	free(result.body);
	free(payload);
	free(lines);
	free(cart);
	return ret;
}

/*
 * GET /v1/products/{sku}: what this design believes of the SKU: the view's
 * stock (mode view: below zero once oversold), or that of the decider of its
 * partition (mode intent). checkout-race reads it after a round, since this
 * program writes no order to PostgreSQL. Only sku, price_cents, stock and
 * limit_group; 404 for a SKU the catalogue does not have.
 */
static enum MHD_Result naive_product(struct http_request *req, const char *sku)
{
	enum MHD_Result ret = MHD_NO;
	if (!view_load(req, sku, &ret))
		return ret;
	pthread_mutex_lock(&view.mu);
	const struct product *p = mode == NAIVE_INTENT ? product_find(&parts[sku_partition(sku)], sku) : NULL;
	if (!p) /* no intent for it yet: the catalogue's row */
		p = product_find(&view.t, sku);
	json_t *body = p ? json_pack("{s:s, s:I, s:I, s:s?}", "sku", sku, "price_cents",
				     (json_int_t)p->price_cents, "stock", (json_int_t)p->stock, "limit_group",
				     p->limit_group[0] ? p->limit_group : NULL)
			 : NULL;
	pthread_mutex_unlock(&view.mu);
	if (!p)
		return http_reply_problem(req, 404, "not-found", "No product has this SKU.", NULL);
	return http_reply_json(req, 200, body, NULL);
}

// clang-format off
const struct route routes[] = {
    {"POST", "/v1/checkout",       ROUTE_CHECKOUT, NULL,                false, true,  naive_checkout},
    {"GET",  "/v1/products/{sku}", ROUTE_PRODUCT,  validate_identifier, false, false, naive_product},
    {"GET",  "/healthz",           ROUTE_HEALTHZ,  NULL,                false, false, probes_handle_healthz},
    {NULL, NULL, ROUTE_UNKNOWN, NULL, false, false, NULL},
};
// clang-format on

/* The producer and the consumer of cfg's topic. False (logged) on failure. */
static bool kafka_start(const struct config *cfg)
{
	char err[256], group[64];
	rd_kafka_conf_t *pconf = kafka_conf_new(cfg), *cconf = kafka_conf_new(cfg);
	if (!pconf || !cconf || !kafka_conf_set(pconf, "linger.ms", "0")) {
		rd_kafka_conf_destroy(pconf);
		rd_kafka_conf_destroy(cconf);
		return false;
	}
	rd_kafka_conf_set_dr_msg_cb(pconf, delivered);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
	if (!producer) {
		rd_kafka_conf_destroy(pconf);
		rd_kafka_conf_destroy(cconf);
		log_error("producer: %s", err);
		return false;
	}
	snprintf(group, sizeof(group), "checkout-naive-%ld", (long)getpid());
	if (!kafka_conf_set(cconf, "group.id", group) ||
	    !kafka_conf_set(cconf, "auto.offset.reset", "earliest") ||
	    !kafka_conf_set(cconf, "enable.auto.commit", "false") ||
	    !kafka_conf_set(cconf, "fetch.wait.max.ms", "10")) {
		rd_kafka_conf_destroy(cconf);
		return false;
	}
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
	if (!consumer) {
		rd_kafka_conf_destroy(cconf);
		log_error("consumer: %s", err);
		return false;
	}
	rd_kafka_poll_set_consumer(consumer);
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t kerr = rd_kafka_subscribe(consumer, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (kerr) {
		log_error("subscribe to %s: %s", topic, rd_kafka_err2str(kerr));
		return false;
	}
	return true;
}

/* n_parts and parts from the topic's metadata. False (logged) on failure. */
static bool count_partitions(void)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(producer, topic, NULL);
	rd_kafka_resp_err_t kerr =
	    t ? rd_kafka_metadata(producer, 0, t, &md, 10000) : RD_KAFKA_RESP_ERR__FAIL;
	if (!kerr && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1))
		kerr = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
							       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
	if (!kerr)
		n_parts = md->topics[0].partition_cnt;
	if (md)
		rd_kafka_metadata_destroy(md);
	if (t)
		rd_kafka_topic_destroy(t);
	if (kerr) {
		log_error("topic %s: %s", topic, rd_kafka_err2str(kerr));
		return false;
	}
	parts = calloc((size_t)n_parts, sizeof(*parts));
	if (!parts)
		log_error("out of memory");
	return parts != NULL;
}

int main(int argc, char **argv)
{
	static const struct db_stmt *const statements[] = {naive_stmts, NULL};
	struct config cfg;
	struct server srv = {0};
	int status = EXIT_FAILURE;
	char err[512];
	sigset_t stop;
	pthread_t thread;
	bool consuming = false;

	enum config_result r = config_load(&cfg, CONFIG_SERVER | CONFIG_NAIVE, "naive", argc, argv);
	if (r != CONFIG_OK)
		return r == CONFIG_EXIT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
	log_init(cfg.program, cfg.log_level, cfg.log_format);
	mode = cfg.naive_mode;
	if (mode == NAIVE_VIEW)
		log_warn(
		    "!!! checkout-naive (NAIVE_MODE=view): checkouts are decided from a view of the topic, "
		    "without a transaction; it oversells by design and exists only to measure that !!!");
	else
		log_warn(
		    "!!! checkout-naive (NAIVE_MODE=intent): each partition's decider knows only its own "
		    "SKUs; limits across partitions and multi-item carts break by design !!!");
	topic = cfg.orders_topic;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!db_wait(cfg.database_url, cfg.db_wait_seconds, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	srv.cfg = &cfg;
	srv.pool = db_pool_create(cfg.database_url, cfg.db_pool_size, statements, NULL);
	if (!srv.pool || !kafka_start(&cfg) || !count_partitions())
		goto out;
	if (pthread_create(&thread, NULL, consume, NULL)) {
		log_error("cannot start the consumer thread");
		goto out;
	}
	consuming = true;
	srv.loop = fiber_loop_start(err, sizeof(err));
	if (!srv.loop || !http_start(&srv, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	log_info("listening on %s:%d, mode %s, topic %s with %d partitions", cfg.listen_host, cfg.listen_port,
		 mode == NAIVE_VIEW ? "view" : "intent", topic, n_parts);
	int sig = 0;
	sigwait(&stop, &sig);
	log_info("stopping on signal %d", sig);
	status = EXIT_SUCCESS;
out:
	if (srv.loop)
		http_stop(&srv);
	fiber_loop_stop(srv.loop);
	if (consuming) {
		atomic_store(&consumer_stop, true);
		pthread_join(thread, NULL);
	}
	if (consumer) {
		rd_kafka_consumer_close(consumer);
		rd_kafka_destroy(consumer);
	}
	if (producer) {
		rd_kafka_flush(producer, 5000);
		rd_kafka_destroy(producer);
	}
	db_pool_destroy(srv.pool);
	if (consuming && mode == NAIVE_VIEW)
		view_report();
	free(view.lag_ms);
	table_free(&view.t);
	for (int i = 0; i < n_parts; i++)
		table_free(&parts[i]);
	free(parts);
	config_free(&cfg);
	return status;
}
