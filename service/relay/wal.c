/* wal.c - the relay's WAL mode (see wal.h).
 *
 * The replication protocol (PostgreSQL's "Streaming Replication Protocol"
 * and "Logical Replication Message Formats"): after START_REPLICATION the
 * connection is in CopyBoth mode. The server sends XLogData ('w': start,
 * end of WAL, send time, then one pgoutput message) and primary keepalives
 * ('k': end of WAL, send time, reply requested); we send standby status
 * updates ('r': written, flushed, applied positions, time, reply requested).
 * Integers are big-endian; times are microseconds since 2000-01-01.
 * pgoutput (proto_version 1) sends per transaction Begin ('B'), its
 * messages ('M') and Commit ('C'); a transaction without a message is not
 * sent at all (PostgreSQL 15).
 */
#include "wal.h"

#include <jansson.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "checkout/db.h"
#include "checkout/events.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"
#include "publisher.h"

#define STATUS_EVERY_MS 10000 /* a status update at least this often (wal_sender_timeout is 60 s) */
#define STATS_EVERY_MS 10000
#define METRICS_EVERY_MS 1000
#define STANDBY_RETRY_MS 1000
#define BACKOFF_MAX_MS 5000
#define PG_EPOCH_OFFSET_S 946684800LL /* 2000-01-01 in Unix time */

/* An event read from the slot, waiting for its delivery report. */
struct wal_event {
	char *buf;	    /* owns the strings of row */
	double commit_time; /* Unix seconds; 0 while its transaction has not committed */
};

struct wal_relay {
	const struct config *cfg;
	volatile sig_atomic_t *stop;
	struct relay_metrics *metrics;
	PGconn *conn;
	struct publisher *pub;
	char slot[EVENTS_SLOT_MAX];

	/* events received, in order; the first `committed` belong to whole transactions */
	struct outbox_row *rows;
	struct wal_event *events;
	bool *delivered;
	int n, cap, committed;
	uint64_t committed_end; /* end of the last whole transaction among them */
	bool in_tx;		/* between a Begin and its Commit */

	uint64_t confirmed;	 /* reported as flushed: everything up to it is on the topic */
	uint64_t reported;	 /* the last position sent in a status update */
	uint64_t server_end;	 /* the server's end of WAL, from the latest message */
	long long status_ms;	 /* when the last status update went out */
	unsigned long published; /* events acknowledged by the broker */
	unsigned long failed;	 /* delivery reports that were errors */
	unsigned long published_at_stats;
	long long stats_ms, metrics_ms;
	bool db_down, broker_down, standby, lag_warned;
};

static long long now_ms(void)
{
	return (long long)monotonic_ms();
}

static double unix_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(struct wal_relay *r, int ms)
{
	long long end = now_ms() + ms;
	while (!*r->stop) {
		long long left = end - now_ms();
		if (left <= 0)
			break;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(left > 50 ? 50 : left) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static uint64_t get_u64(const char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char)p[i];
	return v;
}

static uint32_t get_u32(const char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = (v << 8) | (unsigned char)p[i];
	return v;
}

static void put_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (char)(v & 0xff);
		v >>= 8;
	}
}

/* Microseconds since 2000-01-01 (the protocol's clock) as Unix seconds. */
static double pg_time(uint64_t us)
{
	return (double)(int64_t)us / 1e6 + (double)PG_EPOCH_OFFSET_S;
}

/* ---- the batch ------------------------------------------------------------ */

static void batch_drop(struct wal_relay *r, int from, int to)
{
	for (int i = from; i < to; i++)
		free(r->events[i].buf);
}

/* Forget every event (after a lost connection the server sends them again). */
static void batch_reset(struct wal_relay *r)
{
	batch_drop(r, 0, r->n);
	r->n = r->committed = 0;
	r->in_tx = false;
}

