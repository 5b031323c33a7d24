/* worker.c - the consumer loop of the three workers; see worker.h. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkout/errbuf.h"
#include "checkout/kafka.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Sleep up to ms, returning early when a stop was requested. */
static void nap(int ms)
{
	for (int slept = 0; slept < ms && !stop_requested; slept += 50)
		usleep(50 * 1000);
}

PGresult *worker_exec(PGconn *conn, const char *stmt, int nparams, const char *const *params,
		      struct worker_report *rep)
{
	PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
	if (!worker_res_ok(res) && rep) {
		errbuf_set(rep->line, sizeof(rep->line), "%s: %s", stmt, db_error_message(res, conn));
		snprintf(rep->sqlstate, sizeof(rep->sqlstate), "%s", db_sqlstate(res));
	}
	return res;
}

bool worker_res_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	return res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

bool worker_conn_broken(PGconn *conn, const PGresult *res)
{
	if (!conn || PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *state = db_sqlstate(res);
	/* 08: connection exception; 57P0x: the server is shutting down or restarting */
	return !strncmp(state, "08", 2) || !strncmp(state, "57P0", 4);
}

/*
 * True when a failed statement's SQLSTATE says the event's own content broke
 * a data rule, so that no retry can help: the message is bad.
 */
static bool sqlstate_is_bad_data(const char *sqlstate)
{
	/* 22: data exception (a malformed time, a number out of range, bad encoding);
	 * 23: integrity constraint violation (a NOT NULL, CHECK or unique rule) */
	return sqlstate && (!strncmp(sqlstate, "22", 2) || !strncmp(sqlstate, "23", 2));
}

/* Backoff between the tries of one event: RETRY_FIRST_MS doubling to RETRY_MAX_MS. */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000

/*
 * The tries of one event. A retry is logged once when it starts (and again
 * only if its reason changes), and once when it ends.
 */
struct attempt {
	const char *ctx;
	int failed;	      /* tries that failed so far */
	long long since_ms;   /* when the first one failed */
	int backoff_ms;	      /* the wait before the next try */
	bool logged;	      /* a line said we are retrying */
	char logged_key[256]; /* its SQLSTATE, or its reason when there is none */
};

/* The loop's own state beyond struct worker. */
struct loop {
	struct worker *w;
	rd_kafka_t *rk;
	char group[256];
	bool db_down_logged;
	/* --rebuild: which partitions reached their end since their last message */
	bool rebuild;
	int partitions;
	bool *at_end;
	/* --rebuild --from-offsets: where each partition starts, until its first message came
	 * (then -1); NULL: from the beginning */
	int64_t *from;
	long applied, duplicates, dead;
};

/* Connect (or reconnect) until it works or a stop is requested. Logs an
 * outage once and its end once. Returns false only on a stop request. */
static bool loop_db_ensure(struct loop *l)
{
	struct worker *w = l->w;
	int backoff = 200;
	char err[512];
	const struct db_stmt *const tables[] = {w->ops->stmts, NULL};

	if (w->conn && PQstatus(w->conn) == CONNECTION_OK)
		return true;
	if (w->conn && !l->db_down_logged) {
		/* broken under a periodic query (tick), not under a message */
		errbuf_set(err, sizeof(err), "%s", PQerrorMessage(w->conn));
		log_warn("database unreachable, retrying: %s", err);
		l->db_down_logged = true;
	}
	while (!stop_requested) {
		PQfinish(w->conn);
		w->conn = db_connect(w->cfg.database_url, tables, err, sizeof(err));
		if (w->conn) {
			if (l->db_down_logged)
				log_info("database reachable again");
			l->db_down_logged = false;
			return true;
		}
		if (!l->db_down_logged)
			log_warn("database unreachable, retrying: %s", err);
		l->db_down_logged = true;
		nap(backoff);
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
	return false;
}

/* Called when a statement failed: note the outage so the retry reconnects. */
static void loop_db_failed(struct loop *l, const char *what)
{
	if (!l->db_down_logged)
		log_warn("database unreachable, retrying: %s", what);
	l->db_down_logged = true;
	PQfinish(l->w->conn);
	l->w->conn = NULL;
}

static bool loop_command(PGconn *conn, const char *sql, struct worker_report *rep)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = worker_res_ok(res);
	if (!ok) {
		errbuf_set(rep->line, sizeof(rep->line), "%s: %s", sql, db_error_message(res, conn));
		snprintf(rep->sqlstate, sizeof(rep->sqlstate), "%s", db_sqlstate(res));
	}
	PQclear(res);
	return ok;
}

enum outcome { OUTCOME_DONE, OUTCOME_RETRY, OUTCOME_STOPPED };

/*
 * A try failed for a reason that is not the message's: log it if it is the
 * first (or a new reason), and return OUTCOME_RETRY. The event is tried
 * again after a backoff, and its offset is not stored meanwhile.
 */
static enum outcome loop_retry_later(struct loop *l, struct attempt *a, enum log_level level,
				     const char *what, const char *reason, const char *sqlstate)
{
	char key[sizeof(a->logged_key)];
	snprintf(key, sizeof(key), "%s", sqlstate && sqlstate[0] ? sqlstate : reason);
	if (!a->logged || strcmp(key, a->logged_key) != 0) {
		if (sqlstate && sqlstate[0])
			log_msg(level, a->ctx, "%s: %s (SQLSTATE %s)", what, reason, sqlstate);
		else
			log_msg(level, a->ctx, "%s: %s", what, reason);
		snprintf(a->logged_key, sizeof(a->logged_key), "%s", key);
		a->logged = true;
	} else {
		log_msg(LOG_DEBUG, a->ctx, "%s: %s", what, reason);
	}
	/* 25: a read-only session (a standby after a failover, default_transaction_read_only)
	 * or a confused transaction state; neither changes within the session, so the next
	 * try starts a new one (with a multi-host DATABASE_URL, possibly on the new primary) */
	if (sqlstate && !strncmp(sqlstate, "25", 2)) {
		PQfinish(l->w->conn);
		l->w->conn = NULL;
	}
	return OUTCOME_RETRY;
}

/*
 * Copy reason into out (outlen > 0) as valid UTF-8 without control
 * characters: a reason may quote bytes of the message, and text that the
 * database refuses would keep the dead letter from ever being recorded.
 * Anything else becomes '?'.
 */
static void dead_letter_reason(const char *reason, char *out, size_t outlen)
{
	const unsigned char *p = (const unsigned char *)reason;
	size_t used = 0;
	while (*p && used + 5 < outlen) {
		size_t n = 0;
		unsigned char lo = 0x80, hi = 0xbf;
		if (*p >= 0x20 && *p < 0x7f)
			n = 1;
		else if (*p >= 0xc2 && *p <= 0xdf)
			n = 2;
		else if (*p >= 0xe0 && *p <= 0xef) {
			n = 3;
			lo = *p == 0xe0 ? 0xa0 : 0x80;
			hi = *p == 0xed ? 0x9f : 0xbf;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 4;
			lo = *p == 0xf0 ? 0x90 : 0x80;
			hi = *p == 0xf4 ? 0x8f : 0xbf;
		}
		/* the second byte has the narrowest range; the others are 0x80..0xbf */
		for (size_t i = 1; i < n; i++) {
			if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf)) {
				n = 0;
				break;
			}
		}
		if (n == 0) {
			out[used++] = '?';
			p++;
			continue;
		}
		memcpy(out + used, p, n);
		used += n;
		p += n;
	}
	out[used] = '\0';
}

