/* kafka.c - librdkafka configuration with our logging. */
#include "checkout/kafka.h"

#include <stdatomic.h>
#include <stdio.h>

#include "checkout/log.h"

/* librdkafka's own chatter is for debugging; errors come through kafka_error_cb */
static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	log_msg(LOG_DEBUG, "rdkafka", "%s: %s", fac, buf);
}

/* the last error code logged, so an outage is one line and not one per retry */
static _Atomic int last_error = RD_KAFKA_RESP_ERR_NO_ERROR;

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (atomic_exchange(&last_error, err) == err)
		return;
	log_msg(err == RD_KAFKA_RESP_ERR__FATAL ? LOG_ERROR : LOG_WARN, "kafka", "%s (%s)", reason,
		rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

bool kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];
	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		log_error("kafka setting %s=%s: %s", name, value, err);
		return false;
	}
	return true;
}

rd_kafka_conf_t *kafka_conf_new(const struct config *cfg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (!conf)
		return NULL;
	if (!kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers) ||
	    !kafka_conf_set(conf, "client.id", cfg->program) ||
	    !kafka_conf_set(conf, "log.connection.close", "false") ||
	    /* small requests go out at once instead of waiting for the previous one's ACK */
	    !kafka_conf_set(conf, "socket.nagle.disable", "true")) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	return conf;
}
