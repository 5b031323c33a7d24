/* topic.c - see topic.h. */
#include "topic.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/monotonic.h"

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];
	cr_assert(rd_kafka_conf_set(conf, name, value, err, sizeof(err)) == RD_KAFKA_CONF_OK, "%s", err);
}

void topic_open(struct topic_reader *t, const char *bootstrap)
{
	topic_open_named(t, bootstrap, "orders");
}

void topic_open_named(struct topic_reader *t, const char *bootstrap, const char *name)
{
	char err[256], group[64];
	memset(t, 0, sizeof(*t));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	snprintf(group, sizeof(group), "relay-test-%ld", (long)time(NULL));
	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "group.id", group);
	set(conf, "enable.auto.commit", "false");
	/* the outage test takes the broker away under the consumer too: come back quickly */
	set(conf, "reconnect.backoff.max.ms", "500");
	t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	cr_assert(t->rk, "%s", err);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
	for (int p = 0; p < 3; p++)
		rd_kafka_topic_partition_list_add(parts, name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	cr_assert_eq(rd_kafka_assign(t->rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(parts);
}

static char *header(rd_kafka_headers_t *hdrs, const char *name)
{
	const void *v = NULL;
	size_t len = 0;
	if (!hdrs || rd_kafka_header_get_last(hdrs, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	return strndup(v ? v : "", len);
}

static void keep(struct topic_reader *t, rd_kafka_message_t *m)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->msgs = realloc(t->msgs, (size_t)t->cap * sizeof(*t->msgs));
		cr_assert(t->msgs);
	}
	struct topic_msg *s = &t->msgs[t->n++];
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_message_headers(m, &hdrs);
	s->key = strndup(m->key ? m->key : "", m->key_len);
	s->value = strndup(m->payload ? m->payload : "", m->len);
	s->tombstone = m->payload == NULL;
	s->ce_sequence = header(hdrs, "ce_sequence");
	s->ce_specversion = header(hdrs, "ce_specversion");
	s->ce_id = header(hdrs, "ce_id");
	s->ce_source = header(hdrs, "ce_source");
	s->ce_type = header(hdrs, "ce_type");
	s->ce_time = header(hdrs, "ce_time");
	s->content_type = header(hdrs, "content-type");
}

void topic_read(struct topic_reader *t, int ms)
{
	long long end = monotonic_ms() + ms;
	do {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 20);
		if (!m)
			continue;
		if (!m->err)
			keep(t, m);
		rd_kafka_message_destroy(m);
	} while (monotonic_ms() < end);
}

bool topic_wait_count(struct topic_reader *t, int count, int timeout_ms)
{
	long long end = monotonic_ms() + timeout_ms;
	while (t->n < count && monotonic_ms() < end)
		topic_read(t, 50);
	return t->n >= count;
}

int topic_count_key(const struct topic_reader *t, const char *key, const struct topic_msg **first)
{
	int count = 0;
	if (first)
		*first = NULL;
	for (int i = 0; i < t->n; i++) {
		if (strcmp(t->msgs[i].key, key) != 0)
			continue;
		if (first && !count)
			*first = &t->msgs[i];
		count++;
	}
	return count;
}

bool topic_wait_key(struct topic_reader *t, const char *key, int timeout_ms)
{
	long long end = monotonic_ms() + timeout_ms;
	while (topic_count_key(t, key, NULL) == 0 && monotonic_ms() < end)
		topic_read(t, 50);
	return topic_count_key(t, key, NULL) > 0;
}

void topic_close(struct topic_reader *t)
{
	if (t->rk) {
		rd_kafka_consumer_close(t->rk);
		rd_kafka_destroy(t->rk);
		t->rk = NULL;
	}
	for (int i = 0; i < t->n; i++) {
		struct topic_msg *s = &t->msgs[i];
		free(s->key);
		free(s->value);
		free(s->ce_specversion);
		free(s->ce_id);
		free(s->ce_source);
		free(s->ce_type);
		free(s->ce_time);
		free(s->content_type);
		free(s->ce_sequence);
	}
	free(t->msgs);
	t->msgs = NULL;
	t->n = t->cap = 0;
}
