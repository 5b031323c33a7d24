/* kafka.h - librdkafka configuration shared by the relay, workers and tests. */
#ifndef CHECKOUT_KAFKA_H
#define CHECKOUT_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "checkout/config.h"

/*
 * A new librdkafka configuration with bootstrap.servers from cfg, client.id
 * set to the program name, and librdkafka's own log lines and errors routed
 * through log_msg (a broker outage is logged once, and once more when it
 * ends). Returns NULL when out of memory. The caller owns the result (pass it
 * to rd_kafka_new, or rd_kafka_conf_destroy).
 */
rd_kafka_conf_t *kafka_conf_new(const struct config *cfg) __attribute__((warn_unused_result));

/*
 * Set one property; on failure logs the reason and returns false.
 */
bool kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
	__attribute__((warn_unused_result));

#endif
