/* topic.h - read the orders topic from the beginning with a plain consumer. */
#ifndef CHECKOUT_TESTS_RELAY_TOPIC_H
#define CHECKOUT_TESTS_RELAY_TOPIC_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

struct topic_msg {
	char *key;
	char *value;	/* "" for a tombstone */
	bool tombstone; /* no value at all (a deleted product) */
	char *ce_specversion, *ce_id, *ce_source, *ce_type, *ce_time, *content_type; /* NULL if absent */
	char *ce_sequence;							     /* a product's version */
};

struct topic_reader {
	rd_kafka_t *rk;
	struct topic_msg *msgs;
	int n, cap;
};

/* Assign every partition of "orders" from the first offset. Fails the test if it cannot. */
void topic_open(struct topic_reader *t, const char *bootstrap);

/* The same for the topic called name ("products"). */
void topic_open_named(struct topic_reader *t, const char *bootstrap, const char *name);

/* Read what arrives for ms milliseconds. */
void topic_read(struct topic_reader *t, int ms);

/* Read until at least count messages were seen; false after timeout_ms. */
bool topic_wait_count(struct topic_reader *t, int count, int timeout_ms);

/* Read until a message with this key was seen; false after timeout_ms. */
bool topic_wait_key(struct topic_reader *t, const char *key, int timeout_ms);

/* Number of messages seen with this key, and the first of them (or NULL). */
int topic_count_key(const struct topic_reader *t, const char *key, const struct topic_msg **first);

/* Close the consumer and free every message; safe twice. */
void topic_close(struct topic_reader *t);

#endif
