/* dashboard.c - see dashboard.h. */
#define _GNU_SOURCE /* asprintf */
#include "dashboard.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/db.h"
#include "checkout/events.h"
#include "checkout/httpd.h"
#include "checkout/kafka.h"
#include "checkout/log.h"

#define COLLECT_EVERY_MS 500
#define KEEPALIVE_MS 15000
#define KAFKA_TIMEOUT_MS 500
#define MAX_GROUPS 8
#define MAX_PARTITIONS 256
#define METRICS_MAX_BYTES (1 << 20)
#define MINUTES 60 /* checkout outcomes kept per minute, like the analytics chart */

/*
 * Everything the page shows from the database, in one round trip, built as
 * JSON by PostgreSQL. The last event a worker applied is its inbox row with
 * the greatest event_id: event ids are UUIDv7 (migration 006), so that is the
 * newest event, found through the primary key without scanning the inbox.
 */
static const struct db_stmt dashboard_stmts[] = {
    {"dashboard_snapshot",
     "SELECT json_build_object("
     " 'totals', (SELECT json_build_object('orders', orders, 'units', units, 'revenue_cents', revenue_cents)"
     "   FROM analytics.totals),"
     " 'minutes', (SELECT coalesce(json_agg(json_build_object('minute', extract(epoch FROM minute)::bigint,"
     "   'orders', orders, 'units', units, 'revenue_cents', revenue_cents) ORDER BY minute), '[]')"
     "   FROM analytics.minutes WHERE minute > now() - interval '60 minutes'),"
     " 'top_skus', (SELECT coalesce(json_agg(t), '[]') FROM (SELECT sku, units, revenue_cents"
     "   FROM analytics.skus ORDER BY units DESC, sku LIMIT 10) t),"
     " 'low_stock', (SELECT coalesce(json_agg(t), '[]') FROM (SELECT sku, stock, units_sold"
     "   FROM inventory.stock_view WHERE stock <= $1::integer ORDER BY stock, sku LIMIT 50) t),"
     /* the relay's lag: in the WAL mode ($2) its slot ($3): the WAL between the server's end
      * and what the relay confirmed, whether a relay streams it, and the walsender's view of
      * it (pg_stat_replication: the last flush's lag, when the relay last answered); in the
      * outbox mode the rows not yet published */
     " 'relay', CASE WHEN $2 = 'wal' THEN (SELECT json_build_object('mode', 'wal', 'slot', $3::text,"
     "   'exists', s.slot_name IS NOT NULL, 'active', coalesce(s.active, false),"
     "   'lag_bytes', coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,"
     "   'flush_lag_seconds', coalesce(extract(epoch FROM r.flush_lag), 0),"
     "   'reply_seconds', extract(epoch FROM now() - r.reply_time))"
     "   FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $3::text"
     "   LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid)"
     "  ELSE (SELECT json_build_object('mode', 'outbox', 'pending', count(*),"
     "   'oldest_seconds', coalesce(extract(epoch FROM now() - min(created_at)), 0))"
     "   FROM public.outbox WHERE published_at IS NULL) END,"
     " 'workers', json_build_array("
     "   (SELECT json_build_object('worker', 'email', 'dead_letters', (SELECT count(*) FROM "
     "email.dead_letters),"
     "     'last_event', i.event_id, 'ago_seconds', extract(epoch FROM now() - i.applied_at))"
     "     FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT event_id, applied_at FROM email.inbox"
     "     ORDER BY event_id DESC LIMIT 1) i ON true),"
     "   (SELECT json_build_object('worker', 'inventory', 'dead_letters',"
     "     (SELECT count(*) FROM inventory.dead_letters),"
     "     'last_event', i.event_id, 'ago_seconds', extract(epoch FROM now() - i.applied_at))"
     "     FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT event_id, applied_at FROM inventory.inbox"
     "     ORDER BY event_id DESC LIMIT 1) i ON true),"
     "   (SELECT json_build_object('worker', 'analytics', 'dead_letters',"
     "     (SELECT count(*) FROM analytics.dead_letters),"
     "     'last_event', i.event_id, 'ago_seconds', extract(epoch FROM now() - i.applied_at))"
     "     FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT event_id, applied_at FROM analytics.inbox"
     "     ORDER BY event_id DESC LIMIT 1) i ON true)))"},
    {NULL, NULL},
};

