/* check.c - the invariants of a chaos run, and its table of rounds.
 *
 * What the driver was told (its answers file), what is on the topic (read
 * from the beginning of every partition up to its high watermark) and what
 * is in the mail spool are copied into temporary tables next to the data, so
 * that every invariant is one SQL query over the real tables: the query
 * returns one line per violation, and the checker prints how many and the
 * first few. The database is the run's own (scripts/chaos creates it), so
 * every order in it was placed by this run's driver.
 */
#define _GNU_SOURCE
#include "chaos.h"

#include <dirent.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkout/config.h"
#include "checkout/db.h"
#include "checkout/kafka.h"
#include "checkout/log.h"

#define TOPIC_READ_SECONDS 60
#define EXAMPLES 3

/* Which events mode (EVENTS) an invariant applies to. */
enum invariant_mode { IN_BOTH, IN_OUTBOX, IN_WAL };

/* One invariant: the query yields one text line per violation. */
struct invariant {
	const char *name;
	const char *sql;
	enum invariant_mode mode;
};

#define ACCEPTED_ANSWER                                                                                      \
	"(a.status = 201 AND a.order_id IS NOT NULL OR "                                                     \
	"a.status = 409 AND a.problem IN ('out-of-stock', 'purchase-limit-exceeded'))"

