/* publisher.h - an idempotent Kafka producer that reports, per row, whether
 * the broker acknowledged it. */
#ifndef CHECKOUT_RELAY_PUBLISHER_H
#define CHECKOUT_RELAY_PUBLISHER_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "checkout/config.h"
#include "outbox.h"

struct publisher;

/*
 * A producer for cfg->orders_topic (and cfg->products_topic: a row whose
 * event_type starts with "product." goes there, keyed by SKU, its version in
 * the ce_sequence header, and product.deleted as a tombstone, no value) with
 * enable.idempotence=true (so
 * acks=all) and a bounded delivery timeout. Returns NULL (after logging why)
 * when librdkafka refuses the configuration. Free with publisher_free().
 */
struct publisher *publisher_new(const struct config *cfg) __attribute__((warn_unused_result));

/* Flush what is queued (up to 5 s), destroy the producer. Accepts NULL. */
void publisher_free(struct publisher *pub);

/*
 * Produce every row of batch (asynchronously), then wait for every delivery
 * report. delivered[i] is set true only for rows whose report said
 * delivered; a failed, purged or timed-out row stays false. Returns the
 * number delivered; when some were not, err holds the first reason. Never
 * returns before every message of the batch is delivered or given up.
 */
int publisher_send(struct publisher *pub, const struct outbox_batch *batch, bool *delivered, char *err,
		   size_t errlen);

/*
 * Have publisher_send call tick(arg) about every 100 ms while it waits for
 * delivery reports (up to publisher_timeout_ms during a broker outage), so
 * its caller's periodic work (a stats line, a lag warning, metrics) goes on
 * meanwhile. tick must not call back into the publisher. NULL: none.
 */
void publisher_set_tick(struct publisher *pub, void (*tick)(void *arg), void *arg);

/* The first error of the last publisher_send (0 when everything was delivered). */
rd_kafka_resp_err_t publisher_last_error(const struct publisher *pub);

/* True when the producer hit a fatal error and must be replaced (publisher_free + new). */
bool publisher_fatal(const struct publisher *pub);

/*
 * The end of every partition of the topic (its high watermark: the offset its
 * next message gets), asked of the broker, waiting up to timeout_ms. Fills
 * offsets[p] for partitions 0..n-1 (n <= max) and returns n; returns -1 with
 * err set when the broker does not answer in time.
 */
int publisher_end_offsets(struct publisher *pub, int64_t *offsets, int max, int timeout_ms, char *err,
			  size_t errlen) __attribute__((warn_unused_result));

/* How long publisher_send can take at most, in milliseconds. */
int publisher_timeout_ms(const struct publisher *pub);

#endif
