/* The relay: every admitted order, and only those, on the orders topic.
 *
 * Orders are written as the checkout transaction writes them (orders.c);
 * the topic is read back with a plain consumer (topic.c). The suite runs
 * twice (tests/relay/CMakeLists.txt): EVENTS=wal (events from a logical
 * replication slot) and EVENTS=outbox (the polled table).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "checkout/migrate.h"
#include "orders.h"
#include "testenv.h"
#include "topic.h"

static struct testenv_proc broker, relay, relay2;
static struct topic_reader topic;
static PGconn *db;
static char *conninfo;
static char bootstrap[256];

static void setup(void)
{
	conninfo = testenv_db_new();
	db = testenv_db_connect(conninfo);
	orders_seed(db);
	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	topic_open(&topic, bootstrap);
}

/* Criterion ignores assertions in a suite's .fini: what each test leaves running
 * is stopped, and its exit status checked, at the end of the test itself
 * (testenv_stop_clean: a leak the sanitizer reports at exit fails the test).
 * The .fini stops whatever a test that failed early left behind. */
static void stop_cleanly(void)
{
	testenv_stop_clean(&relay);
	testenv_stop_clean(&relay2);
	topic_close(&topic);
	testenv_stop_clean(&broker);
}

/* the wal_level=replica cluster of the test that starts one, stopped here if it failed early */
static char replica_dir[256];

static void replica_stop(void)
{
	char cmd[1024];
	if (!replica_dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "%s/tests/relay/replica_cluster.sh stop %s", CHECKOUT_SOURCE_DIR,
		 replica_dir);
	cr_expect_eq(system(cmd), 0, "%s", cmd);
	replica_dir[0] = '\0';
}

static void teardown(void)
{
	stop_cleanly();
	replica_stop();
	orders_drop_slot(db);
	PQfinish(db);
	db = NULL;
	free(conninfo);
	conninfo = NULL;
}

TestSuite(relay, .init = setup, .fini = teardown);

/* Skip the test unless the suite runs in the WAL mode, stopping what .init started first (a
 * skipped test's broker must not outlive it). */
#define skip_unless_wal(why)                                                                                 \
	do {                                                                                                 \
		if (!orders_wal_mode()) {                                                                    \
			stop_cleanly();                                                                      \
			cr_skip_test(why);                                                                   \
		}                                                                                            \
	} while (0)