/*
 * Record a message that is itself bad. OUTCOME_DONE once the dead letter
 * is committed; OUTCOME_RETRY when it could not be recorded (whatever the
 * reason: the offset must not move past a message that is nowhere).
 */
static enum outcome loop_dead_letter(struct loop *l, struct attempt *a, const rd_kafka_message_t *m,
				     const char *reason)
{
	char partition[16], offset[32], clean[1600];
	snprintf(partition, sizeof(partition), "%" PRId32, m->partition);
	snprintf(offset, sizeof(offset), "%" PRId64, m->offset);
	dead_letter_reason(reason, clean, sizeof(clean));
	const char *params[] = {rd_kafka_topic_name(m->rkt), partition, offset, m->key, m->payload, clean};
	const int lengths[] = {0, 0, 0, (int)m->key_len, (int)m->len, 0};
	const int formats[] = {0, 0, 0, 1, 1, 0};

	PGresult *res =
	    PQexecPrepared(l->w->conn, "worker_dead_letter_insert", 6, params, lengths, formats, 0);
	enum outcome o = OUTCOME_DONE;
	if (worker_res_ok(res)) {
		l->dead++;
		log_msg(LOG_WARN, a->ctx, "bad message skipped (recorded as dead letter): %s", clean);
	} else if (worker_conn_broken(l->w->conn, res)) {
		loop_db_failed(l, PQerrorMessage(l->w->conn));
		o = OUTCOME_RETRY;
	} else {
		const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(l->w->conn);
		char why[1600];
		int msglen = (int)strcspn(msg, "\n");
		snprintf(why, sizeof(why), "%.*s (the message: %.1000s)", msglen > 500 ? 500 : msglen, msg,
			 clean);
		o = loop_retry_later(l, a, LOG_WARN, "cannot record the dead letter yet, retrying", why,
				     db_sqlstate(res));
	}
	PQclear(res);
	return o;
}