static bool batch_reserve(struct wal_relay *r)
{
	if (r->n < r->cap)
		return true;
	int cap = r->cap ? r->cap * 2 : 256;
	struct outbox_row *rows = realloc(r->rows, (size_t)cap * sizeof(*rows));
	if (rows)
		r->rows = rows;
	struct wal_event *events = realloc(r->events, (size_t)cap * sizeof(*events));
	if (events)
		r->events = events;
	bool *delivered = realloc(r->delivered, (size_t)cap * sizeof(*delivered));
	if (delivered)
		r->delivered = delivered;
	if (!rows || !events || !delivered)
		return false;
	r->cap = cap;
	return true;
}

/*
 * Add the event of a message: type is the prefix after "checkout/", content
 * the order JSON, or for product.* the product's (sku and version at least:
 * migrations/010_products_as_events.sql), published keyed by SKU with id
 * "<sku>@<version>". Returns false only when out of memory. A message that
 * is neither is logged as an error and left out (it cannot be published
 * with an id; nothing of ours writes one).
 */
static bool batch_add(struct wal_relay *r, uint64_t lsn, const char *type, const char *content, uint32_t len)
{
	json_error_t jerr;
	json_t *event = json_loadb(content, len, 0, &jerr);
	bool product = !strncmp(type, "product.", 8);
	const char *key = json_string_value(json_object_get(event, product ? "sku" : "order_id"));
	const char *created_at =
	    json_string_value(json_object_get(event, product ? "updated_at" : "created_at"));
	json_int_t version = json_integer_value(json_object_get(event, "version"));
	char version_text[24] = "";
	bool ok = true;
	if (!key || !created_at || !*type || (product && version <= 0)) {
		log_error(
		    "the message at %X/%X (%s%s) is not an order or product event (%s); it is not published",
		    (unsigned)(lsn >> 32), (unsigned)lsn, WAL_PREFIX, type,
		    event ? "no id, time or version" : jerr.text);
		goto out;
	}
	if (product)
		snprintf(version_text, sizeof(version_text), "%lld", (long long)version);
	size_t key_len = strlen(key) + 1, time_len = strlen(created_at) + 1, type_len = strlen(type) + 1;
	size_t version_len = strlen(version_text) + 1;
	/* the event id: the order id, or "<sku>@<version>" */
	size_t id_len = product ? key_len + version_len : 0;
	char *buf = malloc(len + 1 + key_len + time_len + type_len + version_len + id_len);
	if (!buf || !batch_reserve(r)) {
		free(buf);
		ok = false;
		goto out;
	}
	char *p = buf;
	struct outbox_row *row = &r->rows[r->n];
	memcpy(p, content, len);
	p[len] = '\0';
	row->payload = p;
	row->payload_len = (int)len;
	p += len + 1;
	row->event_id = row->aggregate_id = memcpy(p, key, key_len);
	p += key_len;
	row->created_at = memcpy(p, created_at, time_len);
	p += time_len;
	row->event_type = memcpy(p, type, type_len);
	p += type_len;
	row->version = memcpy(p, version_text, version_len);
	p += version_len;
	if (product) {
		sprintf(p, "%s@%s", key, version_text);
		row->event_id = p;
	}
	row->id = (long long)lsn;
	r->events[r->n] = (struct wal_event){.buf = buf, .commit_time = 0};
	r->n++;
out:
	json_decref(event);
	return ok;
}

/* ---- the replication connection ----------------------------------------- */

/* Send a standby status update: everything up to r->confirmed is done. */
static bool send_status(struct wal_relay *r, bool reply_requested)
{
	char msg[34];
	msg[0] = 'r';
	put_u64(msg + 1, r->confirmed);	 /* written */
	put_u64(msg + 9, r->confirmed);	 /* flushed: the slot's confirmed_flush_lsn follows it */
	put_u64(msg + 17, r->confirmed); /* applied */
	put_u64(msg + 25, (uint64_t)((unix_now() - (double)PG_EPOCH_OFFSET_S) * 1e6));
	msg[33] = reply_requested ? 1 : 0;
	if (PQputCopyData(r->conn, msg, sizeof(msg)) != 1 || PQflush(r->conn) != 0)
		return false;
	r->reported = r->confirmed;
	r->status_ms = now_ms();
	return true;
}

