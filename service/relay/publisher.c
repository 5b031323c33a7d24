/* publisher.c - produce outbox rows as CloudEvents (Kafka binary mode). */
#include "publisher.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "checkout/kafka.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"

/* How long librdkafka may try to deliver one message before reporting failure. It bounds
 * how long the relay holds a batch's row locks (and its transaction) open. */
#define MESSAGE_TIMEOUT_MS 10000
/* spare time after the message timeout for the last delivery reports to arrive */
#define REPORT_GRACE_MS 3000

#define CE_SOURCE "/checkout"

struct publisher {
	rd_kafka_t *rk;
	char *topic;
	char *products_topic;
	/* the batch in flight: delivery reports carry (generation, index) so a late report of an
	 * abandoned batch can never write into the next one */
	uint32_t generation;
	int n;
	int reported;
	rd_kafka_resp_err_t *results;
	rd_kafka_resp_err_t first_error;
	rd_kafka_resp_err_t last_error; /* what publisher_last_error reports */
	void (*tick)(void *arg);	/* called while publisher_send waits */
	void *tick_arg;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	struct publisher *pub = opaque;
	uintptr_t tag = (uintptr_t)m->_private;
	uint32_t gen = (uint32_t)(tag >> 20);
	int index = (int)(tag & 0xfffff);
	if (gen != (pub->generation & 0xfffff) || index >= pub->n)
		return;
	pub->results[index] = m->err;
	pub->reported++;
	if (m->err && !pub->first_error)
		pub->first_error = m->err;
}

struct publisher *publisher_new(const struct config *cfg)
{
	struct publisher *pub = calloc(1, sizeof(*pub));
	rd_kafka_conf_t *conf = NULL;
	char err[512], timeout[16];
	if (!pub)
		goto fail;
	pub->topic = strdup(cfg->orders_topic);
	pub->products_topic = strdup(cfg->products_topic);
	conf = kafka_conf_new(cfg);
	if (!pub->topic || !pub->products_topic || !conf)
		goto fail;
	snprintf(timeout, sizeof(timeout), "%d", MESSAGE_TIMEOUT_MS);
	/* idempotence implies acks=all and keeps per-partition order across retries */
	if (!kafka_conf_set(conf, "enable.idempotence", "true") ||
	    !kafka_conf_set(conf, "message.timeout.ms", timeout) || !kafka_conf_set(conf, "linger.ms", "5") ||
	    !kafka_conf_set(conf, "queue.buffering.max.messages", "1000000") ||
	    !kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000"))
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, pub);
	pub->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!pub->rk) {
		log_error("cannot create the Kafka producer: %s", err);
		goto fail;
	}
	return pub;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (pub) {
		free(pub->topic);
		free(pub->products_topic);
	}
	free(pub);
	return NULL;
}

void publisher_free(struct publisher *pub)
{
	if (!pub)
		return;
	if (pub->rk) {
		rd_kafka_flush(pub->rk, 5000);
		/* nothing may report into freed memory */
		pub->n = 0;
		rd_kafka_destroy(pub->rk);
	}
	free(pub->results);
	free(pub->topic);
	free(pub->products_topic);
	free(pub);
}

void publisher_set_tick(struct publisher *pub, void (*tick)(void *arg), void *arg)
{
	pub->tick = tick;
	pub->tick_arg = arg;
}

rd_kafka_resp_err_t publisher_last_error(const struct publisher *pub)
{
	return pub->last_error;
}

