/* catalogue.c - see catalogue.h. */
#include "catalogue.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "checkout/db.h"
#include "checkout/kafka.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"
#include "worker.h"

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000
#define REBUILD_WAIT_MS 60000

static const struct db_stmt catalogue_stmts_list[] = {
    /* the highest version wins; an equal or older one (a redelivery, a reordering) changes nothing */
    {"catalogue_upsert",
     "INSERT INTO inventory.catalogue AS c (sku, name, price_cents, stock, limit_group, version, deleted, "
     "  updated_at) VALUES ($1, $2, $3::bigint, $4::bigint, $5, $6::bigint, false, $7::timestamptz) "
     "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, "
     "  stock = EXCLUDED.stock, limit_group = EXCLUDED.limit_group, version = EXCLUDED.version, "
     "  deleted = false, updated_at = EXCLUDED.updated_at "
     "WHERE c.version < EXCLUDED.version RETURNING sku"},
    /* a tombstone keeps the last known fields, marked deleted, at its own version */
    {"catalogue_tombstone", "INSERT INTO inventory.catalogue AS c (sku, version, deleted, updated_at) "
			    "VALUES ($1, $2::bigint, true, $3::timestamptz) "
			    "ON CONFLICT (sku) DO UPDATE SET version = EXCLUDED.version, deleted = true, "
			    "  updated_at = EXCLUDED.updated_at "
			    "WHERE c.version < EXCLUDED.version RETURNING sku"},
    /* the inventory's dead letters, topic "products" (migrations/003_workers.sql) */
    {"catalogue_dead_letter",
     "INSERT INTO inventory.dead_letters (topic, partition, \"offset\", key, value, reason) "
     "VALUES ($1, $2::integer, $3::bigint, $4::bytea, $5::bytea, $6) "
     "ON CONFLICT (topic, partition, \"offset\") DO NOTHING"},
    {NULL, NULL},
};
static const struct db_stmt *const catalogue_stmts[] = {catalogue_stmts_list, NULL};

struct catalogue {
	const struct config *cfg;
	pthread_t thread;
	atomic_bool stop;
	atomic_bool done; /* the thread returned (a rebuild reached the end, or it was stopped) */
	bool rebuild_ok;
	char group[300];
	PGconn *conn;
	rd_kafka_t *rk;
	long applied, stale, skipped;
};

static void nap_ms(struct catalogue *c, int ms)
{
	for (int slept = 0; slept < ms && !atomic_load(&c->stop); slept += 20) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* A usable connection, or false when asked to stop while waiting for one. */
static bool db_ensure(struct catalogue *c)
{
	char err[512];
	bool warned = false;
	while (!atomic_load(&c->stop)) {
		if (c->conn && PQstatus(c->conn) == CONNECTION_OK)
			return true;
		PQfinish(c->conn);
		c->conn = db_connect(c->cfg->database_url, catalogue_stmts, err, sizeof(err));
		if (c->conn) {
			if (warned)
				log_info("catalogue: database reachable again");
			return true;
		}
		if (!warned)
			log_warn("catalogue: database unreachable, retrying: %s", err);
		warned = true;
		nap_ms(c, 1000);
	}
	return false;
}

static char *header(const rd_kafka_message_t *m, const char *name)
{
	rd_kafka_headers_t *hdrs = NULL;
	const void *v = NULL;
	size_t len = 0;
	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return strndup(v ? v : "", len);
}

enum apply_result { APPLY_DONE, APPLY_SKIP, APPLY_RETRY };

/* Keep a message that is itself bad, raw, with why; APPLY_RETRY when that cannot be written yet. */
static enum apply_result dead_letter(struct catalogue *c, const rd_kafka_message_t *m, const char *why,
				     char *rep, size_t replen)
{
	char partition[16], offset[32];
	snprintf(partition, sizeof(partition), "%" PRId32, m->partition);
	snprintf(offset, sizeof(offset), "%" PRId64, m->offset);
	const char *params[] = {rd_kafka_topic_name(m->rkt), partition, offset, m->key, m->payload, why};
	const int lengths[] = {0, 0, 0, (int)m->key_len, (int)m->len, 0};
	const int formats[] = {0, 0, 0, 1, 1, 0};
	PGresult *res = PQexecPrepared(c->conn, "catalogue_dead_letter", 6, params, lengths, formats, 0);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (ok)
		snprintf(rep, replen, "bad message skipped (recorded as dead letter): %s", why);
	else
		snprintf(rep, replen, "cannot record the dead letter (%s): %s", why,
			 db_error_message(res, c->conn));
	PQclear(res);
	return ok ? APPLY_SKIP : APPLY_RETRY;
}

/* Write one message's effect. rep gets what happened, for the log. */
static enum apply_result apply(struct catalogue *c, const rd_kafka_message_t *m, char *rep, size_t replen)
{
	enum apply_result result = APPLY_SKIP;
	char *sku = m->key ? strndup(m->key, m->key_len) : NULL;
	char *version = header(m, "ce_sequence");
	char *time = header(m, "ce_time");
	json_t *v = NULL;
	PGresult *res = NULL;
	char price[32], stock[32];

	char *end = NULL;
	long long ver = version ? strtoll(version, &end, 10) : 0;
	if (!sku || !*sku || !version || !*version || *end || ver <= 0) {
		result = dead_letter(c, m, "no key, or no version in ce_sequence", rep, replen);
		goto out;
	}
	if (!m->payload) {
		const char *p[] = {sku, version, time};
		res = PQexecPrepared(c->conn, "catalogue_tombstone", 3, p, NULL, NULL, 0);
	} else {
		json_error_t jerr;
		v = json_loadb(m->payload, m->len, 0, &jerr);
		json_t *name = json_object_get(v, "name"), *pr = json_object_get(v, "price_cents"),
		       *st = json_object_get(v, "stock"), *group = json_object_get(v, "limit_group");
		if (!json_is_string(name) || !json_is_integer(pr) || !json_is_integer(st) ||
		    !(json_is_null(group) || json_is_string(group))) {
			char why[256];
			snprintf(why, sizeof(why), "not a product: %s",
				 v ? "name, price_cents, stock or limit_group missing or mistyped"
				   : jerr.text);
			result = dead_letter(c, m, why, rep, replen);
			goto out;
		}
		snprintf(price, sizeof(price), "%" JSON_INTEGER_FORMAT, json_integer_value(pr));
		snprintf(stock, sizeof(stock), "%" JSON_INTEGER_FORMAT, json_integer_value(st));
		const char *p[] = {
		    sku, json_string_value(name), price, stock, json_string_value(group), version, time};
		res = PQexecPrepared(c->conn, "catalogue_upsert", 7, p, NULL, NULL, 0);
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		bool newer = PQntuples(res) == 1;
		snprintf(rep, replen, "%s %s version %s%s", m->payload ? "upsert" : "tombstone", sku, version,
			 newer ? "" : ": not newer than the catalogue's, ignored");
		if (newer)
			c->applied++;
		else
			c->stale++;
		result = APPLY_DONE;
		goto out;
	}
	const char *state = db_sqlstate(res);
	const char *msg = db_error_message(res, c->conn);
	/* bad data (class 22/23) will not get better by retrying; anything else is the system's */
	if (state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))) {
		char why[512];
		snprintf(why, sizeof(why), "%.*s", (int)strcspn(msg, "\n"), msg);
		result = dead_letter(c, m, why, rep, replen);
	} else {
		snprintf(rep, replen, "%s", msg);
		result = APPLY_RETRY;
	}
