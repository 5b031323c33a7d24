/* check.c - the invariants, checked where the truth is: PostgreSQL, the
 * topic, the workers' tables.
 *
 * Every query names the round's SKUs (fresh, unique names per round), so a
 * database shared with other rounds, runs or programs does not disturb the
 * counts.
 */
#define _GNU_SOURCE
#include "race.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkout/db.h"
#include "checkout/kafka.h"
#include "checkout/log.h"

static const struct db_stmt check_stmts[] = {
    {"race_outbox_mark", "SELECT coalesce(max(id), 0) FROM outbox"},
    {"race_group", "INSERT INTO limit_groups (name, per_customer) VALUES ($1, $2)"},
    {"race_product", "INSERT INTO products (sku, name, price_cents, stock, limit_group) "
		     "VALUES ($1, $1, 1000, $2, $3)"},
    /* initial = current + sold, per SKU */
    {"race_stock", "SELECT p.sku, p.stock, coalesce(sum(l.quantity), 0) FROM products p "
		   "LEFT JOIN order_lines l ON l.sku = p.sku WHERE p.sku = ANY($1::text[]) "
		   "GROUP BY p.sku, p.stock"},
    /* units beyond the limit, summed over every customer of the group */
    {"race_over_limit", "SELECT coalesce(sum(greatest(t.units - g.per_customer, 0)), 0) "
			"FROM (SELECT customer_id, sum(quantity) AS units FROM order_lines "
			"WHERE limit_group = $1 GROUP BY customer_id) t, limit_groups g WHERE g.name = $1"},
    {"race_orders", "SELECT DISTINCT order_id::text FROM order_lines WHERE sku = ANY($1::text[])"},
    /* orders holding part of a cart: a number of lines other than the carts had */
    {"race_partial", "SELECT count(*) FROM (SELECT order_id FROM order_lines WHERE order_id IN "
		     "(SELECT order_id FROM order_lines WHERE sku = ANY($1::text[])) "
		     "GROUP BY order_id HAVING count(*) <> $2::int) t"},
    /* every outbox row since the mark that names one of the SKUs */
    {"race_outbox", "SELECT aggregate_id::text FROM outbox o WHERE o.id > $2 AND EXISTS "
		    "(SELECT 1 FROM jsonb_array_elements(o.payload->'items') i "
		    "WHERE i->>'sku' = ANY($1::text[])) ORDER BY 1"},
    {NULL, NULL},
};

/* Prepared only with --check-workers: the schemas belong to the workers. */
static const struct db_stmt worker_stmts[] = {
    {"race_inbox_email", "SELECT count(DISTINCT order_id) FROM email.inbox WHERE order_id = ANY($1::uuid[])"},
    {"race_inbox_inventory",
     "SELECT count(DISTINCT order_id) FROM inventory.inbox WHERE order_id = ANY($1::uuid[])"},
    {"race_inbox_analytics",
     "SELECT count(DISTINCT order_id) FROM analytics.inbox WHERE order_id = ANY($1::uuid[])"},
    {"race_units_inventory", "SELECT coalesce(sum(units_sold), 0) FROM inventory.stock_view "
			     "WHERE starts_with(sku, $1)"},
    {"race_units_analytics", "SELECT coalesce(sum(units), 0) FROM analytics.skus WHERE starts_with(sku, $1)"},
    {NULL, NULL},
};

static int id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

bool race_set_add(struct race_set *s, const char *id)
{
	if (race_set_has(s, id))
		return true;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char(*grown)[RACE_ID_LEN] = realloc(s->ids, cap * sizeof(*s->ids));
		if (!grown)
			return false;
		s->ids = grown;
		s->cap = cap;
	}
	/* keep it sorted: insertion is cheap at these sizes */
	size_t at = s->n;
	while (at > 0 && strcmp(s->ids[at - 1], id) > 0)
		at--;
	memmove(&s->ids[at + 1], &s->ids[at], (s->n - at) * sizeof(*s->ids));
	snprintf(s->ids[at], RACE_ID_LEN, "%s", id);
	s->n++;
	return true;
}

bool race_set_has(const struct race_set *s, const char *id)
{
	char key[RACE_ID_LEN];
	snprintf(key, sizeof(key), "%s", id);
	return s->n && bsearch(key, s->ids, s->n, sizeof(*s->ids), id_cmp) != NULL;
}

void race_set_free(struct race_set *s)
{
	if (!s)
		return;
	free(s->ids);
	s->ids = NULL;
	s->n = s->cap = 0;
}

/* A PostgreSQL array literal {"a","b"} of our own generated names or ids
 * (no quotes or backslashes in them), passed as a parameter. Caller frees. */