bool publisher_fatal(const struct publisher *pub)
{
	return rd_kafka_fatal_error(pub->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

int publisher_timeout_ms(const struct publisher *pub)
{
	(void)pub;
	return MESSAGE_TIMEOUT_MS + REPORT_GRACE_MS;
}

int publisher_end_offsets(struct publisher *pub, int64_t *offsets, int max, int timeout_ms, char *err,
			  size_t errlen)
{
	long long deadline = monotonic_ms() + timeout_ms;
	rd_kafka_topic_t *topic = rd_kafka_topic_new(pub->rk, pub->topic, NULL);
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
	int n = -1;

	if (!topic) {
		snprintf(err, errlen, "topic %s: %s", pub->topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	while (n < 0 && monotonic_ms() < deadline) {
		const struct rd_kafka_metadata *md = NULL;
		e = rd_kafka_metadata(pub->rk, 0, topic, &md, 1000);
		if (!e && md->topic_cnt == 1 && !md->topics[0].err) {
			int count = md->topics[0].partition_cnt;
			n = count > max ? max : count;
		} else if (!e) {
			e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
		}
		if (md)
			rd_kafka_metadata_destroy(md);
	}
	for (int p = 0; p < n; p++) {
		int64_t low, high;
		long long left = deadline - monotonic_ms();
		e = rd_kafka_query_watermark_offsets(pub->rk, pub->topic, p, &low, &high,
						     left > 1000 ? (int)left : 1000);
		if (e) {
			n = -1;
			break;
		}
		offsets[p] = high;
	}
	rd_kafka_topic_destroy(topic);
	if (n < 0)
		snprintf(err, errlen, "the end offsets of %s: %s", pub->topic, rd_kafka_err2str(e));
	return n;
}

/*
 * One event, with the CloudEvents binary headers. An order goes to the orders
 * topic keyed by its id; a product event (migrations/010_products_as_events.sql)
 * to the products topic keyed by SKU, with its version in ce_sequence, and a
 * deletion is a tombstone: the same key, no value (so no content-type).
 */
static rd_kafka_resp_err_t produce_one(struct publisher *pub, const struct outbox_row *r, uintptr_t tag)
{
	bool product = !strncmp(r->event_type, "product.", 8);
	bool tombstone = product && !strcmp(r->event_type, "product.deleted");
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);

	rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
	rd_kafka_header_add(h, "ce_id", -1, r->event_id, -1);
	rd_kafka_header_add(h, "ce_source", -1, CE_SOURCE, -1);
	rd_kafka_header_add(h, "ce_type", -1, r->event_type, -1);
	rd_kafka_header_add(h, "ce_time", -1, r->created_at, -1);
	if (product)
		rd_kafka_header_add(h, "ce_sequence", -1, r->version, -1);
	if (!tombstone)
		rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
	/* on success the message owns the headers */
	rd_kafka_resp_err_t e = rd_kafka_producev(
	    pub->rk, RD_KAFKA_V_TOPIC(product ? pub->products_topic : pub->topic),
	    RD_KAFKA_V_KEY((void *)r->aggregate_id, strlen(r->aggregate_id)),
	    RD_KAFKA_V_VALUE(tombstone ? NULL : (void *)r->payload, tombstone ? 0 : (size_t)r->payload_len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_END);
	if (e)
		rd_kafka_headers_destroy(h);
	return e;
}

int publisher_send(struct publisher *pub, const struct outbox_batch *batch, bool *delivered, char *err,
		   size_t errlen)
{
	int ok = 0;
	long long deadline = monotonic_ms() + publisher_timeout_ms(pub);
	rd_kafka_resp_err_t produce_err = RD_KAFKA_RESP_ERR_NO_ERROR;

	*err = '\0';
	for (int i = 0; i < batch->n; i++)
		delivered[i] = false;
	if (batch->n == 0)
		return 0;
	rd_kafka_resp_err_t *results = realloc(pub->results, (size_t)batch->n * sizeof(*results));
	if (!results) {
		snprintf(err, errlen, "out of memory for %d delivery reports", batch->n);
		return 0;
	}
	pub->results = results;
	pub->generation++;
	pub->n = batch->n;
	pub->reported = 0;
	pub->first_error = RD_KAFKA_RESP_ERR_NO_ERROR;

	int produced = 0;
	for (int i = 0; i < batch->n && i < 0xfffff; i++) {
		uintptr_t tag = ((uintptr_t)(pub->generation & 0xfffff) << 20) | (uintptr_t)i;
		pub->results[i] = RD_KAFKA_RESP_ERR__TIMED_OUT;
		rd_kafka_resp_err_t e;
		while ((e = produce_one(pub, &batch->rows[i], tag)) == RD_KAFKA_RESP_ERR__QUEUE_FULL &&
		       monotonic_ms() < deadline)
			rd_kafka_poll(pub->rk, 10);
		if (e) {
			/* not queued: no report will come; the row stays pending */
			pub->results[i] = e;
			produce_err = e;
			break;
		}
		produced++;
	}
	/* every queued message gets a report within message.timeout.ms; wait for all of them.
	 * flush (rather than poll) also tells librdkafka to send now instead of lingering. */
	while (pub->reported < produced) {
		long long left = deadline - monotonic_ms();
		if (left <= 0)
			break;
		rd_kafka_flush(pub->rk, (int)(left > 100 ? 100 : left));
		if (pub->tick && pub->reported < produced)
			pub->tick(pub->tick_arg);
	}
	if (pub->reported < produced) {
		/* should not happen (the message timeout is shorter); give them up explicitly so a
		 * late delivery cannot go unnoticed, and drain the purge reports */
		rd_kafka_purge(pub->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(pub->rk, 100);
	}
	for (int i = 0; i < produced; i++) {
		if (pub->results[i] == RD_KAFKA_RESP_ERR_NO_ERROR) {
			delivered[i] = true;
			ok++;
		}
	}
	/* later reports of this batch are ignored */
	pub->n = 0;
	pub->last_error = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (ok < batch->n) {
		rd_kafka_resp_err_t e = pub->first_error ? pub->first_error : produce_err;
		if (!e)
			e = RD_KAFKA_RESP_ERR__TIMED_OUT;
		pub->last_error = e;
		snprintf(err, errlen, "%d of %d messages not delivered: %s", batch->n - ok, batch->n,
			 rd_kafka_err2str(e));
	}
	rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(pub->rk, NULL, 0);
	if (fatal)
		snprintf(err, errlen, "producer fatal error: %s", rd_kafka_err2str(fatal));
	return ok;
}