/* Start a relay on the test's database and broker; extra args are appended. */
static void start_relay(struct testenv_proc *p, const char *const *extra)
{
	const char *args[32] = {"--database-url", conninfo, "--kafka-brokers", bootstrap};
	int n = 4;
	for (int i = 0; extra && extra[i] && n < 31; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	const char *env[] = {"LOG_LEVEL=debug", NULL};
	testenv_spawn(p, "checkout-relay", args, env);
	cr_assert(testenv_wait_log(p, "relaying ", 10000), "the relay did not start; see %s", p->log_path);
}

/* Start a second relay: in the WAL mode it waits as a standby, in the outbox mode it shares the work. */
static void start_second_relay(struct testenv_proc *p, const char *const *extra)
{
	if (!orders_wal_mode()) {
		start_relay(p, extra);
		return;
	}
	const char *args[32] = {"--database-url", conninfo, "--kafka-brokers", bootstrap};
	int n = 4;
	for (int i = 0; extra && extra[i] && n < 31; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	const char *env[] = {"LOG_LEVEL=debug", NULL};
	testenv_spawn(p, "checkout-relay", args, env);
	cr_assert(testenv_wait_log(p, "waiting as a standby", 10000), "the second relay is a standby; see %s",
		  p->log_path);
}

/* The log line that says a relay produced a batch of 10 events. */
static const char *produced_ten(void)
{
	return orders_wal_mode() ? "producing 10 events" : "claimed 10 rows";
}

/* The message for order_id is exactly the committed order's event, as a CloudEvent
 * whose id is the order id. */
static void expect_message_matches_row(const char *order_id)
{
	const struct topic_msg *m = NULL;
	cr_assert_eq(topic_count_key(&topic, order_id, &m), 1, "order %s is on the topic once", order_id);
	char *payload = orders_payload(db, order_id);
	char *event_id = strdup(order_id);
	json_t *want = json_loads(payload, 0, NULL);
	json_t *got = json_loads(m->value, 0, NULL);
	cr_assert(want && got, "both are JSON: %s", m->value);
	cr_expect(json_equal(want, got), "value %s equals the committed payload %s", m->value, payload);
	cr_expect_null(json_object_get(got, "status"), "the value has no status");
	cr_expect_str_eq(json_string_value(json_object_get(got, "order_id")), order_id);
	cr_expect_str_eq(m->ce_specversion ? m->ce_specversion : "", "1.0");
	cr_expect_str_eq(m->ce_id ? m->ce_id : "", event_id);
	cr_expect_str_eq(m->ce_source ? m->ce_source : "", "/checkout");
	cr_expect_str_eq(m->ce_type ? m->ce_type : "", "order.admitted");
	cr_expect_str_eq(m->content_type ? m->content_type : "", "application/json");
	cr_expect(m->ce_time && strlen(m->ce_time) >= 20 && m->ce_time[10] == 'T' &&
		      m->ce_time[strlen(m->ce_time) - 1] == 'Z',
		  "ce_time is RFC 3339 UTC: %s", m->ce_time ? m->ce_time : "(none)");
	json_decref(want);
	json_decref(got);
	free(payload);
	free(event_id);
}

Test(relay, publishes_committed_orders_exactly_and_never_rolled_back_ones)
{
	start_relay(&relay, NULL);
	char *admitted[4], *rolled_back[2];
	admitted[0] = orders_admit(db, "alice");
	rolled_back[0] = orders_roll_back(db, "bob");
	admitted[1] = orders_admit(db, "carol");
	rolled_back[1] = orders_roll_back(db, "dave");
	admitted[2] = orders_admit(db, "erin");
	cr_assert(topic_wait_count(&topic, 3, 15000), "3 admitted orders arrive (got %d)", topic.n);
	/* one more after the rolled-back ones: once it is there, anything earlier would be too */
	admitted[3] = orders_admit(db, "frank");
	cr_assert(topic_wait_key(&topic, admitted[3], 15000), "the last order arrives");
	cr_assert(orders_wait_drained(db, 5000));
	topic_read(&topic, 300);

	cr_expect_eq(topic.n, 4, "exactly the 4 admitted orders are on the topic (got %d)", topic.n);
	for (int i = 0; i < 4; i++)
		expect_message_matches_row(admitted[i]);
	for (int i = 0; i < 2; i++)
		cr_expect_eq(topic_count_key(&topic, rolled_back[i], NULL), 0,
			     "rolled-back order %s never appears", rolled_back[i]);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0, "the relay exits 0 on SIGTERM");
	cr_expect_eq(testenv_count_log(&relay, "published 4 ("), 1, "its last line reports the count; see %s",
		     relay.log_path);
	cr_expect_eq(
	    testenv_count_log(&relay, orders_wal_mode() ? ", slot lag " : "pending 0, oldest pending 0.0 s"),
	    1);
	for (int i = 0; i < 4; i++)
		free(admitted[i]);
	for (int i = 0; i < 2; i++)
		free(rolled_back[i]);
	stop_cleanly();
}

Test(relay, publishes_a_row_whose_transaction_commits_after_a_higher_id)
{
	PGconn *late = testenv_db_connect(conninfo);
	start_relay(&relay, NULL);

	/* A takes the lower id and stays open; B takes a higher id and commits first */
	long id_a = 0, id_b = 0;
	testenv_exec(late, "BEGIN");
	char *order_a = orders_insert(late, "slow-transaction", &id_a);
	testenv_exec(db, "BEGIN");
	char *order_b = orders_insert(db, "fast-transaction", &id_b);
	testenv_exec(db, "COMMIT");
	cr_assert_lt(id_a, id_b, "A's event was written before B's");

	cr_assert(topic_wait_key(&topic, order_b, 15000), "B is published while A is still open");
	cr_assert(orders_wait_drained(db, 5000), "B is marked published");
	cr_expect_eq(topic_count_key(&topic, order_a, NULL), 0, "A is not published before it commits");

	testenv_exec(late, "COMMIT");
	cr_expect(topic_wait_key(&topic, order_a, 15000), "A is published after its late commit");
	cr_expect(orders_wait_drained(db, 5000), "A is marked published");
	expect_message_matches_row(order_a);
	expect_message_matches_row(order_b);
	PQfinish(late);
	free(order_a);
	free(order_b);
	stop_cleanly();
}

Test(relay, delivers_every_order_admitted_while_the_broker_was_down)
{
	start_relay(&relay, NULL);
	char *first = orders_admit(db, "before-outage");
	cr_assert(topic_wait_key(&topic, first, 15000));

	kill(broker.pid, SIGUSR1);
	cr_assert(testenv_wait_log(&broker, "all brokers are down", 5000));
	enum { N = 20 };
	char *ids[N];
	for (int i = 0; i < N; i++) {
		char customer[32];
		snprintf(customer, sizeof(customer), "outage-%d", i);
		ids[i] = orders_admit(db, customer);
	}
	cr_assert(testenv_wait_log(&relay, "broker unreachable", 30000),
		  "the relay says the broker is gone; see %s", relay.log_path);
	cr_expect_gt(orders_pending(db), 0, "rows wait in the outbox during the outage");

	kill(broker.pid, SIGUSR2);
	cr_assert(testenv_wait_log(&relay, "broker reachable again", 40000), "the relay recovers; see %s",
		  relay.log_path);
	cr_assert(orders_wait_drained(db, 30000), "every row is published after the outage");
	for (int i = 0; i < N; i++) {
		cr_expect(topic_wait_key(&topic, ids[i], 15000), "order %d arrived after the outage", i);
		free(ids[i]);
	}
	cr_expect_eq(testenv_count_log(&relay, "broker unreachable"), 1, "the outage is logged once");
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	free(first);
	stop_cleanly();
}

Test(relay, a_relay_killed_before_marking_republishes_with_the_same_ce_id)
{
	start_relay(&relay, NULL);
	/* a first order warms the producer up (metadata, producer id) */
	char *warm = orders_admit(db, "warm-up");
	cr_assert(topic_wait_key(&topic, warm, 15000));
	cr_assert(orders_wait_drained(db, 5000));
	/* a slow broker: produce requests are applied, their acknowledgements come 3 s late */
	kill(broker.pid, SIGHUP);
	cr_assert(testenv_wait_log(&broker, "brokers are slow", 5000));
	enum { N = 10 };
	char *ids[N];
	testenv_exec(db, "BEGIN");
	for (int i = 0; i < N; i++)
		ids[i] = orders_insert(db, "killed", NULL);
	testenv_exec(db, "COMMIT");
	cr_assert(testenv_wait_log(&relay, produced_ten(), 10000), "the relay took the batch; see %s",
		  relay.log_path);
	/* let the produce request reach the broker (its acknowledgement takes 3 s), so the
	 * messages are on the topic but not marked: the restarted relay sends them again */
	testenv_sleep_ms(500);
	testenv_stop(&relay, SIGKILL);
	cr_assert_eq(orders_pending(db), N, "killed between producing and marking: nothing was marked");

	kill(broker.pid, SIGHUP);
	cr_assert(testenv_wait_log(&broker, "brokers are fast again", 5000));
	/* the first copies, from the killed relay: without them the test would prove nothing */
	for (int i = 0; i < N; i++)
		cr_assert(topic_wait_key(&topic, ids[i], 15000),
			  "order %d, sent by the killed relay, is on the topic before the restart", i);
	topic_read(&topic, 300);
	cr_assert_eq(topic.n, 1 + N, "the warm-up order and one copy of each of the %d (got %d)", N, topic.n);

	start_relay(&relay, NULL);
	cr_assert(orders_wait_drained(db, 20000), "the restarted relay publishes every row");
	/* the restarted relay must send every row again: marking them without sending would lose
	 * any the killed relay had not got onto the topic */
	cr_expect(topic_wait_count(&topic, 1 + 2 * N, 15000), "every order is sent again (%d of %d messages)",
		  topic.n, 1 + 2 * N);
	topic_read(&topic, 300);
	cr_expect_eq(topic.n, 1 + 2 * N, "no more than that (got %d)", topic.n);
	for (int i = 0; i < N; i++) {
		char *event_id = strdup(ids[i]);
		int copies = 0;
		for (int m = 0; m < topic.n; m++) {
			if (strcmp(topic.msgs[m].key, ids[i]) != 0)
				continue;
			copies++;
			cr_expect_str_eq(topic.msgs[m].ce_id ? topic.msgs[m].ce_id : "", event_id,
					 "order %d: every copy carries the outbox row's event id as ce_id",
					 i);
		}
		cr_expect_eq(copies, 2,
			     "order %d: once from the killed relay, once from the restarted one (%d)", i,
			     copies);
		free(event_id);
		free(ids[i]);
	}
	cr_expect_eq(testenv_count_log(&relay, produced_ten()), 1,
		     "the restarted relay produces the 10 unconfirmed events; see %s", relay.log_path);
	free(warm);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	stop_cleanly();
}

Test(relay, two_relays_at_once_publish_each_order_once)
{
	const char *small_batches[] = {"--batch-size", "25", NULL};
	start_relay(&relay, small_batches);
	start_second_relay(&relay2, small_batches);
	enum { ROUNDS = 20, PER = 25, N = ROUNDS * PER };
	for (int r = 0; r < ROUNDS; r++) {
		testenv_exec(db, "BEGIN");
		for (int i = 0; i < PER; i++)
			free(orders_insert(db, "two-relays", NULL));
		testenv_exec(db, "COMMIT");
	}
	cr_assert(orders_wait_drained(db, 30000), "both relays together publish everything");
	cr_assert(topic_wait_count(&topic, N, 15000), "%d messages arrive (got %d)", N, topic.n);
	topic_read(&topic, 1500);
	cr_expect_eq(topic.n, N, "no duplicates: %d messages for %d orders", topic.n, N);
	PGresult *res = PQexec(db, "SELECT id::text FROM orders");
	cr_assert_eq(PQntuples(res), N);
	for (int i = 0; i < N; i++)
		cr_expect_eq(topic_count_key(&topic, PQgetvalue(res, i, 0), NULL), 1);
	PQclear(res);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	cr_expect_eq(testenv_stop(&relay2, SIGTERM), 0);
	stop_cleanly();
}

Test(relay, replay_republishes_published_rows_with_the_same_ce_id)
{
	start_relay(&relay, NULL);
	char *ids[3];
	for (int i = 0; i < 3; i++)
		ids[i] = orders_admit(db, "replayed");
	cr_assert(topic_wait_count(&topic, 3, 15000));
	cr_assert(orders_wait_drained(db, 5000));
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	char *pending = orders_roll_back(db, "never");

	const char *future[] = {"--replay", "--since", "2999-01-01T00:00:00Z", NULL};
	testenv_spawn(&relay2, "checkout-relay",
		      (const char *[]){"--database-url", conninfo, "--kafka-brokers", bootstrap, future[0],
				       future[1], future[2], NULL},
		      NULL);
	cr_expect_eq(testenv_stop(&relay2, 0), 0, "replay exits 0; see %s", relay2.log_path);
	cr_expect(testenv_wait_log(&relay2, "replayed 0 events", 1000), "nothing is that recent; see %s",
		  relay2.log_path);

	testenv_spawn(&relay2, "checkout-relay",
		      (const char *[]){"--database-url", conninfo, "--kafka-brokers", bootstrap, "--replay",
				       "--since", "2000-01-01T00:00:00Z", NULL},
		      NULL);
	cr_expect_eq(testenv_stop(&relay2, 0), 0, "replay exits 0");
	cr_expect(testenv_wait_log(&relay2, "replayed 3 events", 1000), "see %s", relay2.log_path);
	cr_assert(topic_wait_count(&topic, 6, 15000), "each order is on the topic twice (got %d)", topic.n);
	for (int i = 0; i < 3; i++) {
		char *event_id = strdup(ids[i]);
		for (int m = 0; m < topic.n; m++)
			if (!strcmp(topic.msgs[m].key, ids[i]))
				cr_expect_str_eq(topic.msgs[m].ce_id, event_id);
		cr_expect_eq(topic_count_key(&topic, ids[i], NULL), 2);
		free(event_id);
		free(ids[i]);
	}
	free(pending);
	stop_cleanly();
}

Test(relay, prunes_published_rows_older_than_the_retention)
{
	if (orders_wal_mode()) {
		stop_cleanly();
		cr_skip_test("the WAL mode keeps no rows to prune");
	}
	char *old = orders_admit(db, "old");
	char *recent = orders_admit(db, "recent");
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "UPDATE outbox SET published_at = now() - interval '3 hours' WHERE aggregate_id = '%s'",
		 old);
	testenv_exec(db, sql);
	const char *retention[] = {"--retention-hours", "2", NULL};
	start_relay(&relay, retention);
	cr_assert(topic_wait_key(&topic, recent, 15000));
	cr_assert(testenv_wait_log(&relay, "pruned 1 published rows", 5000), "see %s", relay.log_path);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE aggregate_id = '%s'", old);
	cr_expect_eq(testenv_query_long(db, sql), 0, "the old published row is gone");
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE aggregate_id = '%s'", recent);
	cr_expect_eq(testenv_query_long(db, sql), 1, "the recent row stays");
	free(old);
	free(recent);
	stop_cleanly();
}