/* clang-format off */
static const struct invariant invariants[] = {
    {"every order got a final answer within the contract",
     "SELECT a.key || ': ' || CASE WHEN a.status = 0 THEN 'no final answer, gave up after ' || a.attempts || ' attempts' "
     "ELSE a.status || ' ' || a.problem END FROM chaos_answers a WHERE NOT coalesce(" ACCEPTED_ANSWER ", false)"},
    {"every 201 is an order in the database",
     "SELECT a.key || ' -> ' || a.order_id FROM chaos_answers a WHERE a.status = 201 AND a.order_id IS NOT NULL "
     "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = a.order_id)"},
    {"every order in the database had a 201",
     "SELECT o.id || ' (key ' || split_part(o.email, '@', 1) || ')' FROM orders o WHERE NOT EXISTS "
     "(SELECT 1 FROM chaos_answers a WHERE a.status = 201 AND a.order_id = o.id)"},
    {"one key, at most one order",
     "SELECT split_part(email, '@', 1) || ': ' || count(*) || ' orders (' || string_agg(id::text, ', ' ORDER BY id) || ')' "
     "FROM orders GROUP BY email HAVING count(*) > 1 "
     "UNION ALL SELECT a.key || ' was answered with order ' || o.id || ' of ' || o.email "
     "FROM chaos_answers a JOIN orders o ON o.id = a.order_id WHERE o.email <> a.key || '@chaos.example' "
     "UNION ALL SELECT k.key || ': idempotency_keys names order ' || coalesce(k.response_body::jsonb->>'order_id', '?') "
     "|| ', the driver got ' || a.order_id FROM idempotency_keys k JOIN chaos_answers a ON a.key = k.key "
     "WHERE k.status = 201 AND a.status = 201 AND k.response_body::jsonb->>'order_id' IS DISTINCT FROM a.order_id::text"},
    /* order events only: product events share the outbox (migrations/010_products_as_events.sql) */
    {"one outbox row per order",
     "SELECT o.id || ': ' || count(x.id) || ' outbox rows' FROM orders o LEFT JOIN outbox x "
     "ON x.aggregate_id = o.id::text AND x.event_type = 'order.admitted' "
     "GROUP BY o.id HAVING count(x.id) <> 1 "
     "UNION ALL SELECT 'outbox row ' || x.id || ' for ' || x.aggregate_id || ', which is not an order' FROM outbox x "
     "WHERE x.event_type = 'order.admitted' AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id::text = x.aggregate_id)",
     IN_OUTBOX},
    {"no outbox rows (the events are in the WAL)",
     "SELECT 'outbox row ' || x.id || ' for ' || x.aggregate_id FROM outbox x", IN_WAL},
    {"every order is on the topic",
     "SELECT o.id::text FROM orders o WHERE NOT EXISTS (SELECT 1 FROM chaos_topic t WHERE t.order_id = o.id::text)"},
    {"one event id per order on the topic, nothing else",
     "SELECT order_id || ': ' || count(DISTINCT ce_id) || ' event ids' FROM chaos_topic GROUP BY order_id "
     "HAVING count(DISTINCT ce_id) > 1 "
     "UNION ALL SELECT 'p' || part || '@' || off || ': order ' || order_id || ' is not in the database' "
     "FROM chaos_topic t WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id::text = t.order_id) "
     "UNION ALL SELECT 'p' || part || '@' || off || ': ce_id ' || t.ce_id || ' is not the order id ' || t.order_id "
     "FROM chaos_topic t WHERE t.ce_id <> t.order_id "
     "UNION ALL SELECT 'p' || part || '@' || off || ': message key ' || msg_key || ' but order ' || order_id "
     "FROM chaos_topic WHERE msg_key <> order_id"},
#define INBOX(w)                                                                                                    \
    {w ": one inbox row per order, no dead letters",                                                               \
     "SELECT o.id || ' never applied' FROM orders o WHERE NOT EXISTS (SELECT 1 FROM " w ".inbox i WHERE i.order_id = o.id) " \
     "UNION ALL SELECT order_id || ' applied ' || count(*) || ' times' FROM " w ".inbox GROUP BY order_id HAVING count(*) > 1 " \
     "UNION ALL SELECT i.order_id || ' applied, not an order' FROM " w ".inbox i "                                  \
     "WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id) "                                          \
     "UNION ALL SELECT 'dead letter p' || partition || '@' || \"offset\" || ': ' || reason FROM " w ".dead_letters"}
    INBOX("email"),
    INBOX("inventory"),
    INBOX("analytics"),
#undef INBOX
    {"inventory.stock_view = order lines, per SKU",
     "WITH sold AS (SELECT sku, sum(quantity) AS units, count(DISTINCT order_id) AS orders FROM order_lines GROUP BY sku) "
     "SELECT coalesce(s.sku, v.sku) || ': view ' || coalesce(v.units_sold, 0) || ' units in ' || coalesce(v.orders_seen, 0) "
     "|| ' orders, database ' || coalesce(s.units, 0) || ' in ' || coalesce(s.orders, 0) "
     "FROM sold s FULL JOIN inventory.stock_view v ON v.sku = s.sku "
     "WHERE coalesce(v.units_sold, 0) <> coalesce(s.units, 0) OR coalesce(v.orders_seen, 0) <> coalesce(s.orders, 0)"},
    {"analytics.totals and analytics.skus = the database",
     "SELECT 'totals: ' || t.orders || ' orders, ' || t.units || ' units, ' || t.revenue || ' cents; database: ' "
     "|| d.orders || ', ' || d.units || ', ' || d.revenue "
     "FROM (SELECT coalesce(sum(orders), 0) AS orders, coalesce(sum(units), 0) AS units, "
     "coalesce(sum(revenue_cents), 0) AS revenue FROM analytics.totals) t, "
     "(SELECT (SELECT count(*) FROM orders) AS orders, (SELECT coalesce(sum(quantity), 0) FROM order_lines) AS units, "
     "(SELECT coalesce(sum(total_cents), 0) FROM orders) AS revenue) d "
     "WHERE (t.orders, t.units, t.revenue) <> (d.orders, d.units, d.revenue) "
     "UNION ALL SELECT coalesce(s.sku, v.sku) || ': view ' || coalesce(v.units, 0) || ' units, ' || coalesce(v.revenue_cents, 0) "
     "|| ' cents; database ' || coalesce(s.units, 0) || ', ' || coalesce(s.revenue, 0) "
     "FROM (SELECT sku, sum(quantity) AS units, sum(quantity * unit_price_cents) AS revenue FROM order_lines GROUP BY sku) s "
     "FULL JOIN analytics.skus v ON v.sku = s.sku "
     "WHERE coalesce(v.units, 0) <> coalesce(s.units, 0) OR coalesce(v.revenue_cents, 0) <> coalesce(s.revenue, 0)"},
    {"one email per order (email.sent and the spool)",
     "SELECT o.id || ': ' || count(s.event_id) || ' emails' FROM orders o LEFT JOIN email.sent s ON s.order_id = o.id "
     "GROUP BY o.id HAVING count(s.event_id) <> 1 "
     "UNION ALL SELECT o.id || ': mailed to ' || s.recipient || ', ordered by ' || o.email "
     "FROM email.sent s JOIN orders o ON o.id = s.order_id WHERE s.recipient <> o.email "
     "UNION ALL SELECT s.event_id || '.eml missing from the spool' FROM email.sent s "
     "WHERE NOT EXISTS (SELECT 1 FROM chaos_spool f WHERE f.name = s.event_id || '.eml') "
     "UNION ALL SELECT f.name || ' in the spool, not in email.sent' FROM chaos_spool f "
     "WHERE NOT EXISTS (SELECT 1 FROM email.sent s WHERE s.event_id || '.eml' = f.name)"},
    {"stock conserved per SKU: initial - sold = current >= 0",
     "SELECT c.sku || ': initial ' || c.initial || ' - sold ' || coalesce(l.units, 0) || ', current ' || p.stock "
     "FROM chaos_catalogue c JOIN products p ON p.sku = c.sku "
     "LEFT JOIN (SELECT sku, sum(quantity) AS units FROM order_lines GROUP BY sku) l ON l.sku = c.sku "
     "WHERE p.stock <> c.initial - coalesce(l.units, 0) OR p.stock < 0 "
     "UNION ALL SELECT c.sku || ' is missing' FROM chaos_catalogue c WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.sku = c.sku)"},
    {"purchase limits held",
     "SELECT l.customer_id || ': ' || sum(l.quantity) || ' units of ' || l.limit_group || ', limit ' || g.per_customer "
     "FROM order_lines l JOIN limit_groups g ON g.name = l.limit_group "
     "GROUP BY l.customer_id, l.limit_group, g.per_customer HAVING sum(l.quantity) > g.per_customer"},
    {NULL, NULL},
};
/* clang-format on */