/* One try at applying a parsed event in one transaction. */
static enum outcome loop_apply(struct loop *l, struct attempt *a, const rd_kafka_message_t *m,
			       const struct order_event *ev)
{
	struct worker *w = l->w;
	PGconn *conn = w->conn;
	const char *ctx = a->ctx;
	struct worker_report rep = {{0}, {0}, {0}};
	char partition[16], offset[32];
	PGresult *res = NULL;
	bool duplicate = false, refused = false;

	snprintf(partition, sizeof(partition), "%" PRId32, m->partition);
	snprintf(offset, sizeof(offset), "%" PRId64, m->offset);
	if (!loop_command(conn, "BEGIN", &rep))
		goto failed;
	const char *params[] = {ev->event_id, ev->order_id, partition, offset};
	res = worker_exec(conn, "worker_inbox_insert", 4, params, &rep);
	if (!worker_res_ok(res))
		goto failed;
	duplicate = PQntuples(res) == 0;
	PQclear(res);
	res = NULL;
	if (!duplicate) {
		enum worker_result wr = w->ops->apply(w, conn, ev, &rep);
		if (wr == WORKER_RETRY) {
			struct worker_report ignore = {{0}, {0}, {0}};
			(void)loop_command(conn, "ROLLBACK", &ignore);
			return loop_retry_later(l, a, LOG_WARN, "cannot apply yet, retrying", rep.line,
						rep.sqlstate);
		}
		/* WORKER_FAILED without a failed statement: the worker refused the message itself */
		refused = wr == WORKER_FAILED && !rep.sqlstate[0];
		if (wr != WORKER_APPLIED)
			goto failed;
	}
	if (!loop_command(conn, "COMMIT", &rep))
		goto failed;

	if (duplicate) {
		l->duplicates++;
		log_msg(LOG_INFO, ctx, "duplicate event %s skipped (already applied)", ev->event_id);
	} else {
		l->applied++;
		log_msg(LOG_INFO, ctx, "%s", rep.line);
		if (rep.warn[0])
			log_msg(LOG_WARN, ctx, "%s", rep.warn);
	}
	return OUTCOME_DONE;

failed:
	PQclear(res);
	if (worker_conn_broken(conn, NULL)) {
		loop_db_failed(l, rep.line[0] ? rep.line : PQerrorMessage(conn));
		return OUTCOME_RETRY;
	}
	struct worker_report ignore = {{0}, {0}, {0}};
	(void)loop_command(conn, "ROLLBACK", &ignore);
	if (worker_conn_broken(conn, NULL)) {
		loop_db_failed(l, rep.line);
		return OUTCOME_RETRY;
	}
	/* a deadlock or serialization failure with another instance: expected, just retry */
	if (!strcmp(rep.sqlstate, "40001") || !strcmp(rep.sqlstate, "40P01"))
		return loop_retry_later(l, a, LOG_INFO, "retrying after a transient conflict", rep.line,
					rep.sqlstate);
	/* only the message's own content is a reason to give up on it: anything else (read-only,
	 * disk full, a timeout, a permission, a missing table) passes, and the event waits */
	if (!refused && !sqlstate_is_bad_data(rep.sqlstate))
		return loop_retry_later(l, a, LOG_WARN, "cannot apply yet, retrying",
					rep.line[0] ? rep.line : "unknown error", rep.sqlstate);
	char reason[1600];
	snprintf(reason, sizeof(reason), "cannot apply: %s", rep.line[0] ? rep.line : "unknown error");
	return loop_dead_letter(l, a, m, reason);
}