static char *array_literal(const char *const *items, size_t n)
{
	size_t len = 3;
	for (size_t i = 0; i < n; i++)
		len += strlen(items[i]) + 3;
	char *s = malloc(len);
	if (!s)
		return NULL;
	char *p = s;
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s\"%s\"", i ? "," : "", items[i]);
	*p++ = '}';
	*p = '\0';
	return s;
}

static char *set_literal(const struct race_set *s)
{
	const char **items = malloc((s->n + 1) * sizeof(*items));
	if (!items)
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		items[i] = s->ids[i];
	char *lit = array_literal(items, s->n);
	free(items);
	return lit;
}

/* Run a prepared statement; NULL (logged) unless it returned rows or a command result. */
static PGresult *run(PGconn *conn, const char *stmt, int n, const char *const *params)
{
	PGresult *res = PQexecPrepared(conn, stmt, n, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	log_error("%s: %s", stmt, PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

/* A one-value query as a long; -1 on an error (logged). */
static long run_long(PGconn *conn, const char *stmt, int n, const char *const *params)
{
	PGresult *res = run(conn, stmt, n, params);
	long v = -1;
	if (res && PQntuples(res) == 1)
		v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

PGconn *check_connect(const char *url)
{
	char err[512];
	const struct db_stmt *const stmts[] = {check_stmts, NULL};
	PGconn *conn = db_connect(url, stmts, err, sizeof(err));
	if (!conn)
		log_error("database: %s", err);
	return conn;
}

long check_outbox_mark(PGconn *conn)
{
	return run_long(conn, "race_outbox_mark", 0, NULL);
}

bool check_setup(PGconn *conn, const char *group, int per_customer, char *const *skus, int n, int stock)
{
	char per[16], units[16], err[512];
	bool ok = false;

	snprintf(per, sizeof(per), "%d", per_customer);
	snprintf(units, sizeof(units), "%d", stock);
	if (!db_command(conn, "BEGIN", err, sizeof(err))) {
		log_error("setup: %s", err);
		return false;
	}
	if (group) {
		const char *params[] = {group, per};
		PGresult *res = run(conn, "race_group", 2, params);
		if (!res)
			goto out;
		PQclear(res);
	}
	for (int i = 0; i < n; i++) {
		const char *params[] = {skus[i], units, group};
		PGresult *res = run(conn, "race_product", 3, params);
		if (!res)
			goto out;
		PQclear(res);
	}
	ok = db_command(conn, "COMMIT", err, sizeof(err));
	if (!ok)
		log_error("setup: %s", err);
out:
	if (!ok && !db_command(conn, "ROLLBACK", NULL, 0))
		log_warn("setup: rollback failed");
	return ok;
}

bool check_round(PGconn *conn, char *const *skus, int n, int stock, const char *group, int cart_lines,
		 const struct race_result *results, int clients, long outbox_mark, struct check_round *out,
		 struct race_set *admitted)
{
	bool ok = false;
	char mark[24], lines[16];
	struct race_set answered = {0}, in_db = {0};
	PGresult *res = NULL;
	char *skus_lit = array_literal((const char *const *)skus, (size_t)n);

	memset(out, 0, sizeof(*out));
	if (!skus_lit)
		goto out;

	/* stock: initial = current + sold, never below zero */
	const char *p_skus[] = {skus_lit};
	res = run(conn, "race_stock", 1, p_skus);
	if (!res)
		goto out;
	if (PQntuples(res) != n) {
		log_error("expected %d products, the database has %d", n, PQntuples(res));
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		long current = strtol(PQgetvalue(res, i, 1), NULL, 10);
		long sold = strtol(PQgetvalue(res, i, 2), NULL, 10);
		out->stock += current < 0 || stock != current + sold;
		out->oversold += sold > stock ? sold - stock : 0;
		out->split += stock - current > sold ? stock - current - sold : 0; /* taken, in no order */
		out->admitted_units += sold;
	}
	PQclear(res);

	snprintf(lines, sizeof(lines), "%d", cart_lines);
	const char *p_partial[] = {skus_lit, lines};
	long partial = run_long(conn, "race_partial", 2, p_partial);
	if (partial < 0)
		goto out;
	out->split += partial;

	if (group) {
		const char *p_group[] = {group};
		out->over_limit = run_long(conn, "race_over_limit", 1, p_group);
		if (out->over_limit < 0)
			goto out;
	}

	/* the orders the database holds are exactly the 201 answers */
	for (int i = 0; i < clients; i++) {
		if (results[i].verdict == VERDICT_ADMITTED && !race_set_add(&answered, results[i].order_id))
			goto out;
	}
	res = run(conn, "race_orders", 1, p_skus);
	if (!res)
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		if (!race_set_add(&in_db, id) || !race_set_add(admitted, id))
			goto out;
		out->orders += !race_set_has(&answered, id);
	}
	PQclear(res);
	for (size_t i = 0; i < answered.n; i++)
		out->orders += !race_set_has(&in_db, answered.ids[i]);

	/* one outbox row per admitted order, none for anything else */
	snprintf(mark, sizeof(mark), "%ld", outbox_mark);
	const char *p_outbox[] = {skus_lit, mark};
	res = run(conn, "race_outbox", 2, p_outbox);
	if (!res)
		goto out;
	size_t matched = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0);
		bool dup = i > 0 && !strcmp(id, PQgetvalue(res, i - 1, 0));
		if (!race_set_has(&in_db, id) || dup)
			out->outbox++;
		else
			matched++;
	}
	out->outbox += (long)(in_db.n - matched);
	ok = true;
out:
	PQclear(res);
	free(skus_lit);
	race_set_free(&answered);
	race_set_free(&in_db);
	return ok;
}

bool check_round_state(const char *url, char *const *skus, int n, int stock, const char *group,
		       int per_customer, const struct race_cart *carts, const struct race_result *results,
		       int clients, int wait_seconds, struct check_round *out)
{
	bool ok = false;
	long *sold = calloc((size_t)n, sizeof(*sold)), *current = calloc((size_t)n, sizeof(*current));
	long units = 0;

	memset(out, 0, sizeof(*out));
	out->orders = out->outbox = -1;
	if (!sold || !current)
		goto out;
	/* what the 201 answers sold: the design keeps no orders to compare with */
	for (int i = 0; i < clients; i++) {
		if (results[i].verdict != VERDICT_ADMITTED)
			continue;
		for (int k = 0; k < carts[i].n; k++)
			sold[carts[i].sku[k]]++;
		units += carts[i].n;
	}
	for (time_t deadline = time(NULL) + wait_seconds;; usleep(100 * 1000)) {
		bool settled = true;
		if (!fire_read_stocks(url, skus, n, current))
			goto out;
		for (int k = 0; k < n; k++)
			settled = settled && current[k] == stock - sold[k];
		if (settled || time(NULL) >= deadline)
			break;
	}
	for (int k = 0; k < n; k++) {
		long taken = stock - current[k];
		out->stock += current[k] < 0 || taken != sold[k];
		out->oversold += sold[k] > stock ? sold[k] - stock : 0;
		out->split += taken > sold[k] ? taken - sold[k] : 0; /* taken for a cart that was refused */
		out->admitted_units += sold[k];
	}
	if (group) /* the round's one customer */
		out->over_limit = units > per_customer ? units - per_customer : 0;
	ok = true;
out:
	free(sold);
	free(current);
	return ok;
}

int check_partitions(const struct config *cfg)
{
	char errstr[512];
	int count = -1;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *topic = NULL;
	rd_kafka_conf_t *conf = kafka_conf_new(cfg);
	rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)) : NULL;

	if (!rk) {
		if (conf) {
			rd_kafka_conf_destroy(conf);
			log_error("topic: %s", errstr);
		}
		return -1;
	}
	topic = rd_kafka_topic_new(rk, cfg->orders_topic, NULL);
	rd_kafka_resp_err_t err =
	    topic ? rd_kafka_metadata(rk, 0, topic, &md, 10000) : RD_KAFKA_RESP_ERR__FAIL;
	if (!err && (md->topic_cnt != 1 || md->topics[0].err))
		err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
	if (err)
		log_error("topic %s: %s", cfg->orders_topic, rd_kafka_err2str(err));
	else
		count = md->topics[0].partition_cnt;
	if (md)
		rd_kafka_metadata_destroy(md);
	if (topic)
		rd_kafka_topic_destroy(topic);
	rd_kafka_destroy(rk);
	return count;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Which of prefixes[0..n) an event's items belong to; -1 for none. */