static void connection_lost(struct wal_relay *r, const char *why)
{
	if (!r->db_down && !*r->stop)
		log_warn("database connection lost (%.*s); reconnecting", (int)strcspn(why, "\n"), why);
	r->db_down = true;
	PQfinish(r->conn);
	r->conn = NULL;
	batch_reset(r);
}

enum start_result { START_OK, START_RETRY, START_STANDBY, START_FATAL };

/* Connect, check the database, make sure of the slot, start streaming. */
static enum start_result wal_start(struct wal_relay *r)
{
	const char *keys[] = {"dbname", "replication", "application_name", "connect_timeout", NULL};
	const char *values[] = {r->cfg->database_url, "database", "checkout-relay", "10", NULL};
	char err[512], sql[256];
	bool lost = false;
	enum start_result result = START_RETRY;
	PGresult *res = NULL;

	r->conn = PQconnectdbParams(keys, values, 1);
	if (PQstatus(r->conn) != CONNECTION_OK) {
		snprintf(err, sizeof(err), "%s", PQerrorMessage(r->conn));
		goto fail;
	}
	if (!db_wal_level_logical(r->conn, err, sizeof(err))) {
		/* a database that answered without logical decoding will not change by itself */
		result = PQstatus(r->conn) == CONNECTION_OK ? START_FATAL : START_RETRY;
		goto fail;
	}
	if (!events_slot_name(r->conn, r->cfg->slot, r->slot, err, sizeof(err))) {
		result = *r->cfg->slot ? START_FATAL : START_RETRY;
		goto fail;
	}
	if (!events_ensure_slot(r->conn, r->slot, true, &lost, err, sizeof(err))) {
		result = lost ? START_FATAL : START_RETRY;
		goto fail;
	}
	/* from the slot's confirmed position: 0/0 means "where the slot is" */
	snprintf(sql, sizeof(sql),
		 "START_REPLICATION SLOT %s LOGICAL 0/0 (proto_version '1', publication_names '%s', "
		 "messages 'true')",
		 r->slot, EVENTS_PUBLICATION);
	res = PQexec(r->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_BOTH) {
		char state[6];
		snprintf(state, sizeof(state), "%s", db_sqlstate(res));
		snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
		PQclear(res);
		res = NULL;
		if (!strcmp(state, "55006")) {
			/* "replication slot ... is active for PID ...": another relay streams it */
			PQfinish(r->conn);
			r->conn = NULL;
			if (!r->standby)
				log_info("slot %s is in use (by another relay, or still being created); "
					 "waiting as a standby",
					 r->slot);
			r->standby = true;
			return START_STANDBY;
		}
		/* 55000: "can no longer get changes from replication slot" (invalidated) */
		result = !strcmp(state, "55000") ? START_FATAL : START_RETRY;
		lost = result == START_FATAL;
		goto fail;
	}
	PQclear(res);
	if (r->db_down)
		log_info("database reachable again");
	r->db_down = false;
	if (r->standby)
		log_info("slot %s is free: taking over", r->slot);
	r->standby = false;
	r->status_ms = now_ms();
	log_info("relaying WAL events from slot %s to topic %s (batch %d)", r->slot, r->cfg->orders_topic,
		 r->cfg->relay_batch);
	return START_OK;
fail:
	PQfinish(r->conn);
	r->conn = NULL;
	if (result == START_FATAL && lost)
		log_error(
		    "%.*s: events committed in the WAL it lost were never published, and the relay will not "
		    "skip them silently. Republish them from the database (checkout-relay --replay --since "
		    "<time before the loss>), then drop the slot (SELECT pg_drop_replication_slot('%s')) so "
		    "the next start creates a new one; see README, \"An invalidated slot\"",
		    (int)strcspn(err, "\n"), err, r->slot);
	else if (result == START_FATAL)
		log_error("%.*s", (int)strcspn(err, "\n"), err);
	else if (!r->db_down)
		log_warn("database unreachable (%.*s); retrying", (int)strcspn(err, "\n"), err);
	if (result == START_RETRY)
		r->db_down = true;
	return result;
}