/* The server's counters the page shows, as they appear in its /metrics. */
enum series { S_ADMITTED, S_OUT_OF_STOCK, S_LIMIT, S_UNAVAILABLE, S_RETRIES, N_SERIES };
static const char *const series_keys[N_SERIES] = {
    "checkout_outcomes_total{outcome=\"admitted\"}",
    "checkout_outcomes_total{outcome=\"out_of_stock\"}",
    "checkout_outcomes_total{outcome=\"purchase_limit_exceeded\"}",
    "checkout_http_requests_total{route=\"/v1/checkout\",status=\"503\"}",
    "checkout_serialization_retries_total",
};
static const char *const series_names[N_SERIES] = {"admitted", "out_of_stock", "purchase_limit",
						   "unavailable", "serialization_retries"};

/* The collector thread's own resources; only it touches them. */
struct collector {
	PGconn *conn;
	char db_error[256];
	char slot[EVENTS_SLOT_MAX]; /* EVENTS=wal: the relay's slot */
	rd_kafka_t *meta;	    /* watermarks */
	rd_kafka_t *groups[MAX_GROUPS];
	char *group_names[MAX_GROUPS];
	int n_groups;
	CURL *curl;
	/* server metrics: the previous scrape, and per-minute increases since we started */
	bool have_prev;
	double prev[N_SERIES];
	double total[N_SERIES];
	long long minute_of[MINUTES];
	double per_minute[MINUTES][N_SERIES];
};

struct dashboard {
	const struct config *cfg;
	struct MHD_Daemon *daemon;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t changed; /* on CLOCK_MONOTONIC */
	bool stopping;
	unsigned long seq; /* bumped with every new snapshot */
	char *snapshot;	   /* JSON text, one line */
	struct collector c;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ------------------------------------------------------------------ database */

static json_t *collect_db(struct dashboard *d)
{
	struct collector *c = &d->c;
	const struct db_stmt *const tables[] = {dashboard_stmts, NULL};
	char threshold[16];
	json_t *doc = NULL;

	if (!c->conn) {
		c->conn = db_connect(d->cfg->database_url, tables, c->db_error, sizeof(c->db_error));
		if (!c->conn)
			return NULL;
		/* a dashboard query must never hold on: bounded like every other wait */
		PQclear(PQexec(c->conn, "SET statement_timeout = 2000"));
		c->slot[0] = '\0';
		if (d->cfg->events == EVENTS_WAL &&
		    !events_slot_name(c->conn, d->cfg->slot, c->slot, c->db_error, sizeof(c->db_error))) {
			PQfinish(c->conn);
			c->conn = NULL;
			return NULL;
		}
	}
	snprintf(threshold, sizeof(threshold), "%d", d->cfg->low_stock_threshold);
	const char *params[] = {threshold, d->cfg->events == EVENTS_WAL ? "wal" : "outbox", c->slot};
	PGresult *res = PQexecPrepared(c->conn, "dashboard_snapshot", 3, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		json_error_t jerr;
		doc = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
		if (!doc)
			snprintf(c->db_error, sizeof(c->db_error), "snapshot is not JSON: %s", jerr.text);
	} else {
		const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c->conn);
		snprintf(c->db_error, sizeof(c->db_error), "%.*s", (int)strcspn(msg, "\n"), msg);
		if (PQstatus(c->conn) != CONNECTION_OK) {
			PQfinish(c->conn);
			c->conn = NULL;
		}
	}
	PQclear(res);
	return doc;
}

/* ------------------------------------------------------------------ Kafka lag */

static rd_kafka_t *kafka_handle(const struct config *cfg, const char *group)
{
	char err[256];
	rd_kafka_conf_t *conf = kafka_conf_new(cfg);
	if (!conf)
		return NULL;
	if (group && (!kafka_conf_set(conf, "group.id", group) ||
		      !kafka_conf_set(conf, "enable.auto.commit", "false"))) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	/* only asks (watermarks, committed offsets): never subscribes, never joins a group */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		log_warn("dashboard: cannot create a Kafka client: %s", err);
	}
	return rk;
}

static bool collector_open_kafka(struct dashboard *d)
{
	struct collector *c = &d->c;
	char *groups = strdup(d->cfg->dashboard_groups), *save = NULL;
	if (!groups)
		return false;
	c->meta = kafka_handle(d->cfg, NULL);
	for (char *g = strtok_r(groups, ", ", &save); g && c->n_groups < MAX_GROUPS;
	     g = strtok_r(NULL, ", ", &save)) {
		c->group_names[c->n_groups] = strdup(g);
		c->groups[c->n_groups] = kafka_handle(d->cfg, g);
		if (!c->group_names[c->n_groups] || !c->groups[c->n_groups]) {
			free(c->group_names[c->n_groups]);
			if (c->groups[c->n_groups])
				rd_kafka_destroy(c->groups[c->n_groups]);
			break;
		}
		c->n_groups++;
	}
	free(groups);
	return c->meta != NULL;
}