/*
 * Handle one message until its effect (or its dead letter) is durable.
 * Returns false only when a stop request interrupted it: the offset must
 * then not be stored, and the message is redelivered on the next start.
 */
static bool loop_handle(struct loop *l, const rd_kafka_message_t *m)
{
	struct order_event ev;
	char err[512], ctx[64], order[9];
	bool parsed = event_parse(m, &ev, err, sizeof(err));
	struct attempt a = {.ctx = ctx, .backoff_ms = RETRY_FIRST_MS};

	if (parsed) {
		event_short_id(ev.order_id, order);
		snprintf(ctx, sizeof(ctx), "order=%s p%" PRId32 "@%" PRId64, order, m->partition, m->offset);
	} else {
		snprintf(ctx, sizeof(ctx), "p%" PRId32 "@%" PRId64, m->partition, m->offset);
	}
	enum outcome o;
	for (;;) {
		if (!loop_db_ensure(l)) {
			o = OUTCOME_STOPPED;
			break;
		}
		o = parsed ? loop_apply(l, &a, m, &ev) : loop_dead_letter(l, &a, m, err);
		if (o != OUTCOME_RETRY)
			break;
		if (a.failed++ == 0)
			a.since_ms = monotonic_ms();
		nap(a.backoff_ms);
		a.backoff_ms = a.backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a.backoff_ms * 2;
		/* a stop ends the retries; the event comes again on the next start */
		if (stop_requested) {
			o = OUTCOME_STOPPED;
			log_msg(LOG_INFO, ctx,
				"stopping before this event could be applied; it is not marked "
				"done and comes again on the next start");
			break;
		}
	}
	if (o == OUTCOME_DONE && a.logged)
		log_msg(LOG_INFO, ctx, "recovered after %.1f s / %d tries",
			(double)(monotonic_ms() - a.since_ms) / 1000.0, a.failed + 1);
	event_free(&ev);
	return o == OUTCOME_DONE;
}

static void loop_store_offset(struct loop *l, const rd_kafka_message_t *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	if (!list)
		return;
	rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition)->offset =
	    m->offset + 1;
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(l->rk, list);
	if (err)
		log_debug("storing offset p%" PRId32 "@%" PRId64 ": %s (partition revoked?)", m->partition,
			  m->offset, rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(list);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 void *opaque)
{
	(void)opaque;
	char list[256] = "";
	size_t used = 0;
	for (int i = 0; i < parts->cnt && used < sizeof(list) - 16; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%" PRId32, i ? "," : "",
					 parts->elems[i].partition);
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("joined the group: assigned partitions %s", parts->cnt ? list : "(none)");
		rd_kafka_assign(rk, parts);
	} else {
		/* auto-commit commits the stored offsets of revoked partitions */
		log_info("partitions %s revoked (rebalance)", parts->cnt ? list : "(none)");
		rd_kafka_assign(rk, NULL);
	}
}

/* How long a stopping worker tries to leave its group. */
#define CLOSE_TIMEOUT_MS 5000

bool worker_consumer_close(rd_kafka_t *rk)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	if (!q)
		return false;
	rd_kafka_error_t *error = rd_kafka_consumer_close_queue(rk, q);
	if (error) {
		log_warn("leaving the group: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		rd_kafka_queue_destroy(q);
		return false;
	}
	long long deadline = monotonic_ms() + CLOSE_TIMEOUT_MS;
	while (!rd_kafka_consumer_closed(rk) && monotonic_ms() < deadline) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
		/* the revocation of our partitions, forwarded here while closing */
		if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
			rd_kafka_assign(rk, NULL);
		rd_kafka_event_destroy(ev);
	}
	bool closed = rd_kafka_consumer_closed(rk);
	rd_kafka_queue_destroy(q);
	return closed;
}