/* ---- decoding ------------------------------------------------------------ */

/* Handle one pgoutput message (the payload of an XLogData). False when out of memory. */
static bool handle_pgoutput(struct wal_relay *r, const char *p, size_t len)
{
	if (len < 1)
		return true;
	switch (p[0]) {
	case 'B': /* final LSN, commit time, xid */
		r->in_tx = true;
		return true;
	case 'C': { /* flags, commit LSN, end LSN, commit time */
		if (len < 26)
			return true;
		uint64_t end = get_u64(p + 10);
		double when = pg_time(get_u64(p + 18));
		for (int i = r->committed; i < r->n; i++)
			r->events[i].commit_time = when;
		r->committed = r->n;
		r->committed_end = end;
		r->in_tx = false;
		/* a transaction with nothing of ours: nothing to wait for */
		if (r->n == 0 && end > r->confirmed)
			r->confirmed = end;
		return true;
	}
	case 'M': { /* flags, LSN, prefix\0, length, content */
		if (len < 10)
			return true;
		bool transactional = p[1] & 1;
		uint64_t lsn = get_u64(p + 2);
		const char *prefix = p + 10;
		size_t prefix_len = strnlen(prefix, len - 10);
		if (10 + prefix_len + 1 + 4 > len)
			return true;
		uint32_t content_len = get_u32(prefix + prefix_len + 1);
		const char *content = prefix + prefix_len + 5;
		if ((size_t)(content - p) + content_len > len)
			return true;
		if (strncmp(prefix, WAL_PREFIX, strlen(WAL_PREFIX)) != 0)
			return true; /* someone else's message */
		if (!batch_add(r, lsn, prefix + strlen(WAL_PREFIX), content, content_len))
			return false;
		if (!transactional) {
			/* not ours (the checkout's are transactional), but publish it as its own unit */
			r->events[r->n - 1].commit_time = unix_now();
			if (!r->in_tx) {
				r->committed = r->n;
				r->committed_end = lsn;
			}
		}
		return true;
	}
	default: /* relations, types, origins: the publication has no tables */
		return true;
	}
}

/* Handle one CopyData message from the server. False when out of memory. */
static bool handle_copy(struct wal_relay *r, const char *buf, int len)
{
	if (len >= 25 && buf[0] == 'w') {
		uint64_t end = get_u64(buf + 9);
		if (end > r->server_end)
			r->server_end = end;
		return handle_pgoutput(r, buf + 25, (size_t)len - 25);
	}
	if (len >= 18 && buf[0] == 'k') {
		uint64_t end = get_u64(buf + 1);
		if (end > r->server_end)
			r->server_end = end;
		/* a keepalive's position is what the server has decoded and sent: with nothing of
		 * ours outstanding, all of it is done. Confirming it keeps an idle slot from pinning WAL. */
		if (r->n == 0 && !r->in_tx && end > r->confirmed)
			r->confirmed = end;
		if (buf[17] && !send_status(r, false))
			return true; /* the next read notices the broken connection */
	}
	return true;
}

/* ---- publishing ---------------------------------------------------------- */

static void wal_stats(struct wal_relay *r, bool force);
static struct publisher *wal_publisher_new(struct wal_relay *r);

/* Keep only the rows not delivered among the first `count`, followed by the rest. */
static int batch_keep_undelivered(struct wal_relay *r, int count)
{
	int kept = 0;
	for (int i = 0; i < r->n; i++) {
		if (i < count && r->delivered[i]) {
			free(r->events[i].buf);
			continue;
		}
		r->rows[kept] = r->rows[i];
		r->events[kept] = r->events[i];
		kept++;
	}
	int removed = r->n - kept;
	r->n = kept;
	r->committed -= removed;
	return removed;
}

/*
 * Produce the events of the whole transactions received, wait for their
 * delivery, and confirm the end of the last one. Retries what the broker did
 * not acknowledge (keeping the replication connection alive meanwhile) until
 * everything is delivered or a stop is requested. False when a stop came
 * first or the connection broke (the server sends the events again).
 */