/*
 * Each group's lag: the events on the topic it has not committed, summed over
 * the partitions (a partition it never committed counts from its low
 * watermark: the group would start there, auto.offset.reset=earliest).
 */
static json_t *collect_lag(struct dashboard *d)
{
	struct collector *c = &d->c;
	json_t *out = json_object(), *groups = json_array();
	const struct rd_kafka_metadata *md = NULL;
	int64_t lo[MAX_PARTITIONS], hi[MAX_PARTITIONS];
	int partitions = 0;
	const char *topic = d->cfg->orders_topic;
	char error[256] = "";

	json_object_set_new(out, "groups", groups);
	if (!c->meta) {
		json_object_set_new(out, "error", json_string("no Kafka client"));
		return out;
	}
	rd_kafka_poll(c->meta, 0);
	rd_kafka_topic_t *t = rd_kafka_topic_new(c->meta, topic, NULL);
	rd_kafka_resp_err_t err =
	    t ? rd_kafka_metadata(c->meta, 0, t, &md, KAFKA_TIMEOUT_MS) : RD_KAFKA_RESP_ERR__INVALID_ARG;
	if (!err && md->topic_cnt == 1 && !md->topics[0].err)
		partitions = md->topics[0].partition_cnt;
	else
		snprintf(error, sizeof(error), "topic %s: %s", topic,
			 rd_kafka_err2str(err		       ? err
					  : md->topic_cnt == 1 ? md->topics[0].err
							       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
	if (md)
		rd_kafka_metadata_destroy(md);
	if (t)
		rd_kafka_topic_destroy(t);
	if (partitions > MAX_PARTITIONS)
		partitions = MAX_PARTITIONS;
	int64_t end_total = 0;
	for (int p = 0; p < partitions && !error[0]; p++) {
		err = rd_kafka_query_watermark_offsets(c->meta, topic, p, &lo[p], &hi[p], KAFKA_TIMEOUT_MS);
		if (err)
			snprintf(error, sizeof(error), "watermarks of %s/%d: %s", topic, p,
				 rd_kafka_err2str(err));
		end_total += hi[p];
	}
	if (error[0]) {
		json_object_set_new(out, "error", json_string(error));
		return out;
	}
	json_object_set_new(out, "partitions", json_integer(partitions));
	json_object_set_new(out, "events", json_integer(end_total));
	for (int g = 0; g < c->n_groups; g++) {
		json_t *row = json_object();
		json_object_set_new(row, "group", json_string(c->group_names[g]));
		rd_kafka_poll(c->groups[g], 0);
		rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
		for (int p = 0; p < partitions; p++)
			rd_kafka_topic_partition_list_add(list, topic, p);
		err = rd_kafka_committed(c->groups[g], list, KAFKA_TIMEOUT_MS);
		if (err) {
			json_object_set_new(row, "error", json_string(rd_kafka_err2str(err)));
		} else {
			int64_t lag = 0;
			for (int i = 0; i < list->cnt; i++) {
				int p = list->elems[i].partition;
				int64_t at = list->elems[i].offset >= 0 ? list->elems[i].offset : lo[p];
				lag += hi[p] > at ? hi[p] - at : 0;
			}
			json_object_set_new(row, "lag", json_integer(lag));
		}
		rd_kafka_topic_partition_list_destroy(list);
		json_array_append_new(groups, row);
	}
	return out;
}

/* ------------------------------------------------------------------ server metrics */

struct buffer {
	char *data;
	size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *b = userdata;
	size_t n = size * nmemb;
	if (b->len + n > METRICS_MAX_BYTES)
		return 0; /* too big: not the server's /metrics */
	char *grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + b->len, ptr, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* The value of one series in Prometheus text; 0 when absent (no such event yet). */
static double metric_value(const char *text, const char *key)
{
	size_t keylen = strlen(key);
	for (const char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (!strncmp(line, key, keylen) && line[keylen] == ' ')
			return strtod(line + keylen + 1, NULL);
	}
	return 0;
}

static json_t *collect_checkout(struct dashboard *d)
{
	struct collector *c = &d->c;
	struct buffer b = {NULL, 0};
	char curl_err[CURL_ERROR_SIZE] = "";
	json_t *out = json_object();
	long status = 0;

	json_object_set_new(out, "url", json_string(d->cfg->server_metrics_url));
	if (!c->curl)
		c->curl = curl_easy_init();
	CURL *h = c->curl;
	if (!h) {
		json_object_set_new(out, "error", json_string("cannot start libcurl"));
		return out;
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, d->cfg->server_metrics_url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 300L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 800L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	CURLcode rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK || status != 200 || !b.data) {
		char why[CURL_ERROR_SIZE + 64];
		if (rc != CURLE_OK)
			snprintf(why, sizeof(why), "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
		else
			snprintf(why, sizeof(why), "answered %ld", status);
		json_object_set_new(out, "error", json_string(why));
		free(b.data);
		return out;
	}

	long long minute = now_ms() / 60000;
	int slot = (int)(minute % MINUTES);
	if (c->minute_of[slot] != minute) {
		c->minute_of[slot] = minute;
		memset(c->per_minute[slot], 0, sizeof(c->per_minute[slot]));
	}
	for (int s = 0; s < N_SERIES; s++) {
		double v = metric_value(b.data, series_keys[s]);
		/* a counter that went down: the server restarted, and counts from 0 */
		double increase = !c->have_prev ? 0 : v >= c->prev[s] ? v - c->prev[s] : v;
		c->prev[s] = v;
		c->total[s] += increase;
		c->per_minute[slot][s] += increase;
	}
	c->have_prev = true;
	free(b.data);

	json_t *totals = json_object(), *minutes = json_array();
	for (int s = 0; s < N_SERIES; s++)
		json_object_set_new(totals, series_names[s], json_integer((json_int_t)c->total[s]));
	json_object_set_new(totals, "server_serialization_retries",
			    json_integer((json_int_t)c->prev[S_RETRIES]));
	for (long long m = minute - MINUTES + 1; m <= minute; m++) {
		int i = (int)(m % MINUTES);
		if (c->minute_of[i] != m)
			continue;
		json_t *row = json_object();
		json_object_set_new(row, "minute", json_integer(m * 60));
		for (int s = 0; s < N_SERIES; s++)
			json_object_set_new(row, series_names[s],
					    json_integer((json_int_t)c->per_minute[i][s]));
		json_array_append_new(minutes, row);
	}
	json_object_set_new(out, "since_start", totals);
	json_object_set_new(out, "minutes", minutes);
	return out;
}

/* ------------------------------------------------------------------ the collector */

static void collector_close(struct collector *c)
{
	PQfinish(c->conn);
	c->conn = NULL;
	for (int g = 0; g < c->n_groups; g++) {
		rd_kafka_destroy(c->groups[g]);
		free(c->group_names[g]);
	}
	c->n_groups = 0;
	if (c->meta)
		rd_kafka_destroy(c->meta);
	c->meta = NULL;
	curl_easy_cleanup(c->curl);
	c->curl = NULL;
}

static char *collect(struct dashboard *d)
{
	json_t *doc = collect_db(d);
	if (!doc) {
		doc = json_object();
		json_object_set_new(doc, "db_error", json_string(d->c.db_error));
	}
	json_object_set_new(doc, "generated_ms", json_integer(now_ms()));
	json_object_set_new(doc, "low_stock_threshold", json_integer(d->cfg->low_stock_threshold));
	json_object_set_new(doc, "topic", json_string(d->cfg->orders_topic));
	json_object_set_new(doc, "kafka", collect_lag(d));
	json_object_set_new(doc, "checkout", collect_checkout(d));
	char *text = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(doc);
	return text;
}

static void *collector_main(void *arg)
{
	struct dashboard *d = arg;

	if (!collector_open_kafka(d))
		log_warn("dashboard: no Kafka client: consumer lag will not be shown");
	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		pthread_mutex_unlock(&d->lock);
		char *text = collect(d);
		pthread_mutex_lock(&d->lock);
		if (text) {
			free(d->snapshot);
			d->snapshot = text;
			d->seq++;
			pthread_cond_broadcast(&d->changed);
		}
		struct timespec until;
		deadline_in(&until, COLLECT_EVERY_MS);
		while (!d->stopping && pthread_cond_timedwait(&d->changed, &d->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&d->lock);
	collector_close(&d->c);
	return NULL;
}

/* ------------------------------------------------------------------ HTTP */

/* One open /events stream. */
struct stream {
	struct dashboard *d;
	unsigned long seq; /* the snapshot it sent last */
	bool started;
	char *buf;
	size_t len, off;
};

/*
 * MHD's reader for /events, on the connection's own thread: sends what is
 * left of the current message, else waits (bounded) for the next snapshot.
 * Ends the stream when the dashboard stops.
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct stream *s = cls;
	struct dashboard *d = s->d;

	if (s->off == s->len) {
		free(s->buf);
		s->buf = NULL;
		s->len = s->off = 0;
		struct timespec until;
		deadline_in(&until, KEEPALIVE_MS);
		pthread_mutex_lock(&d->lock);
		while (!d->stopping && (d->seq == s->seq || !d->snapshot) &&
		       pthread_cond_timedwait(&d->changed, &d->lock, &until) != ETIMEDOUT)
			;
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		int n;
		if (d->seq != s->seq && d->snapshot) {
			/* retry: the browser reconnects a second after the stream drops */
			n = asprintf(&s->buf, "%sdata: %s\n\n", s->started ? "" : "retry: 1000\n",
				     d->snapshot);
			s->seq = d->seq;
			s->started = true;
		} else {
			n = asprintf(&s->buf, ": keep-alive\n\n");
		}
		pthread_mutex_unlock(&d->lock);
		if (n < 0) {
			s->buf = NULL;
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		s->len = (size_t)n;
	}
	size_t n = s->len - s->off < max ? s->len - s->off : max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	free(s->buf);
	free(s);
}

static const char *asset_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && !strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (dot && !strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	return "text/html; charset=utf-8";
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	return httpd_reply(conn, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	(void)version;
	(void)upload_data;
	struct dashboard *d = cls;

	/* answer only once the whole request is in (a body, if any, is ignored) */
	if (!*req_cls) {
		*req_cls = d;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
	if (!strcmp(url, "/events")) {
		struct stream *s = calloc(1, sizeof(*s));
		if (!s)
			return MHD_NO;
		s->d = d;
		struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
									      stream_read, s, stream_free);
		if (!resp) {
			free(s);
			return MHD_NO;
		}
		MHD_add_response_header(resp, "Content-Type", "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-store");
		enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (!strcmp(url, "/snapshot.json")) {
		pthread_mutex_lock(&d->lock);
		char *copy = d->snapshot ? strdup(d->snapshot) : NULL;
		pthread_mutex_unlock(&d->lock);
		if (!copy)
			return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot yet\n");
		enum MHD_Result ret = httpd_reply(conn, MHD_HTTP_OK, "application/json", copy, strlen(copy));
		free(copy);
		return ret;
	}
	const char *path = !strcmp(url, "/") ? "/index.html" : url;
	for (const struct dashboard_asset *a = dashboard_assets; a->path; a++) {
		if (!strcmp(a->path, path))
			return httpd_reply(conn, MHD_HTTP_OK, asset_type(path), a->data, a->len);
	}
	return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

struct dashboard *dashboard_start(const struct config *cfg, char *err, size_t errlen)
{
	struct sockaddr_in addr;
	pthread_condattr_t attr;

	if (!httpd_listen_addr("dashboard-listen", cfg->dashboard_listen, &addr, err, errlen))
		return NULL;
	struct dashboard *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->cfg = cfg;
	curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: it is not thread-safe */
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&d->changed, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&d->thread, NULL, collector_main, d) != 0) {
		snprintf(err, errlen, "cannot start the dashboard's collector thread");
		dashboard_stop(d);
		return NULL;
	}
	d->thread_started = true;
	/* a thread per connection, so that a stream may wait for the next snapshot;
	 * bounded in number, and each closed when it has sent nothing for 30 s */
	d->daemon =
	    MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL,
			     0, NULL, NULL, on_request, d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
			     (unsigned)32, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!d->daemon) {
		snprintf(err, errlen, "cannot serve the dashboard on %s: %s", cfg->dashboard_listen,
			 strerror(errno));
		dashboard_stop(d);
		return NULL;
	}
	return d;
}

void dashboard_stop(struct dashboard *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->changed);
	pthread_mutex_unlock(&d->lock);
	if (d->daemon)
		MHD_stop_daemon(d->daemon); /* the streams see stopping and end */
	if (d->thread_started)
		pthread_join(d->thread, NULL);
	free(d->snapshot);
	pthread_cond_destroy(&d->changed);
	pthread_mutex_destroy(&d->lock);
	free(d);
	curl_global_cleanup();
}