static int event_owner(json_t *event, const char *const *prefixes, int n)
{
	size_t i;
	json_t *item;
	json_array_foreach(json_object_get(event, "items"), i, item)
	{
		const char *sku = json_string_value(json_object_get(item, "sku"));
		for (int k = 0; sku && k < n; k++) {
			if (!strncmp(sku, prefixes[k], strlen(prefixes[k])))
				return k;
		}
	}
	return -1;
}

static bool topic_complete(const struct race_set *seen, const struct race_set *const *admitted, int n)
{
	for (int k = 0; k < n; k++) {
		for (size_t i = 0; i < admitted[k]->n; i++) {
			if (!race_set_has(&seen[k], admitted[k]->ids[i]))
				return false;
		}
	}
	return true;
}

bool check_topic(const struct config *cfg, const char *const *prefixes,
		 const struct race_set *const *admitted, int n, long *mismatches)
{
	bool ok = false;
	char errstr[512], group[96];
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_partition_list_t *topics = NULL;
	struct race_set *seen = calloc((size_t)n, sizeof(*seen));
	rd_kafka_conf_t *conf = kafka_conf_new(cfg);

	if (!seen || !conf)
		goto out;
	/* a fresh group reads the topic from its beginning */
	snprintf(group, sizeof(group), "checkout-race-%d-%ld", (int)getpid(), (long)time(NULL));
	if (!kafka_conf_set(conf, "group.id", group) ||
	    !kafka_conf_set(conf, "auto.offset.reset", "earliest") ||
	    !kafka_conf_set(conf, "enable.auto.commit", "false"))
		goto out;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		log_error("topic: %s", errstr);
		goto out;
	}
	conf = NULL; /* rk owns it */
	rd_kafka_poll_set_consumer(rk);
	topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, cfg->orders_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
	if (err) {
		log_error("topic: subscribe %s: %s", cfg->orders_topic, rd_kafka_err2str(err));
		goto out;
	}

	double deadline = now_s() + cfg->race_catch_up_seconds, complete_at = 0;
	for (;;) {
		double t = now_s();
		if (t > deadline || (complete_at > 0 && t > complete_at + 1.0))
			break; /* complete: one more second lets an extra event show */
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (m && !m->err) {
			json_error_t jerr;
			json_t *event = json_loadb(m->payload, m->len, 0, &jerr);
			const char *id = json_string_value(json_object_get(event, "order_id"));
			int k = event ? event_owner(event, prefixes, n) : -1;
			if (k >= 0 && id && strlen(id) == RACE_ID_LEN - 1 && !race_set_add(&seen[k], id)) {
				json_decref(event);
				rd_kafka_message_destroy(m);
				goto out;
			}
			json_decref(event);
		}
		if (m)
			rd_kafka_message_destroy(m);
		if (complete_at == 0 && topic_complete(seen, admitted, n))
			complete_at = now_s();
	}
	for (int k = 0; k < n; k++) {
		mismatches[k] = 0;
		for (size_t i = 0; i < admitted[k]->n; i++)
			mismatches[k] += !race_set_has(&seen[k], admitted[k]->ids[i]);
		for (size_t i = 0; i < seen[k].n; i++)
			mismatches[k] += !race_set_has(admitted[k], seen[k].ids[i]);
	}
	ok = true;