/* The consumer, subscribed to the orders topic; NULL (logged) on failure. */
static rd_kafka_t *loop_consumer(struct loop *l)
{
	const struct config *cfg = &l->w->cfg;
	char err[512];
	rd_kafka_conf_t *conf = kafka_conf_new(cfg);
	rd_kafka_t *rk = NULL;

	if (!conf)
		return NULL;
	if (!kafka_conf_set(conf, "group.id", l->group) ||
	    !kafka_conf_set(conf, "auto.offset.reset", "earliest") ||
	    /* how long a fetch may wait for new messages: librdkafka's mock broker (the
	     * embedded one) answers only when this runs out, even when messages arrived
	     * meanwhile; at the default 500 ms, commit -> applied took ~400 ms (p50)
	     * in scripts/bench, at 10 ms 28 ms. A real broker answers at once anyway. */
	    !kafka_conf_set(conf, "fetch.wait.max.ms", "10") ||
	    !kafka_conf_set(conf, "enable.auto.commit", "true") ||
	    !kafka_conf_set(conf, "enable.auto.offset.store", "false") ||
	    !kafka_conf_set(conf, "auto.commit.interval.ms", "1000") ||
	    !kafka_conf_set(conf, "session.timeout.ms", "6000") ||
	    !kafka_conf_set(conf, "heartbeat.interval.ms", "500") ||
	    !kafka_conf_set(conf, "enable.partition.eof", l->rebuild ? "true" : "false")) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		log_error("cannot create the Kafka consumer: %s", err);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	if (*cfg->rebuild_from)
		return rk; /* assigned its partitions and offsets later (loop_assign_from) */
	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(subs, cfg->orders_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t kerr = rd_kafka_subscribe(rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (kerr) {
		log_error("cannot subscribe to %s: %s", cfg->orders_topic, rd_kafka_err2str(kerr));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

/* --rebuild: the partition count of the topic, waiting for the broker. */
static int loop_partition_count(struct loop *l)
{
	rd_kafka_topic_t *topic = rd_kafka_topic_new(l->rk, l->w->cfg.orders_topic, NULL);
	int count = 0;
	while (topic && count == 0 && !stop_requested) {
		const struct rd_kafka_metadata *md = NULL;
		if (rd_kafka_metadata(l->rk, 0, topic, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (md->topic_cnt == 1 && !md->topics[0].err)
				count = md->topics[0].partition_cnt;
			rd_kafka_metadata_destroy(md);
		}
		if (count == 0)
			nap(500);
	}
	if (topic)
		rd_kafka_topic_destroy(topic);
	return count;
}

/* --rebuild: purge the view and the inbox in one transaction. */
static bool loop_purge(struct loop *l)
{
	struct worker_report rep = {{0}, {0}};
	char err[512] = "";
	while (loop_db_ensure(l)) {
		PGconn *conn = l->w->conn;
		if (loop_command(conn, "BEGIN", &rep) && l->w->ops->purge(conn, err, sizeof(err)) &&
		    loop_command(conn, "COMMIT", &rep)) {
			log_info("rebuild: view purged; replaying %s from %s%s as group %s",
				 l->w->cfg.orders_topic,
				 *l->w->cfg.rebuild_from ? "offsets " : "the beginning",
				 l->w->cfg.rebuild_from, l->group);
			return true;
		}
		if (!worker_conn_broken(conn, NULL)) {
			log_error("rebuild: cannot purge the view: %s", err[0] ? err : rep.line);
			return false;
		}
		loop_db_failed(l, err[0] ? err : rep.line);
		nap(200);
	}
	return false;
}

/*
 * --from-offsets "P:OFFSET,...": fill l->from with every partition's start.
 * False (logged) when the text is not that, or leaves a partition out.
 */
static bool loop_parse_from(struct loop *l, const char *text)
{
	l->from = malloc((size_t)l->partitions * sizeof(*l->from));
	if (!l->from)
		return false;
	for (int p = 0; p < l->partitions; p++)
		l->from[p] = -1;
	const char *s = text;
	while (*s) {
		char *end;
		errno = 0;
		long p = strtol(s, &end, 10);
		if (end == s || *end != ':' || p < 0 || p >= l->partitions || errno)
			goto bad;
		s = end + 1;
		long long off = strtoll(s, &end, 10);
		if (end == s || off < 0 || errno || (*end && *end != ','))
			goto bad;
		l->from[p] = off;
		s = *end ? end + 1 : end;
	}
	for (int p = 0; p < l->partitions; p++)
		if (l->from[p] < 0) {
			log_error("--from-offsets %s: partition %d of %d is missing (each needs P:OFFSET)",
				  text, p, l->partitions);
			return false;
		}
	return true;
bad:
	log_error("--from-offsets %s: expected P:OFFSET,... with 0 <= P < %d (what checkout-relay --replay "
		  "prints as replay.start=)",
		  text, l->partitions);
	return false;
}

/*
 * A rebuild that starts past an offset the broker already dropped would come
 * out short without knowing it: say so and fail instead. True when every
 * partition still holds its start.
 */
static bool loop_from_still_held(struct loop *l)
{
	for (int p = 0; p < l->partitions; p++) {
		int64_t low = 0, high = 0;
		rd_kafka_resp_err_t e =
		    rd_kafka_query_watermark_offsets(l->rk, l->w->cfg.orders_topic, p, &low, &high, 10000);
		if (e) {
			log_error("rebuild: cannot ask the broker for partition %d's offsets: %s", p,
				  rd_kafka_err2str(e));
			return false;
		}
		if (low > l->from[p]) {
			log_error(
			    "rebuild: partition %d now starts at offset %lld, past %lld where the replay "
			    "began: the broker dropped %lld of its events; the view would come out short "
			    "(replay again, then rebuild at once)",
			    p, (long long)low, (long long)l->from[p], (long long)(low - l->from[p]));
			return false;
		}
	}
	return true;
}

/* --from-offsets: take every partition, each from its offset. */
static bool loop_assign_from(struct loop *l)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(l->partitions);
	if (!list)
		return false;
	for (int p = 0; p < l->partitions; p++)
		rd_kafka_topic_partition_list_add(list, l->w->cfg.orders_topic, p)->offset = l->from[p];
	rd_kafka_resp_err_t e = rd_kafka_assign(l->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (e)
		log_error("rebuild: cannot assign the partitions: %s", rd_kafka_err2str(e));
	return !e;
}

/*
 * --from-offsets: the first message of a partition must be at its start; a
 * later one means the broker dropped the start meanwhile. False (logged) then.
 */
static bool loop_from_check(struct loop *l, const rd_kafka_message_t *m)
{
	if (!l->from || m->partition < 0 || m->partition >= l->partitions || l->from[m->partition] < 0)
		return true;
	int64_t want = l->from[m->partition];
	l->from[m->partition] = -1;
	if (m->offset == want)
		return true;
	log_error("rebuild: partition %d's first message is at offset %lld, not %lld where the replay "
		  "began: the broker dropped %lld of its events while the rebuild ran; the view is short "
		  "(replay again, then rebuild at once)",
		  (int)m->partition, (long long)m->offset, (long long)want, (long long)(m->offset - want));
	return false;
}

static bool loop_rebuild_done(const struct loop *l)
{
	for (int i = 0; i < l->partitions; i++) {
		if (!l->at_end[i])
			return false;
	}
	return l->partitions > 0;
}

int worker_main(const struct worker_ops *ops, int argc, char **argv)
{
	struct worker w = {.ops = ops};
	struct loop l = {.w = &w};
	int status = EXIT_FAILURE;
	bool started = false;

	enum config_result r = config_load(&w.cfg, CONFIG_WORKER, ops->name, argc, argv);
	if (r != CONFIG_OK) {
		status = r == CONFIG_EXIT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
		goto out;
	}
	log_init(w.cfg.program, w.cfg.log_level, w.cfg.log_format);
	char dberr[512];
	if (!db_wait(w.cfg.database_url, w.cfg.db_wait_seconds, dberr, sizeof(dberr))) {
		log_error("%s", dberr);
		goto out;
	}
	install_signals();
	if (ops->oneshot && ops->oneshot(&w, &status))
		goto out;
	if (w.cfg.rebuild && !ops->purge) {
		log_error("--rebuild is only for checkout-inventory and checkout-analytics");
		goto out;
	}
	if (ops->start && !ops->start(&w))
		goto out;
	started = true;

	l.rebuild = w.cfg.rebuild;
	if (w.cfg.group_id[0])
		snprintf(l.group, sizeof(l.group), "%s", w.cfg.group_id);
	else
		snprintf(l.group, sizeof(l.group), "checkout-%s", ops->name);
	if (l.rebuild) {
		/* a fresh group has no committed offsets: it starts at the beginning */
		size_t len = strlen(l.group);
		snprintf(l.group + len, sizeof(l.group) - len, "-rebuild-%ld-%d", (long)time(NULL),
			 (int)getpid());
	}
	if (!loop_db_ensure(&l)) {
		status = EXIT_SUCCESS; /* stopped while waiting for the database */
		goto out;
	}
	if (*w.cfg.rebuild_from && !l.rebuild) {
		log_error("--from-offsets only makes sense with --rebuild");
		goto out;
	}
	l.rk = loop_consumer(&l);
	if (!l.rk)
		goto out;
	if (l.rebuild) {
		l.partitions = loop_partition_count(&l);
		l.at_end = calloc((size_t)(l.partitions > 0 ? l.partitions : 1), sizeof(bool));
		if (!l.at_end)
			goto out;
		/* checked before the purge: a rebuild that cannot be complete leaves the view alone */
		if (*w.cfg.rebuild_from &&
		    (!loop_parse_from(&l, w.cfg.rebuild_from) || !loop_from_still_held(&l)))
			goto out;
		if (!loop_purge(&l) || (l.from && !loop_assign_from(&l)))
			goto out;
	}
	log_info("consuming %s as group %s (brokers %s)", w.cfg.orders_topic, l.group, w.cfg.kafka_brokers);

	long long next_tick = monotonic_ms() + 1000;
	while (!stop_requested) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(l.rk, 200);
		if (ops->tick && monotonic_ms() >= next_tick) {
			next_tick = monotonic_ms() + 1000;
			if (w.conn && PQstatus(w.conn) == CONNECTION_OK)
				ops->tick(&w, w.conn);
		}
		if (!m)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (l.rebuild && m->partition >= 0 && m->partition < l.partitions)
				l.at_end[m->partition] = true;
		} else if (m->err) {
			/* broker outages arrive through kafka.c's error callback, logged once */
			log_debug("consumer: %s", rd_kafka_message_errstr(m));
		} else if (!loop_from_check(&l, m)) {
			rd_kafka_message_destroy(m);
			goto out;
		} else if (loop_handle(&l, m)) {
			loop_store_offset(&l, m);
			if (l.rebuild && m->partition >= 0 && m->partition < l.partitions)
				l.at_end[m->partition] = false;
		}
		rd_kafka_message_destroy(m);
		if (l.rebuild && loop_rebuild_done(&l)) {
			log_info("rebuild done: %ld events applied, %ld duplicates, %ld dead letters",
				 l.applied, l.duplicates, l.dead);
			break;
		}
	}
	status = EXIT_SUCCESS;
out:
	if (l.rk) {
		/* leave the group at once; closing commits the stored offsets (auto-commit is on).
		 * Not rd_kafka_commit(): a synchronous commit waits for the coordinator forever. */
		if (worker_consumer_close(l.rk)) {
			rd_kafka_destroy(l.rk);
			log_info("stopped: %ld applied, %ld duplicates skipped, %ld dead letters; offsets "
				 "committed, left the group",
				 l.applied, l.duplicates, l.dead);
		} else {
			rd_kafka_destroy_flags(l.rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
			log_warn(
			    "stopped: %ld applied, %ld duplicates skipped, %ld dead letters; could not leave "
			    "the group within %d s (broker unreachable): events since the last committed "
			    "offset come again and are skipped as duplicates",
			    l.applied, l.duplicates, l.dead, CLOSE_TIMEOUT_MS / 1000);
		}
	}
	if (started && ops->stop)
		ops->stop(&w);
	free(l.at_end);
	free(l.from);
	PQfinish(w.conn);
	config_free(&w.cfg);
	return status;
}