static const char *const temp_tables[] = {
    "CREATE TEMP TABLE chaos_answers (key text PRIMARY KEY, first float8, final float8, attempts int, "
    "status int, problem text, order_id uuid, replayed bool)",
    "CREATE TEMP TABLE chaos_topic (part int, off bigint, msg_key text, ce_id text, order_id text)",
    "CREATE TEMP TABLE chaos_spool (name text)",
    "CREATE TEMP TABLE chaos_catalogue (sku text, initial bigint)",
    NULL,
};

/* A growing text buffer for COPY data. */
struct text {
	char *s;
	size_t len, cap;
};

static bool text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool text_add(struct text *t, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return false;
		if (t->s && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return true;
		}
		size_t cap = (t->cap ? t->cap * 2 : 65536) + (size_t)n;
		char *grown = realloc(t->s, cap);
		if (!grown)
			return false;
		t->s = grown;
		t->cap = cap;
	}
}

/* A value for COPY's text format: our values never hold tabs, newlines or backslashes, but never trust it. */
static const char *copy_value(const char *v, char *buf, size_t buflen)
{
	if (!v || !*v || !strcmp(v, "-"))
		return "\\N";
	snprintf(buf, buflen, "%s", v);
	for (char *p = buf; *p; p++) {
		if (*p == '\t' || *p == '\n' || *p == '\r' || *p == '\\')
			*p = '?';
	}
	return buf;
}