Test(relay, survives_losing_its_database_connection)
{
	start_relay(&relay, NULL);
	char *before = orders_admit(db, "before");
	cr_assert(topic_wait_key(&topic, before, 15000));
	long killed = testenv_query_long(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
					     " WHERE application_name = 'checkout-relay'"
					     " AND datname = current_database()");
	cr_assert_eq(killed, 1, "the relay's session was terminated");
	char *after = orders_admit(db, "after");
	cr_expect(topic_wait_key(&topic, after, 15000), "an order admitted after the loss is published");
	cr_expect(testenv_wait_log(&relay, "database reachable again", 5000), "see %s", relay.log_path);
	cr_expect_eq(testenv_count_log(&relay, "database connection lost"), 1, "logged once");
	free(before);
	free(after);
	stop_cleanly();
}

Test(relay, waits_for_a_database_that_is_not_there_yet)
{
	char name[64], sql[256], url[96], err[512];
	snprintf(name, sizeof(name), "t_relay_late_%d", (int)getpid());
	snprintf(url, sizeof(url), "dbname=%s", name);
	const char *args[] = {"--database-url", url, "--kafka-brokers", bootstrap, NULL};
	testenv_spawn(&relay, "checkout-relay", args, NULL);
	cr_assert(testenv_wait_log(&relay, "the database does not answer yet", 10000), "see %s",
		  relay.log_path);

	/* the database appears migrated, all at once (renamed into place): a relay that found it
	 * before its tables would rightly complain */
	char prep[96];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s_prep", name);
	testenv_exec(db, sql);
	snprintf(prep, sizeof(prep), "dbname=%s_prep", name);
	PGconn *late = testenv_db_connect(prep);
	int applied = 0;
	cr_assert(migrate_run(late, CHECKOUT_MIGRATIONS_DIR, &applied, err, sizeof(err)), "%s", err);
	PQfinish(late);
	snprintf(sql, sizeof(sql), "ALTER DATABASE %s_prep RENAME TO %s", name, name);
	testenv_exec(db, sql);
	late = testenv_db_connect(url);
	orders_seed(late);
	char *id = orders_admit(late, "patient");
	cr_expect(topic_wait_key(&topic, id, 20000), "the order is published once the database is there");
	cr_expect_eq(testenv_count_log(&relay, "the database does not answer yet"), 1,
		     "the wait is logged once");
	cr_expect_eq(testenv_count_log(&relay, "ERROR"), 0, "see %s", relay.log_path);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	orders_drop_slot(late);
	PQfinish(late);
	free(id);
	stop_cleanly();
}