out:
	if (result == APPLY_SKIP)
		c->skipped++;
	PQclear(res);
	json_decref(v);
	free(sku);
	free(version);
	free(time);
	return result;
}

/* Apply m until it is done or skipped (or a stop is asked): it is never passed over on a failure. */
static bool handle(struct catalogue *c, const rd_kafka_message_t *m)
{
	char rep[768], ctx[64];
	int wait_ms = RETRY_FIRST_MS;
	bool retrying = false;
	snprintf(ctx, sizeof(ctx), "catalogue p%" PRId32 "@%" PRId64, m->partition, m->offset);
	while (db_ensure(c)) {
		enum apply_result r = apply(c, m, rep, sizeof(rep));
		if (r == APPLY_DONE) {
			if (retrying)
				log_msg(LOG_INFO, ctx, "recovered");
			log_msg(LOG_INFO, ctx, "%s", rep);
			return true;
		}
		if (r == APPLY_SKIP) {
			log_msg(LOG_WARN, ctx, "%s", rep);
			return true;
		}
		if (!retrying)
			log_msg(LOG_WARN, ctx, "cannot apply yet, retrying: %.*s", (int)strcspn(rep, "\n"),
				rep);
		retrying = true;
		if (PQstatus(c->conn) != CONNECTION_OK) {
			PQfinish(c->conn);
			c->conn = NULL;
		}
		nap_ms(c, wait_ms);
		wait_ms = wait_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : wait_ms * 2;
	}
	return false;
}

static bool purge(struct catalogue *c)
{
	char err[512];
	while (db_ensure(c)) {
		if (db_command(c->conn, "TRUNCATE inventory.catalogue", err, sizeof(err))) {
			log_info("catalogue: rebuild: purged; reading %s from the beginning as group %s",
				 c->cfg->products_topic, c->group);
			return true;
		}
		log_warn("catalogue: rebuild: cannot purge yet: %s", err);
		nap_ms(c, 500);
	}
	return false;
}