static bool copy_in(PGconn *conn, const char *table, const struct text *data)
{
	char sql[128];
	bool ok = false;
	snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
	PGresult *res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		log_error("%s: %s", sql, PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	PQclear(res);
	if (data->len && PQputCopyData(conn, data->s, (int)data->len) != 1)
		log_error("%s: %s", sql, PQerrorMessage(conn));
	else if (PQputCopyEnd(conn, NULL) != 1)
		log_error("%s: %s", sql, PQerrorMessage(conn));
	else
		ok = true;
	while ((res = PQgetResult(conn))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			log_error("%s: %s", sql, PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* --- the driver's answers --- */

struct answers {
	struct chaos_answer *a;
	size_t n, cap;
};

static bool answers_read(const char *path, struct answers *out)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	if (!f) {
		log_error("cannot read %s", path);
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		struct chaos_answer a = {0};
		int replayed = 0;
		if (sscanf(line, "%63s %lf %lf %d %ld %63s %36s %d", a.key, &a.first, &a.final, &a.attempts, &a.status,
			   a.problem, a.order_id, &replayed) != 8) {
			log_warn("%s: skipping a malformed line: %.80s", path, line);
			continue;
		}
		a.replayed = replayed;
		if (out->n == out->cap) {
			size_t cap = out->cap ? out->cap * 2 : 4096;
			struct chaos_answer *grown = realloc(out->a, cap * sizeof(*grown));
			if (!grown) {
				fclose(f);
				return false;
			}
			out->a = grown;
			out->cap = cap;
		}
		out->a[out->n++] = a;
	}
	fclose(f);
	return true;
}

static bool answers_copy(PGconn *conn, const struct answers *ans)
{
	struct text t = {0};
	bool ok = true;
	char b1[64], b2[64], b3[64];
	for (size_t i = 0; ok && i < ans->n; i++) {
		const struct chaos_answer *a = &ans->a[i];
		ok = text_add(&t, "%s\t%.6f\t%.6f\t%d\t%ld\t%s\t%s\t%s\n", copy_value(a->key, b1, sizeof(b1)), a->first,
			      a->final, a->attempts, a->status, copy_value(a->problem, b2, sizeof(b2)),
			      copy_value(a->order_id, b3, sizeof(b3)), a->replayed ? "t" : "f");
	}
	ok = ok && copy_in(conn, "chaos_answers", &t);
	free(t.s);
	return ok;
}

/* --- the topic --- */

/* Copy every message of the topic, from the start of each partition to its
 * high watermark, into chaos_topic. Returns the number of messages, or -1. */
static long topic_copy(PGconn *conn, const struct chaos_check_opts *opts)
{
	struct config cfg = {.program = "chaos-check", .kafka_brokers = (char *)opts->kafka_brokers};
	char errstr[512], group[96];
	long count = -1;
	struct text t = {0};
	rd_kafka_t *rk = NULL;
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	int64_t *high = NULL, *next = NULL;
	rd_kafka_conf_t *conf = kafka_conf_new(&cfg);

	if (!conf)
		goto out;
	snprintf(group, sizeof(group), "checkout-chaos-check-%d", (int)getpid());
	if (!kafka_conf_set(conf, "group.id", group) || !kafka_conf_set(conf, "enable.auto.commit", "false") ||
	    !kafka_conf_set(conf, "auto.offset.reset", "earliest"))
		goto out;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		log_error("topic: %s", errstr);
		goto out;
	}
	conf = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, opts->topic, NULL);
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
	rd_kafka_topic_destroy(rkt);
	if (err || md->topic_cnt != 1 || md->topics[0].err) {
		log_error("topic %s: no metadata: %s", opts->topic,
			  rd_kafka_err2str(err ? err : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN));
		goto out;
	}
	int n = md->topics[0].partition_cnt;
	high = calloc((size_t)n, sizeof(*high));
	next = calloc((size_t)n, sizeof(*next));
	parts = rd_kafka_topic_partition_list_new(n);
	if (!high || !next || !parts)
		goto out;
	for (int p = 0; p < n; p++) {
		int64_t low;
		err = rd_kafka_query_watermark_offsets(rk, opts->topic, p, &low, &high[p], 10000);
		if (err) {
			log_error("topic %s [%d]: watermarks: %s", opts->topic, p, rd_kafka_err2str(err));
			goto out;
		}
		next[p] = low;
		rd_kafka_topic_partition_list_add(parts, opts->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	}
	err = rd_kafka_assign(rk, parts);
	if (err) {
		log_error("topic %s: assign: %s", opts->topic, rd_kafka_err2str(err));
		goto out;
	}
	long messages = 0;
	time_t deadline = time(NULL) + TOPIC_READ_SECONDS;
	for (;;) {
		bool all = true;
		for (int p = 0; p < n; p++)
			all = all && next[p] >= high[p];
		if (all)
			break;
		if (time(NULL) > deadline) {
			log_error("topic %s: not read to its end within %d s", opts->topic, TOPIC_READ_SECONDS);
			goto out;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		if (!m)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				log_warn("topic: %s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		char key[CHAOS_ID_LEN + 8] = "", ce_id[64] = "", b1[64], b2[64], b3[64];
		const void *v;
		size_t vlen;
		rd_kafka_headers_t *hdrs;
		snprintf(key, sizeof(key), "%.*s", m->key ? (int)(m->key_len < 40 ? m->key_len : 40) : 0,
			 m->key ? (const char *)m->key : "");
		if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    rd_kafka_header_get_last(hdrs, "ce_id", &v, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR && v)
			snprintf(ce_id, sizeof(ce_id), "%.*s", (int)(vlen < 60 ? vlen : 60), (const char *)v);
		json_error_t jerr;
		json_t *event = json_loadb(m->payload, m->len, 0, &jerr);
		const char *order_id = json_string_value(json_object_get(event, "order_id"));
		bool ok = text_add(&t, "%d\t%lld\t%s\t%s\t%s\n", (int)m->partition, (long long)m->offset,
				   copy_value(key, b1, sizeof(b1)), copy_value(ce_id, b2, sizeof(b2)),
				   copy_value(order_id ? order_id : "?", b3, sizeof(b3)));
		json_decref(event);
		if (m->partition >= 0 && m->partition < n)
			next[m->partition] = m->offset + 1;
		rd_kafka_message_destroy(m);
		if (!ok)
			goto out;
		messages++;
	}
	if (copy_in(conn, "chaos_topic", &t))
		count = messages;
out:
	free(t.s);
	free(high);
	free(next);
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	if (md)
		rd_kafka_metadata_destroy(md);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	if (conf)
		rd_kafka_conf_destroy(conf);
	return count;
}

/* --- the spool and the catalogue --- */

static bool spool_copy(PGconn *conn, const char *dir)
{
	struct text t = {0};
	bool ok = true;
	char b[300];
	DIR *d = opendir(dir);
	if (!d) {
		log_error("cannot read the mail spool %s", dir);
		return false;
	}
	struct dirent *e;
	while (ok && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".eml"))
			continue;
		ok = text_add(&t, "%s\n", copy_value(e->d_name, b, sizeof(b)));
	}
	closedir(d);
	ok = ok && copy_in(conn, "chaos_spool", &t);
	free(t.s);
	return ok;
}

static bool catalogue_copy(PGconn *conn)
{
	struct text t = {0};
	bool ok = true;
	for (const struct chaos_product *p = chaos_catalogue; ok && p->sku; p++)
		ok = text_add(&t, "%s\t%ld\n", p->sku, p->stock);
	ok = ok && copy_in(conn, "chaos_catalogue", &t);
	free(t.s);
	return ok;
}

/* --- the table of rounds --- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct round {
	int number;
	char fault[32], target[64];
	double start, fault_at, end;
};

static void rounds_print(const char *path, const struct answers *ans, double delay_threshold)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	char line[512];
	double *finals = malloc((ans->n + 1) * sizeof(*finals));
	size_t n_finals = 0;

	if (!f || !finals) {
		if (path)
			log_warn("no table of rounds: cannot read %s", path);
		goto out;
	}
	/* the moments the driver got a final answer: gaps between them are unavailability */
	for (size_t i = 0; i < ans->n; i++) {
		if (ans->a[i].status != 0)
			finals[n_finals++] = ans->a[i].final;
	}
	qsort(finals, n_finals, sizeof(*finals), cmp_double);

	printf("%-5s %-15s %-11s %7s %6s %6s %7s %12s %9s %9s\n", "round", "fault", "target", "orders", "201",
	       "409", "retried", "unavailable", "delayed", "max wait");
	while (fgets(line, sizeof(line), f)) {
		struct round r;
		if (sscanf(line, "%d %31s %63s %lf %lf %lf", &r.number, r.fault, r.target, &r.start, &r.fault_at,
			   &r.end) != 6)
			continue;
		long orders = 0, ok201 = 0, refused = 0, retried = 0, delayed = 0;
		double max_wait = 0, gap = 0;
		for (size_t i = 0; i < ans->n; i++) {
			const struct chaos_answer *a = &ans->a[i];
			if (a->first < r.start || a->first >= r.end)
				continue;
			double wait = a->final - a->first;
			orders++;
			ok201 += a->status == 201;
			refused += a->status == 409;
			retried += a->attempts > 1;
			delayed += wait > delay_threshold;
			max_wait = wait > max_wait ? wait : max_wait;
		}
		/* the longest stretch without a final answer that began in this round */
		for (size_t i = 1; i < n_finals; i++) {
			if (finals[i - 1] >= r.start && finals[i - 1] < r.end && finals[i] - finals[i - 1] > gap)
				gap = finals[i] - finals[i - 1];
		}
		printf("%-5d %-15s %-11s %7ld %6ld %6ld %7ld %11.2fs %9ld %8.2fs\n", r.number, r.fault, r.target,
		       orders, ok201, refused, retried, gap, delayed, max_wait);
	}
	printf("(unavailable: the longest time without any final answer; delayed: orders whose final answer came "
	       "more than %.1f s after their first try; max wait: the longest of those)\n\n",
	       delay_threshold);
out:
	if (f)
		fclose(f);
	free(finals);
}

/* --- the invariants --- */

/* Run one invariant; prints its line. Returns the number of violations, or -1. */
static long invariant_run(PGconn *conn, const struct invariant *inv)
{
	char *sql = NULL;
	long n = -1;
	if (asprintf(&sql,
		     "SELECT count(*), coalesce(string_agg(x, '; ') FILTER (WHERE n <= %d), '') "
		     "FROM (SELECT x, row_number() OVER () AS n FROM (%s) q(x)) s",
		     EXAMPLES, inv->sql) < 0)
		return -1;
	PGresult *res = PQexec(conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_error("%s: %s", inv->name, PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (n == 0)
		printf("  ok        %s\n", inv->name);
	else
		printf("  VIOLATED  %s: %ld (%s%s)\n", inv->name, n, PQgetvalue(res, 0, 1), n > EXAMPLES ? "; ..." : "");
	PQclear(res);
	return n;
}

/* A one-row summary query printed as is. */
static void summary_print(PGconn *conn, long messages)
{
	PGresult *res = PQexec(conn,
			       "SELECT (SELECT count(*) FROM chaos_answers), "
			       "(SELECT count(*) FROM chaos_answers WHERE status = 201), "
			       "(SELECT count(*) FROM chaos_answers WHERE status = 201 AND replayed), "
			       "(SELECT count(*) FROM chaos_answers WHERE status = 409), "
			       "(SELECT count(*) FROM chaos_answers WHERE attempts > 1), "
			       "(SELECT count(*) FROM orders), "
			       "(SELECT count(*) - count(DISTINCT (order_id, ce_id)) FROM chaos_topic)");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		printf("%s logical orders: %s answered 201 (%s of them by an Idempotent-Replayed replay), %s 409; "
		       "%s needed more than one attempt. %s orders in the database; %ld messages on the topic, %s of "
		       "them redeliveries.\n\n",
		       PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		       PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), messages, PQgetvalue(res, 0, 6));
	} else {
		log_warn("summary: %s", PQresultErrorMessage(res));
	}
	PQclear(res);
}

int chaos_check(const struct chaos_check_opts *opts)
{
	int status = 2;
	char err[512];
	struct answers ans = {0};
	PGconn *conn = NULL;

	if (!answers_read(opts->answers_path, &ans))
		goto out;
	conn = db_connect(opts->database_url, NULL, err, sizeof(err));
	if (!conn) {
		log_error("database: %s", err);
		goto out;
	}
	for (const char *const *sql = temp_tables; *sql; sql++) {
		if (!db_command(conn, *sql, err, sizeof(err))) {
			log_error("%s", err);
			goto out;
		}
	}
	long messages = topic_copy(conn, opts);
	if (messages < 0 || !answers_copy(conn, &ans) || !spool_copy(conn, opts->spool_dir) ||
	    !catalogue_copy(conn) || !db_command(conn, "ANALYZE chaos_answers, chaos_topic, chaos_spool", err, sizeof(err)))
		goto out;

	rounds_print(opts->rounds_path, &ans, opts->delay_threshold);
	summary_print(conn, messages);
	printf("invariants:\n");
	long violated = 0;
	const char *events = getenv("EVENTS"); /* the server's and the relays' mode (scripts/chaos) */
	enum invariant_mode mode = events && !strcmp(events, "outbox") ? IN_OUTBOX : IN_WAL;
	for (const struct invariant *inv = invariants; inv->name; inv++) {
		if (inv->mode != IN_BOTH && inv->mode != mode)
			continue;
		long n = invariant_run(conn, inv);
		if (n < 0)
			goto out;
		violated += n > 0;
	}
	status = violated ? 1 : 0;
out:
	fflush(stdout);
	PQfinish(conn);
	free(ans.a);
	return status;
}
