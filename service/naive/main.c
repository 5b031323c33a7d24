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
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "checkout.h"
#include "checkout/config.h"
#include "checkout/db.h"
#include "checkout/fiber.h"
#include "checkout/kafka.h"
#include "checkout/log.h"
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

/* The view; written by the consumer thread, read by the handlers. */
static struct {
	pthread_mutex_t mu;
	struct product *products[VIEW_BUCKETS];
	struct bought *bought[VIEW_BUCKETS];
	double *lag_ms; /* per event applied: its age when the view took it in (timestamp to now) */
	size_t n_lag, cap_lag;
} view = {.mu = PTHREAD_MUTEX_INITIALIZER};

static rd_kafka_t *producer, *consumer;
static const char *topic;
static atomic_bool consumer_stop;

static const struct db_stmt naive_stmts[] = {
    {"naive_product",
     "SELECT p.price_cents, p.stock, coalesce(p.limit_group, ''), "
     "  coalesce((SELECT g.per_customer FROM limit_groups g WHERE g.name = p.limit_group), 0) "
     "FROM products p WHERE p.sku = $1"},
    {NULL, NULL},
};

static unsigned hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % VIEW_BUCKETS;
}

/* The product of sku, or NULL; view.mu held. */
static struct product *product_find(const char *sku)
{
	for (struct product *p = view.products[hash(sku)]; p; p = p->next)
		if (!strcmp(p->sku, sku))
			return p;
	return NULL;
}

/* The purchases of customer in group, created at 0 when absent (NULL: out of memory); view.mu held. */
static struct bought *bought_find(const char *customer, const char *group, long long per_customer)
{
	char key[2 * VALIDATE_ID_BUF + 2];
	snprintf(key, sizeof(key), "%s\n%s", customer, group);
	unsigned h = hash(key);
	for (struct bought *b = view.bought[h]; b; b = b->next)
		if (!strcmp(b->key, key))
			return b;
	struct bought *b = calloc(1, sizeof(*b) + strlen(key) + 1);
	if (!b)
		return NULL;
	strcpy(b->key, key);
	b->per_customer = per_customer;
	b->next = view.bought[h];
	view.bought[h] = b;
	return b;
}

/*
 * Make sure sku is in the view, reading its catalogue row the first time.
 * False after replying itself (*ret) when the database cannot be asked.
 */
static bool view_load(struct http_request *req, const char *sku, enum MHD_Result *ret)
{
	pthread_mutex_lock(&view.mu);
	bool known = product_find(sku) != NULL;
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
		if (product_find(sku)) { /* another request loaded it meanwhile */
			free(p);
		} else {
			unsigned h = hash(sku);
			p->next = view.products[h];
			view.products[h] = p;
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
		struct product *p = sku ? product_find(sku) : NULL;
		if (!p)
			continue;
		p->stock -= quantity;
		struct bought *b =
		    p->limit_group[0] ? bought_find(customer, p->limit_group, p->per_customer) : NULL;
		if (b)
			b->units += quantity;
	}
	pthread_mutex_unlock(&view.mu);
	json_decref(ev);
}

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
			view_apply(m);
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
		for (const struct product *p = view.products[h]; p; p = p->next)
			oversold += p->stock < 0 ? -p->stock : 0;
		for (const struct bought *b = view.bought[h]; b; b = b->next)
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
	/* read the view: what the topic said so far */
	long long total = 0;
	pthread_mutex_lock(&view.mu);
	for (size_t i = 0; i < cart->n_items; i++) {
		const struct product *p = product_find(cart->items[i].sku);
		if (!p)
			continue;
		lines[i].found = true;
		lines[i].price_cents = p->price_cents;
		lines[i].stock = p->stock;
		total += p->price_cents * cart->items[i].quantity;
		if (p->limit_group[0]) {
			const struct bought *b =
			    bought_find(cart->customer_id, p->limit_group, p->per_customer);
			snprintf(lines[i].limit_group, sizeof(lines[i].limit_group), "%s", p->limit_group);
			lines[i].per_customer = p->per_customer;
			lines[i].bought = b ? b->units : 0;
		}
	}
	pthread_mutex_unlock(&view.mu);

	if (checkout_decide(cart, lines, &result)) {
		char order_id[37], created_at[40], location[64];
		struct timespec now;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		strftime(created_at, sizeof(created_at), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(created_at + strlen(created_at), sizeof(created_at) - strlen(created_at), ".%06ldZ",
			 now.tv_nsec / 1000);
		new_uuid(order_id);
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

// clang-format off
const struct route routes[] = {
    {"POST", "/v1/checkout", ROUTE_CHECKOUT, NULL, false, true,  naive_checkout},
    {"GET",  "/healthz",     ROUTE_HEALTHZ,  NULL, false, false, probes_handle_healthz},
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
	if (cfg.naive_mode != NAIVE_VIEW) {
		log_error("NAIVE_MODE=intent is not built yet; only view is");
		goto out;
	}
	log_warn("!!! checkout-naive (NAIVE_MODE=view): checkouts are decided from a view of the topic, "
		 "without a transaction; it oversells by design and exists only to measure that !!!");
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
	if (!srv.pool || !kafka_start(&cfg))
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
	log_info("listening on %s:%d, mode view, topic %s", cfg.listen_host, cfg.listen_port, topic);
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
	if (consuming)
		view_report();
	free(view.lag_ms);
	for (size_t h = 0; h < VIEW_BUCKETS; h++) {
		for (struct product *p = view.products[h], *n; p; p = n) {
			n = p->next;
			free(p);
		}
		for (struct bought *b = view.bought[h], *n; b; b = n) {
			n = b->next;
			free(b);
		}
	}
	config_free(&cfg);
	return status;
}