static bool publish_committed(struct wal_relay *r)
{
	char err[512];
	int backoff_ms = 0;
	while (r->committed > 0) {
		if (*r->stop)
			return false;
		if (!r->pub && !(r->pub = wal_publisher_new(r))) {
			nap_ms(r, 1000);
			continue;
		}
		struct outbox_batch batch = {.res = NULL, .n = r->committed, .rows = r->rows};
		log_debug("producing %d events (transactions up to %X/%X)", r->committed,
			  (unsigned)(r->committed_end >> 32), (unsigned)r->committed_end);
		int delivered = publisher_send(r->pub, &batch, r->delivered, err, sizeof(err));
		int asked = r->committed;
		batch_keep_undelivered(r, asked);
		r->published += (unsigned long)delivered;
		r->failed += (unsigned long)(asked - delivered);
		if (delivered == asked) {
			if (r->broker_down)
				log_info("broker reachable again, published %d", delivered);
			r->broker_down = false;
			break;
		}
		if (!r->broker_down) {
			rd_kafka_resp_err_t e = publisher_last_error(r->pub);
			bool unreachable =
			    e == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
			    e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
			log_warn("%s (%s), %d events pending; retrying",
				 unreachable ? "broker unreachable" : "broker refused messages", err,
				 r->committed);
		}
		r->broker_down = true;
		if (publisher_fatal(r->pub)) {
			log_error("the Kafka producer hit a fatal error; creating a new one");
			publisher_free(r->pub);
			r->pub = NULL;
		}
		/* the walsender ends a replication connection that stays silent for wal_sender_timeout */
		if (!send_status(r, false)) {
			connection_lost(r, PQerrorMessage(r->conn));
			return false;
		}
		backoff_ms =
		    backoff_ms ? (backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2) : 250;
		nap_ms(r, backoff_ms);
		/* this loop can last as long as the outage: the numbers and the warning go on */
		wal_stats(r, false);
	}
	if (r->committed_end > r->confirmed)
		r->confirmed = r->committed_end;
	if (!send_status(r, false)) {
		connection_lost(r, PQerrorMessage(r->conn));
		return false;
	}
	return true;
}

/* ---- numbers ------------------------------------------------------------- */

static void lag(const struct wal_relay *r, unsigned long long *bytes, double *seconds)
{
	*bytes = r->server_end > r->confirmed ? (unsigned long long)(r->server_end - r->confirmed) : 0;
	*seconds = 0;
	if (r->n > 0) {
		double oldest = r->events[0].commit_time ? r->events[0].commit_time : unix_now();
		*seconds = unix_now() - oldest;
		if (*seconds < 0)
			*seconds = 0;
	}
}

static void wal_stats(struct wal_relay *r, bool force)
{
	long long now = now_ms();
	bool log_due = force || now - r->stats_ms >= STATS_EVERY_MS;
	bool metrics_due = r->metrics && now - r->metrics_ms >= METRICS_EVERY_MS;
	unsigned long long bytes;
	double seconds;
	lag(r, &bytes, &seconds);
	if (seconds > r->cfg->lag_warn_seconds && !r->lag_warned) {
		log_warn("slot %s is %.1f s (%llu bytes) behind: events wait to be published", r->slot,
			 seconds, bytes);
		r->lag_warned = true;
	} else if (seconds <= r->cfg->lag_warn_seconds && r->lag_warned) {
		log_info("slot %s caught up (%.1f s, %llu bytes behind)", r->slot, seconds, bytes);
		r->lag_warned = false;
	}
	if (metrics_due) {
		relay_metrics_set(r->metrics, r->published, r->failed, r->n, seconds);
		relay_metrics_set_lag(r->metrics, bytes, seconds);
		r->metrics_ms = now;
	}
	if (!log_due)
		return;
	unsigned long delta = r->published - r->published_at_stats;
	double secs = (double)(now - r->stats_ms) / 1000.0;
	if (force || delta > 0 || r->n > 0 || seconds > 0)
		log_info("published %lu (%.1f/s), slot lag %llu bytes, %.1f s", r->published,
			 secs > 0 ? (double)delta / secs : 0.0, bytes, seconds);
	r->stats_ms = now;
	r->published_at_stats = r->published;
}