static rd_kafka_t *consumer(struct catalogue *c)
{
	char err[512];
	rd_kafka_conf_t *conf = kafka_conf_new(c->cfg);
	if (!conf)
		return NULL;
	if (!kafka_conf_set(conf, "group.id", c->group) ||
	    !kafka_conf_set(conf, "auto.offset.reset", "earliest") ||
	    !kafka_conf_set(conf, "fetch.wait.max.ms", "10") ||
	    !kafka_conf_set(conf, "enable.auto.commit", "true") ||
	    !kafka_conf_set(conf, "enable.auto.offset.store", "false") ||
	    !kafka_conf_set(conf, "session.timeout.ms", "6000") ||
	    !kafka_conf_set(conf, "heartbeat.interval.ms", "500") ||
	    !kafka_conf_set(conf, "enable.partition.eof", c->cfg->rebuild ? "true" : "false")) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		log_error("catalogue: cannot create the Kafka consumer: %s", err);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(subs, c->cfg->products_topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t kerr = rd_kafka_subscribe(rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (kerr) {
		log_error("catalogue: cannot subscribe to %s: %s", c->cfg->products_topic,
			  rd_kafka_err2str(kerr));
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

/* --rebuild: the partition count of the topic, waiting for the broker (0 when stopped). */
static int partition_count(struct catalogue *c)
{
	rd_kafka_topic_t *topic = rd_kafka_topic_new(c->rk, c->cfg->products_topic, NULL);
	int count = 0;
	while (topic && count == 0 && !atomic_load(&c->stop)) {
		const struct rd_kafka_metadata *md = NULL;
		if (rd_kafka_metadata(c->rk, 0, topic, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (md->topic_cnt == 1 && !md->topics[0].err)
				count = md->topics[0].partition_cnt;
			rd_kafka_metadata_destroy(md);
		}
		if (count == 0)
			nap_ms(c, 500);
	}
	if (topic)
		rd_kafka_topic_destroy(topic);
	return count;
}

static void *run(void *arg)
{
	struct catalogue *c = arg;
	bool *at_end = NULL;
	int partitions = 0;

	if (c->cfg->rebuild && !purge(c))
		goto out;
	c->rk = consumer(c);
	if (!c->rk)
		goto out;
	if (c->cfg->rebuild) {
		partitions = partition_count(c);
		at_end = calloc((size_t)(partitions > 0 ? partitions : 1), sizeof(bool));
		if (!at_end)
			goto out;
	}
	log_info("catalogue: consuming %s as group %s", c->cfg->products_topic, c->group);
	while (!atomic_load(&c->stop)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 200);
		if (!m)
			continue;
		bool mine = m->partition >= 0 && m->partition < partitions;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (mine)
				at_end[m->partition] = true;
		} else if (m->err) {
			log_debug("catalogue: consumer: %s", rd_kafka_message_errstr(m));
		} else if (handle(c, m)) {
			rd_kafka_offset_store(m->rkt, m->partition, m->offset);
			if (mine)
				at_end[m->partition] = false;
		}
		rd_kafka_message_destroy(m);
		if (c->cfg->rebuild) {
			int ended = 0;
			for (int p = 0; p < partitions; p++)
				ended += at_end[p];
			if (partitions > 0 && ended == partitions) {
				c->rebuild_ok = true;
				log_info("catalogue: rebuilt: %ld applied, %ld older ignored, %ld skipped",
					 c->applied, c->stale, c->skipped);
				break;
			}
		}
	}
out:
	free(at_end);
	atomic_store(&c->done, true);
	return NULL;
}

struct catalogue *catalogue_start(const struct config *cfg)
{
	struct catalogue *c = calloc(1, sizeof(*c));
	if (!c) {
		log_error("catalogue: out of memory");
		return NULL;
	}
	c->cfg = cfg;
	atomic_init(&c->stop, false);
	atomic_init(&c->done, false);
	int w = snprintf(c->group, sizeof(c->group), "%s-catalogue",
			 cfg->group_id && cfg->group_id[0] ? cfg->group_id : "checkout-inventory");
	if (cfg->rebuild && w > 0 && (size_t)w < sizeof(c->group))
		snprintf(c->group + w, sizeof(c->group) - (size_t)w, "-rebuild-%ld-%d", (long)time(NULL),
			 (int)getpid());
	/* the stop signals belong to the main thread's loop */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int err = pthread_create(&c->thread, NULL, run, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		log_error("catalogue: cannot start its thread: %s", strerror(err));
		free(c);
		return NULL;
	}
	return c;
}

bool catalogue_stop(struct catalogue *c)
{
	if (!c)
		return true;
	if (c->cfg->rebuild) {
		long long end = monotonic_ms() + REBUILD_WAIT_MS;
		while (!atomic_load(&c->done) && monotonic_ms() < end) {
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	atomic_store(&c->stop, true);
	pthread_join(c->thread, NULL);
	bool ok = !c->cfg->rebuild || c->rebuild_ok;
	if (!ok)
		log_error("catalogue: rebuild did not reach the end of %s", c->cfg->products_topic);
	if (c->rk) {
		if (worker_consumer_close(c->rk))
			rd_kafka_destroy(c->rk);
		else
			rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	log_info("catalogue: stopped: %ld applied, %ld older ignored, %ld skipped", c->applied, c->stale,
		 c->skipped);
	PQfinish(c->conn);
	free(c);
	return ok;
}