Test(relay, a_refused_message_stays_pending_and_is_sent_again)
{
	/* a mock cluster of our own, so the test can script the broker's answers */
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	cr_assert(rd_kafka_conf_set(conf, "bootstrap.servers", "", err, sizeof(err)) == RD_KAFKA_CONF_OK);
	rd_kafka_t *anchor = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	cr_assert(anchor, "%s", err);
	rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(anchor, 1);
	cr_assert(mcluster);
	cr_assert_eq(rd_kafka_mock_topic_create(mcluster, "orders", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
	snprintf(bootstrap, sizeof(bootstrap), "%s", rd_kafka_mock_cluster_bootstraps(mcluster));
	topic_close(&topic);
	topic_open(&topic, bootstrap);

	start_relay(&relay, NULL);
	char *first = orders_admit(db, "first");
	cr_assert(topic_wait_key(&topic, first, 15000));
	cr_assert(orders_wait_drained(db, 5000));

	/* the next produce request is refused with a permanent error (ApiKey 0 = Produce) */
	rd_kafka_mock_push_request_errors(mcluster, 0, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	char *refused = orders_admit(db, "refused-once");
	cr_assert(testenv_wait_log(&relay, "broker refused messages", 15000), "see %s", relay.log_path);
	cr_expect(topic_wait_key(&topic, refused, 15000), "the refused order is sent again and arrives");
	cr_expect(orders_wait_drained(db, 5000));
	cr_expect(testenv_wait_log(&relay, "broker reachable again, published 1", 5000), "see %s",
		  relay.log_path);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);

	topic_close(&topic);
	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(anchor);
	free(first);
	free(refused);
	stop_cleanly();
}

Test(relay, serves_published_pending_and_oldest_age_as_prometheus_metrics)
{
	char listen[64], url[96];
	int port = testenv_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(url, sizeof(url), "http://%s/metrics", listen);
	const char *args[] = {"--metrics-listen", listen, NULL};
	start_relay(&relay, args);
	cr_assert(testenv_wait_port(port, 5000));
	for (int i = 0; i < 2; i++)
		free(orders_admit(db, "metered"));
	cr_assert(orders_wait_drained(db, 15000));

	bool seen = false;
	struct http_response r = {0};
	for (int i = 0; i < 100 && !seen; i++) {
		http_response_free(&r);
		cr_assert(http_call("GET", url, NULL, NULL, &r));
		seen = r.status == 200 && strstr(r.body, "\ncheckout_relay_published_total 2\n") &&
		       strstr(r.body, "\ncheckout_relay_pending_rows 0\n");
		if (!seen)
			testenv_sleep_ms(50);
	}
	cr_expect(seen, "the metrics count 2 published and 0 pending: %s", r.body);
	cr_expect(strstr(r.body, "# TYPE checkout_relay_oldest_pending_seconds gauge"));
	cr_expect(strstr(r.body, "checkout_relay_delivery_failures_total 0"));
	cr_expect(strstr(r.body, "# TYPE checkout_relay_slot_lag_bytes gauge"), "%s", r.body);
	cr_expect(strstr(r.body, "# TYPE checkout_relay_slot_lag_seconds gauge"), "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	stop_cleanly();
}

Test(relay, a_second_relay_takes_over_within_seconds_when_the_first_dies)
{
	start_relay(&relay, NULL);
	start_second_relay(&relay2, NULL);
	char *before = orders_admit(db, "before-takeover");
	cr_assert(topic_wait_key(&topic, before, 15000));
	cr_assert(orders_wait_drained(db, 5000));

	testenv_stop(&relay, SIGKILL);
	char *after = orders_admit(db, "after-takeover");
	/* a few seconds: the standby tries the slot every second */
	cr_expect(topic_wait_key(&topic, after, 5000), "the second relay publishes within 5 s; see %s",
		  relay2.log_path);
	if (orders_wal_mode())
		cr_expect(testenv_wait_log(&relay2, "taking over", 1000), "see %s", relay2.log_path);
	topic_read(&topic, 300);
	cr_expect_eq(topic_count_key(&topic, before, NULL), 1, "the order from before is not sent again");
	cr_expect_eq(topic_count_key(&topic, after, NULL), 1);
	cr_expect_eq(testenv_stop(&relay2, SIGTERM), 0);
	free(before);
	free(after);
	stop_cleanly();
}

Test(relay, killed_again_and_again_mid_stream_it_only_sends_exact_copies)
{
	const char *small_batches[] = {"--batch-size", "50", NULL};
	enum { TXS = 30, PER = 20, N = TXS * PER, KILLS = 4 };
	start_relay(&relay, small_batches);
	char *warm = orders_admit(db, "warm-up");
	cr_assert(topic_wait_key(&topic, warm, 15000));
	free(warm);
	/* a slow broker (acknowledgements 3 s late): each relay is killed with a batch in flight,
	 * produced and maybe on the topic, never acknowledged to it */
	kill(broker.pid, SIGHUP);
	cr_assert(testenv_wait_log(&broker, "brokers are slow", 5000));
	for (int t = 0; t < TXS; t++) {
		testenv_exec(db, "BEGIN");
		for (int i = 0; i < PER; i++)
			free(orders_insert(db, "stream", NULL));
		testenv_exec(db, "COMMIT");
	}
	for (int k = 0; k < KILLS; k++) {
		testenv_sleep_ms(700);
		testenv_stop(&relay, SIGKILL);
		start_relay(&relay, small_batches);
	}
	kill(broker.pid, SIGHUP);
	cr_assert(testenv_wait_log(&broker, "brokers are fast again", 5000));
	cr_assert(orders_wait_drained(db, 30000), "the last relay publishes everything");
	cr_expect(topic_wait_count(&topic, N + 1, 15000), "at least one message per order (got %d)", topic.n);
	topic_read(&topic, 500);

	/* every order at least once; every message an exact copy of its order's event */
	PGresult *res = PQexec(db, "SELECT id::text FROM orders");
	cr_assert_eq(PQntuples(res), N + 1);
	for (int i = 0; i < N + 1; i++)
		cr_expect_geq(topic_count_key(&topic, PQgetvalue(res, i, 0), NULL), 1,
			      "order %d is on the topic", i);
	PQclear(res);
	int extra = 0;
	for (int m = 0; m < topic.n; m++) {
		const struct topic_msg *msg = &topic.msgs[m];
		const struct topic_msg *first = NULL;
		if (topic_count_key(&topic, msg->key, &first) > 1 && first != msg)
			extra++;
		char *payload = orders_payload(db, msg->key);
		json_t *want = json_loads(payload, 0, NULL);
		json_t *got = json_loads(msg->value, 0, NULL);
		cr_expect(want && got && json_equal(want, got), "message %d is its order's event: %s", m,
			  msg->value);
		cr_expect_str_eq(msg->ce_id ? msg->ce_id : "", msg->key, "message %d: ce_id is the order id",
				 m);
		json_decref(want);
		json_decref(got);
		free(payload);
	}
	cr_log_info("%d orders, %d messages, %d of them redeliveries", N + 1, topic.n, extra);
	cr_expect_gt(extra, 0, "the kills interrupted deliveries (else this test proves nothing)");
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	stop_cleanly();
}

Test(relay, an_invalidated_slot_stops_it_loudly_instead_of_skipping_events)
{
	skip_unless_wal("the outbox mode has no slot");
	/* PostgreSQL invalidates a slot that keeps more WAL than max_slot_wal_keep_size, at a
	 * checkpoint: a tiny limit, a few WAL segments written past the slot, a checkpoint */
	char *lost_order = orders_admit(db, "in-the-lost-wal");
	testenv_exec(db, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
	testenv_query_long(db, "SELECT pg_reload_conf()::int");
	for (int i = 0; i < 4; i++) {
		free(orders_admit(db, "filler"));
		testenv_query_long(db, "SELECT 1 FROM pg_switch_wal()");
	}
	testenv_exec(db, "CHECKPOINT");
	long lost = testenv_query_long(
	    db, "SELECT count(*) FROM pg_replication_slots"
		" WHERE slot_name = 'checkout_' || current_database() AND wal_status = 'lost'");
	testenv_exec(db, "ALTER SYSTEM RESET max_slot_wal_keep_size");
	testenv_query_long(db, "SELECT pg_reload_conf()::int");
	cr_assert_eq(lost, 1, "the slot was invalidated");

	const char *args[] = {"--database-url", conninfo, "--kafka-brokers", bootstrap, NULL};
	testenv_spawn(&relay, "checkout-relay", args, NULL);
	cr_expect_eq(testenv_stop(&relay, 0), 1, "the relay exits 1; see %s", relay.log_path);
	cr_expect_eq(testenv_count_log(&relay, "ERROR"), 1, "one ERROR line; see %s", relay.log_path);
	cr_expect_eq(testenv_count_log(&relay, "was invalidated"), 1, "it says the slot was invalidated");
	cr_expect_eq(testenv_count_log(&relay, "checkout-relay --replay --since"), 1, "and how to recover");
	topic_read(&topic, 300);
	cr_expect_eq(topic.n, 0, "nothing was published");
	/* the recovery the error names: replay, drop the slot (teardown) */
	testenv_spawn(
	    &relay2, "checkout-relay",
	    (const char *[]){"--database-url", conninfo, "--kafka-brokers", bootstrap, "--replay", NULL},
	    NULL);
	cr_expect_eq(testenv_stop(&relay2, 0), 0, "replay exits 0; see %s", relay2.log_path);
	cr_expect(topic_wait_key(&topic, lost_order, 15000), "the order from the lost WAL is replayed");
	free(lost_order);
	stop_cleanly();
}

Test(relay, the_lag_warning_and_the_stats_line_go_on_while_the_broker_is_down)
{
	/* The WAL mode checks its lag while a batch waits for delivery reports; the table mode
	 * between rounds, and a round waits up to 13 s for its reports when the broker is gone. */
	int within_ms = orders_wal_mode() ? 10000 : 30000;
	const char *args[] = {"--lag-warn-seconds", "2", NULL};
	start_relay(&relay, args);
	char *first = orders_admit(db, "before-outage");
	cr_assert(topic_wait_key(&topic, first, 15000));

	kill(broker.pid, SIGUSR1);
	cr_assert(testenv_wait_log(&broker, "all brokers are down", 5000));
	char *late = orders_admit(db, "during-outage");
	/* a batch waits up to 13 s for its delivery reports, and is tried again and again */
	cr_expect(testenv_wait_log(&relay, "behind: events wait to be published", within_ms),
		  "the lag warning comes while the broker is down; see %s", relay.log_path);
	cr_expect(testenv_wait_log(&relay, "published 1 (", within_ms + 5000),
		  "the 10-second line goes on while the broker is down; see %s", relay.log_path);

	kill(broker.pid, SIGUSR2);
	cr_expect(topic_wait_key(&topic, late, 40000), "the order is published after the outage");
	cr_expect(testenv_wait_log(&relay, "caught up", 15000), "the warning ends; see %s", relay.log_path);
	cr_expect_eq(testenv_count_log(&relay, "behind: events wait"), 1, "the warning is logged once");
	free(first);
	free(late);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	stop_cleanly();
}

/* The slot's confirmed position, as text. */
static void slot_lsn(const char *sql, char *out, size_t outlen)
{
	PGresult *res = PQexec(db, sql);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
		  PQresultErrorMessage(res));
	snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
}

Test(relay, an_idle_slot_follows_the_wal_that_others_write)
{
	skip_unless_wal("the outbox mode has no slot");
	start_relay(&relay, NULL);
	char *first = orders_admit(db, "first");
	cr_assert(topic_wait_key(&topic, first, 15000));

	/* WAL with nothing of ours in it: a table of someone else's */
	testenv_exec(db, "CREATE TABLE someone_elses (n int)");
	testenv_exec(db, "INSERT INTO someone_elses SELECT generate_series(1, 20000)");
	char end[64], confirmed[64] = "";
	slot_lsn("SELECT pg_current_wal_lsn()::text", end, sizeof(end));
	const char *sql = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
			  " WHERE slot_name = 'checkout_' || current_database()";
	char caught[256];
	snprintf(caught, sizeof(caught),
		 "SELECT (confirmed_flush_lsn >= '%s')::int FROM pg_replication_slots"
		 " WHERE slot_name = 'checkout_' || current_database()",
		 end);
	bool moved = false;
	for (int waited = 0; waited < 25000 && !moved; waited += 200) {
		moved = testenv_query_long(db, caught) == 1;
		if (!moved)
			testenv_sleep_ms(200);
	}
	slot_lsn(sql, confirmed, sizeof(confirmed));
	cr_expect(moved, "the idle slot's confirmed_flush_lsn %s reached %s, so it pins no WAL", confirmed,
		  end);
	free(first);
	cr_expect_eq(testenv_stop(&relay, SIGTERM), 0);
	stop_cleanly();
}

Test(relay, a_database_without_logical_decoding_gets_one_error_line_naming_wal_level, .timeout = 120)
{
	skip_unless_wal("the outbox mode needs no logical decoding");
	char cmd[1024], url[256];
	int p = testenv_free_port();
	/* under /tmp: as root the cluster belongs to postgres, who may not enter the build tree */
	snprintf(replica_dir, sizeof(replica_dir), "/tmp/checkout-replica-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "%s/tests/relay/replica_cluster.sh start %s %d", CHECKOUT_SOURCE_DIR,
		 replica_dir, p);
	int started = system(cmd);
	if (started != 0) {
		char path[512];
		snprintf(path, sizeof(path), "%s/initdb.log", replica_dir);
		char *why = testenv_read_file(path);
		cr_expect_fail("a cluster with wal_level = replica did not start: %s", why ? why : "");
		free(why);
		replica_stop();
		stop_cleanly();
		cr_assert_fail();
	}
	snprintf(url, sizeof(url), "host=127.0.0.1 port=%d user=postgres dbname=postgres", p);

	const char *args[] = {"--database-url", url, "--kafka-brokers", bootstrap, NULL};
	const char *env[] = {"EVENTS=wal", NULL};
	testenv_spawn(&relay, "checkout-relay", args, env);
	cr_expect_eq(testenv_stop(&relay, 0), 1, "the relay exits 1; see %s", relay.log_path);
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", testenv_free_port());
	const char *server_args[] = {"--database-url", url, "--listen", listen, NULL};
	testenv_spawn(&relay2, "checkout-server", server_args, env);
	cr_expect_eq(testenv_stop(&relay2, 0), 1, "the server exits 1; see %s", relay2.log_path);
	for (struct testenv_proc *proc = &relay; proc; proc = proc == &relay ? &relay2 : NULL) {
		cr_expect_eq(testenv_count_log(proc, "ERROR"), 1, "one ERROR line; see %s", proc->log_path);
		cr_expect_eq(testenv_count_log(proc, "wal_level = replica"), 1, "naming wal_level; see %s",
			     proc->log_path);
		cr_expect_eq(testenv_count_log(proc, "WARN"), 0, "and nothing else to worry about; see %s",
			     proc->log_path);
	}
	replica_stop();
	stop_cleanly();
}