/* While a batch waits for its delivery reports (up to 13 s when the broker is gone):
 * the stats line, the lag warning and the metrics go on. */
static void wal_tick(void *arg)
{
	wal_stats(arg, false);
}

/* A producer whose waits keep the numbers going; NULL (logged) on failure. */
static struct publisher *wal_publisher_new(struct wal_relay *r)
{
	struct publisher *pub = publisher_new(r->cfg);
	if (pub)
		publisher_set_tick(pub, wal_tick, r);
	return pub;
}

/* ---- the loop ------------------------------------------------------------ */

/* Read and handle everything the server sent; wait up to 100 ms for more. False: connection gone. */
static bool pump(struct wal_relay *r)
{
	for (;;) {
		char *buf = NULL;
		int len = PQgetCopyData(r->conn, &buf, 1);
		if (len > 0) {
			bool ok = handle_copy(r, buf, len);
			PQfreemem(buf);
			if (!ok) {
				log_error("out of memory for an event; reading the slot again");
				connection_lost(r, "out of memory");
				return false;
			}
			if (r->committed >= r->cfg->relay_batch)
				return true;
			continue;
		}
		if (len == 0) {
			if (r->committed > 0)
				return true; /* nothing more at hand: publish what is whole */
			if (r->confirmed > r->reported || now_ms() - r->status_ms >= STATUS_EVERY_MS) {
				if (!send_status(r, false)) {
					connection_lost(r, PQerrorMessage(r->conn));
					return false;
				}
			}
			struct pollfd pfd = {.fd = PQsocket(r->conn), .events = POLLIN};
			if (poll(&pfd, 1, 100) < 0 || *r->stop)
				return true;
			if (PQconsumeInput(r->conn) != 1) {
				connection_lost(r, PQerrorMessage(r->conn));
				return false;
			}
			if (pfd.revents == 0)
				return true;
			continue;
		}
		/* -1: the server ended the stream; -2: an error */
		PGresult *res = PQgetResult(r->conn);
		char why[512];
		snprintf(why, sizeof(why), "%s",
			 res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
							   : PQerrorMessage(r->conn));
		PQclear(res);
		connection_lost(r, *why ? why : "the server ended the stream");
		return false;
	}
}

int wal_run(const struct config *cfg, struct relay_metrics *metrics, volatile sig_atomic_t *stop)
{
	struct wal_relay r = {.cfg = cfg, .stop = stop, .metrics = metrics};
	int status = EXIT_FAILURE;
	int backoff_ms = 0;
	r.stats_ms = now_ms();
	while (!*stop) {
		if (!r.conn) {
			enum start_result s = wal_start(&r);
			if (s == START_FATAL)
				goto out;
			if (s != START_OK) {
				backoff_ms = s == START_STANDBY ? STANDBY_RETRY_MS
					     : backoff_ms ? (backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
											     : backoff_ms * 2)
							  : 100;
				nap_ms(&r, backoff_ms);
				continue;
			}
			backoff_ms = 0;
			/* after the checks, so a database that cannot serve the slot is the only complaint */
			if (!r.pub)
				r.pub = wal_publisher_new(&r);
		}
		if (pump(&r) && r.committed > 0)
			publish_committed(&r);
		if (r.conn)
			wal_stats(&r, false);
	}
	status = EXIT_SUCCESS;
	if (r.conn)
		wal_stats(&r, true);
	log_info("stopping after publishing %lu events", r.published);
out:
	if (r.conn) {
		/* tell the server what is done, then end the stream */
		if (send_status(&r, false))
			PQputCopyEnd(r.conn, NULL);
		PQfinish(r.conn);
	}
	batch_reset(&r);
	free(r.rows);
	free(r.events);
	free(r.delivered);
	publisher_free(r.pub);
	return status;
}