out:
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (topics)
		rd_kafka_topic_partition_list_destroy(topics);
	for (int k = 0; seen && k < n; k++)
		race_set_free(&seen[k]);
	free(seen);
	return ok;
}

/* Orders missing from each worker's inbox plus unit differences, or -1. */
static long worker_mismatch(PGconn *conn, const char *prefix, const struct race_set *admitted, long units)
{
	static const char *const inboxes[] = {"race_inbox_email", "race_inbox_inventory",
					      "race_inbox_analytics"};
	static const char *const unit_sums[] = {"race_units_inventory", "race_units_analytics"};
	long total = 0;
	char *ids = set_literal(admitted);

	if (!ids)
		return -1;
	for (size_t i = 0; i < sizeof(inboxes) / sizeof(inboxes[0]); i++) {
		const char *params[] = {ids};
		long found = run_long(conn, inboxes[i], 1, params);
		if (found < 0) {
			total = -1;
			goto out;
		}
		total += (long)admitted->n - found;
	}
	for (size_t i = 0; i < sizeof(unit_sums) / sizeof(unit_sums[0]); i++) {
		const char *params[] = {prefix};
		long got = run_long(conn, unit_sums[i], 1, params);
		if (got < 0) {
			total = -1;
			goto out;
		}
		total += labs(units - got);
	}
out:
	free(ids);
	return total;
}

bool check_workers(const struct config *cfg, const char *const *prefixes,
		   const struct race_set *const *admitted, const long *admitted_units, int n,
		   long *mismatches)
{
	char err[512];
	bool ok = false;
	const struct db_stmt *const stmts[] = {worker_stmts, NULL};
	PGconn *conn = db_connect(cfg->database_url, stmts, err, sizeof(err));

	if (!conn) {
		log_error("workers: %s", err);
		goto out;
	}
	double deadline = now_s() + cfg->race_catch_up_seconds;
	for (;;) {
		long total = 0;
		for (int k = 0; k < n; k++) {
			mismatches[k] = worker_mismatch(conn, prefixes[k], admitted[k], admitted_units[k]);
			if (mismatches[k] < 0)
				goto out;
			total += mismatches[k];
		}
		if (total == 0 || now_s() > deadline)
			break;
		usleep(200 * 1000); /* the workers are catching up: poll again */
	}
	ok = true;
out:
	PQfinish(conn);
	return ok;
}
