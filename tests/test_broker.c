/* The embedded broker: a real Kafka protocol peer for librdkafka clients. */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <string.h>

#include "testenv.h"

static struct testenv_proc broker;

static void stop_broker(void)
{
	testenv_stop_clean(&broker);
}

TestSuite(broker, .fini = stop_broker);

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap, const char *group)
{
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	cr_assert(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) == RD_KAFKA_CONF_OK);
	if (group) {
		cr_assert(rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) == RD_KAFKA_CONF_OK);
		cr_assert(rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ==
			  RD_KAFKA_CONF_OK);
	}
	rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
	cr_assert(rk, "%s", err);
	return rk;
}

Test(broker, orders_topic_has_three_partitions_and_round_trips_a_message)
{
	const char *bootstrap = testenv_broker_start(&broker);
	rd_kafka_t *producer = client(RD_KAFKA_PRODUCER, bootstrap, NULL);

	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *topic = rd_kafka_topic_new(producer, "orders", NULL);
	cr_assert_eq(rd_kafka_metadata(producer, 0, topic, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
	cr_assert_eq(md->topic_cnt, 1);
	cr_expect_eq(md->topics[0].partition_cnt, 3);
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(topic);

	const char *value = "{\"hello\":\"kafka\"}";
	cr_assert_eq(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC("orders"), RD_KAFKA_V_KEY("k1", 2),
				       RD_KAFKA_V_VALUE((void *)value, strlen(value)),
				       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
		     RD_KAFKA_RESP_ERR_NO_ERROR);
	cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_destroy(producer);

	rd_kafka_t *consumer = client(RD_KAFKA_CONSUMER, bootstrap, "broker-test");
	rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(subs, "orders", RD_KAFKA_PARTITION_UA);
	cr_assert_eq(rd_kafka_subscribe(consumer, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
	rd_kafka_topic_partition_list_destroy(subs);
	bool seen = false;
	for (int i = 0; i < 300 && !seen; i++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
		if (!m)
			continue;
		if (!m->err && m->len == strlen(value) && !memcmp(m->payload, value, m->len) && m->key_len == 2 &&
		    !memcmp(m->key, "k1", 2))
			seen = true;
		rd_kafka_message_destroy(m);
	}
	cr_expect(seen, "the message came back from the topic");
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	cr_expect_eq(testenv_stop(&broker, SIGTERM), 0, "the broker exits cleanly on SIGTERM");
}
