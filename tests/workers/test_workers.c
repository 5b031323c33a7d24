/* The three workers against the real PostgreSQL and the embedded broker:
 * every admitted order applied exactly once by each, however often it is
 * delivered; poison messages dead-lettered; views equal to the database. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkout/monotonic.h"
#include "orders.h"
#include "smtp_sink.h"
#include "testenv.h"

enum { EMAIL, INVENTORY, ANALYTICS, N_WORKERS };
static const char *const programs[N_WORKERS] = {"checkout-email", "checkout-inventory", "checkout-analytics"};
static const char *const schemas[N_WORKERS] = {"email", "inventory", "analytics"};

static struct testenv_proc broker, workers[N_WORKERS], oneshot;
static struct smtp_sink *sink;

struct env {
	char *db;
	PGconn *conn;
	char bootstrap[256];
	char spool[512];
	rd_kafka_t *producer;
};
static struct env env;

/* Criterion ignores assertions in a suite's .fini: what each test leaves running
 * is stopped, and its exit status checked, at the end of the test itself
 * (testenv_stop_clean: a leak the sanitizer reports at exit fails the test).
 * The .fini stops whatever a test that failed early left behind. */
static void stop_cleanly(void)
{
	for (int i = 0; i < N_WORKERS; i++)
		testenv_stop_clean(&workers[i]);
	testenv_stop_clean(&oneshot);
	if (env.producer)
		rd_kafka_destroy(env.producer);
	env.producer = NULL;
	testenv_stop_clean(&broker);
}

static void teardown(void)
{
	stop_cleanly();
	smtp_sink_stop(sink);
	sink = NULL;
	PQfinish(env.conn);
	free(env.db);
	memset(&env, 0, sizeof(env));
}

TestSuite(workers, .fini = teardown, .timeout = 180);

/* A broker, a fresh database with the catalogue, a producer, an empty spool. */
static void env_start(void)
{
	static int counter;
	snprintf(env.bootstrap, sizeof(env.bootstrap), "%s", testenv_broker_start(&broker));
	env.db = testenv_db_new();
	env.conn = testenv_db_connect(env.db);
	orders_seed_products(env.conn, 1000);
	env.producer = orders_producer_new(env.bootstrap);
	mkdir(CHECKOUT_TEST_TMP, 0755);
	snprintf(env.spool, sizeof(env.spool), "%s/mail-%d-%d", CHECKOUT_TEST_TMP, (int)getpid(), ++counter);
}

/* Start one worker connecting to url (DATABASE_URL), with the test's broker and spool. */
static void spawn_worker_url(int which, const char *url, const char *const *args, const char *extra_env)
{
	char db[400], brokers[300], spool[600];
	snprintf(db, sizeof(db), "DATABASE_URL=%s", url);
	snprintf(brokers, sizeof(brokers), "KAFKA_BROKERS=%s", env.bootstrap);
	snprintf(spool, sizeof(spool), "MAIL_SPOOL=%s", env.spool);
	const char *e[] = {db, brokers, spool, "SUMMARY_SECONDS=1", extra_env, NULL};
	testenv_spawn(&workers[which], programs[which], args, e);
}

/* Start one worker with the test's database, broker and spool. */
static void spawn_worker(int which, const char *const *args, const char *extra_env)
{
	spawn_worker_url(which, env.db, args, extra_env);
}

/* Run tmpl with every '@' replaced by the schema name. */
static long query(const char *tmpl, const char *schema)
{
	char sql[1024];
	size_t used = 0;
	for (const char *p = tmpl; *p && used < sizeof(sql) - 64; p++) {
		if (*p == '@')
			used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s", schema);
		else
			sql[used++] = *p;
	}
	sql[used] = '\0';
	return testenv_query_long(env.conn, sql);
}

/* Poll until the query's value reaches want (or 30 s pass); returns the last value. */
static long wait_value(const char *fmt, const char *schema, long want)
{
	long v = -1;
	for (int waited = 0; waited < 30000; waited += 50) {
		v = query(fmt, schema);
		if (v == want)
			break;
		testenv_sleep_ms(50);
	}
	return v;
}

/* Poll until the log has want lines containing needle; returns the last count. */
static int wait_log_count(const struct testenv_proc *p, const char *needle, int want)
{
	int n = 0;
	for (int waited = 0; waited < 20000; waited += 50) {
		n = testenv_count_log(p, needle);
		if (n >= want)
			break;
		testenv_sleep_ms(50);
	}
	return n;
}

/* Lines saying an order was applied (not skipped, not a warning). */
static int applied_lines(const struct testenv_proc *p)
{
	return testenv_count_log(p, "order=") - testenv_count_log(p, "duplicate event") -
	       testenv_count_log(p, "low stock");
}

static void make_orders(struct test_order *orders, int n, int first, bool insert)
{
	for (int i = 0; i < n; i++) {
		orders_make(&orders[i], first + i);
		if (insert)
			orders_insert(env.conn, &orders[i]);
	}
}

/* The inventory view equals what the checkout database says was sold. */
static void expect_inventory_equals_database(void)
{
	cr_expect_eq(testenv_query_long(
			 env.conn,
			 "SELECT count(*) FROM ("
			 " (SELECT sku, sum(quantity)::bigint, count(*)::bigint FROM order_lines GROUP BY sku"
			 "  EXCEPT SELECT sku, units_sold, orders_seen FROM inventory.stock_view)"
			 " UNION ALL"
			 " (SELECT sku, units_sold, orders_seen FROM inventory.stock_view"
			 "  EXCEPT SELECT sku, sum(quantity)::bigint, count(*)::bigint FROM order_lines"
			 "  GROUP BY sku)) AS diff"),
		     0, "inventory.stock_view (units_sold, orders_seen) per SKU equals order_lines");
	cr_expect_gt(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.stock_view"), 0);
}

/* The analytics figures equal the sums of the admitted orders. */
static void expect_analytics_equals_database(void)
{
	long orders = testenv_query_long(env.conn, "SELECT count(*) FROM orders");
	long revenue = testenv_query_long(env.conn, "SELECT sum(total_cents) FROM orders");
	long units = testenv_query_long(env.conn, "SELECT sum(quantity) FROM order_lines");
	cr_expect_eq(testenv_query_long(env.conn, "SELECT orders FROM analytics.totals"), orders);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT revenue_cents FROM analytics.totals"), revenue);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT units FROM analytics.totals"), units);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT sum(orders) FROM analytics.minutes"), orders);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT sum(revenue_cents) FROM analytics.minutes"),
		     revenue);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT sum(units) FROM analytics.skus"), units);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT sum(revenue_cents) FROM analytics.skus"), revenue);
}

static int count_spool_files(void)
{
	int n = 0;
	DIR *d = opendir(env.spool);
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Every order's confirmation is in the spool, addressed and totalled. */
static void expect_confirmations(const struct test_order *orders, int n)
{
	cr_expect_eq(count_spool_files(), n, "one message file per order in %s", env.spool);
	for (int i = 0; i < n; i++) {
		char path[700], to[100], total[64];
		snprintf(path, sizeof(path), "%s/%s.eml", env.spool, orders[i].event_id);
		char *text = testenv_read_file(path);
		cr_assert(text, "confirmation %s exists", path);
		snprintf(to, sizeof(to), "To: <%s>\r\n", orders[i].email);
		snprintf(total, sizeof(total), " %lld.%02lld", orders[i].total_cents / 100,
			 orders[i].total_cents % 100);
		cr_expect(strstr(text, to), "%s is addressed to %s", path, orders[i].email);
		cr_expect(strstr(text, "\r\n\r\n"), "%s has a header and a body", path);
		/* the "Total" line ends with the order's total */
		const char *line = strstr(text, "Total ");
		size_t len = line ? strcspn(line, "\r") : 0;
		cr_expect(line && len >= strlen(total) &&
			      !strncmp(line + len - strlen(total), total, strlen(total)),
			  "%s shows the total%s", path, total);
		cr_expect(strstr(text, orders[i].order_id), "%s names the order", path);
		/* the subject names the order by its random tail, as the log lines do */
		char subject[100];
		snprintf(subject, sizeof(subject), "\r\nSubject: Your order %s is confirmed\r\n",
			 orders[i].order_id + strlen(orders[i].order_id) - 8);
		cr_expect(strstr(text, subject), "%s has the subject%s", path, subject);
		free(text);
	}
}

/* Every line of a JSON-format log is a JSON object; counts those whose msg has needle. */
static int count_json_lines(const struct testenv_proc *p, const char *needle)
{
	char *text = testenv_read_file(p->log_path), *save = NULL;
	int n = 0;
	cr_assert(text);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		cr_expect(json_is_object(j), "a JSON log line: %s", line);
		const char *msg = json_string_value(json_object_get(j, "msg"));
		const char *ctx = json_string_value(json_object_get(j, "context"));
		if (msg && strstr(msg, needle) && ctx && !strncmp(ctx, "order=", 6))
			n++;
		json_decref(j);
	}
	free(text);
	return n;
}

Test(workers, each_worker_applies_every_order_exactly_once_when_every_event_is_delivered_twice)
{
	enum { N = 24 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 0, true);
	/* every event twice: the second copy follows the first on the same partition */
	for (int copy = 0; copy < 2; copy++)
		for (int i = 0; i < N; i++)
			orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);

	spawn_worker(EMAIL, NULL, "LOG_FORMAT=json");
	spawn_worker(INVENTORY, NULL, "LOW_STOCK_THRESHOLD=990");
	spawn_worker(ANALYTICS, NULL, NULL);
	for (int w = 0; w < N_WORKERS; w++)
		cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", schemas[w], N), N,
			     "%s applied every event", programs[w]);
	for (int w = 0; w < N_WORKERS; w++)
		cr_expect_eq(wait_log_count(&workers[w], "duplicate event", N), N,
			     "%s logged each second copy as a duplicate", programs[w]);

	expect_confirmations(orders, N);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM email.sent"), N);
	expect_inventory_equals_database();
	expect_analytics_equals_database();

	/* one readable line per order */
	cr_expect_eq(count_json_lines(&workers[EMAIL], "sent confirmation to customer"), N);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "1000 left after this order"), N);
	cr_expect_eq(testenv_count_log(&workers[ANALYTICS], "running: "), N);
	char needle[128];
	snprintf(needle, sizeof(needle), "order=%s p", orders[0].order_id + strlen(orders[0].order_id) - 8);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], needle), 2, "applied once, skipped once: %s",
		     needle);
	cr_expect(testenv_wait_log(&workers[ANALYTICS], "last 1 s:", 5000), "analytics logs a summary line");
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "low stock"), 0, "no SKU crossed 990 yet");

	/*
	 * An order takes sku-2 from 992 to 989: across the threshold of 990. The
	 * event says so; the catalogue, which the view does not read, says
	 * otherwise (it could be a restock since, or a database the worker
	 * cannot see).
	 */
	struct test_order low;
	orders_make(&low, 1);
	low.n_items = 1;
	low.items[0].quantity = 3;
	low.items[0].stock_after = 989;
	low.units = 3;
	low.total_cents = 3 * low.items[0].unit_price_cents;
	/* later than the orders above, whose times have whole seconds */
	time_t later = time(NULL) + 2;
	strftime(low.created_at, sizeof(low.created_at), "%Y-%m-%dT%H:%M:%SZ", gmtime(&later));
	cr_assert_str_eq(low.items[0].sku, "sku-2");
	orders_insert(env.conn, &low);
	testenv_exec(env.conn, "UPDATE products SET stock = 5000 WHERE sku = 'sku-2'");
	orders_produce(env.producer, &low);
	orders_flush(env.producer);
	cr_expect(
	    testenv_wait_log(&workers[INVENTORY], "low stock: sku-2 down to 989 (threshold 990)", 20000),
	    "the inventory log warns once the stock crosses the threshold, by the event alone");

	/* an older order of sku-2 whose event comes late must not bring the view's stock back up */
	struct test_order late;
	orders_make(&late, 2);
	late.n_items = 1;
	late.items[0] = low.items[0];
	late.items[0].quantity = 1;
	late.items[0].stock_after = 995;
	late.units = 1;
	late.total_cents = late.items[0].unit_price_cents;
	snprintf(late.created_at, sizeof(late.created_at), "2000-01-01T00:00:00Z");
	orders_insert(env.conn, &late);
	orders_produce(env.producer, &late);
	orders_flush(env.producer);
	for (int w = 0; w < N_WORKERS; w++)
		cr_expect_eq(wait_value("SELECT count(*) FROM @.inbox", schemas[w], N + 2), N + 2);
	cr_expect_eq(
	    testenv_query_long(env.conn, "SELECT stock FROM inventory.stock_view WHERE sku = 'sku-2'"), 989,
	    "the view keeps the stock of the latest order, whatever order its events came in");

	/* SIGTERM: finish, commit, leave the group, exit 0 */
	for (int w = 0; w < N_WORKERS; w++) {
		cr_expect_eq(testenv_stop(&workers[w], SIGTERM), 0, "%s exits 0 on SIGTERM", programs[w]);
		cr_expect_eq(testenv_count_log(&workers[w], "left the group"), 1);
	}

	/* --totals prints the figures and exits 0 */
	char db[256];
	snprintf(db, sizeof(db), "DATABASE_URL=%s", env.db);
	const char *args[] = {"--totals", NULL}, *e[] = {db, NULL};
	testenv_spawn(&oneshot, "checkout-analytics", args, e);
	int status = -1;
	for (int i = 0; i < 500 && !testenv_exited(&oneshot, &status); i++)
		testenv_sleep_ms(20);
	cr_expect_eq(status, 0, "checkout-analytics --totals exits 0");
	snprintf(needle, sizeof(needle), "orders   %d", N + 2);
	cr_expect_eq(testenv_count_log(&oneshot, needle), 1, "--totals prints '%s'", needle);
	cr_expect_eq(testenv_count_log(&oneshot, "sku-"), ORDERS_SKUS, "--totals lists the SKUs");
	stop_cleanly();
}

Test(workers, a_worker_killed_before_storing_offsets_applies_each_order_once_after_restart)
{
	enum { N = 40, FIRST = 30 };
	struct test_order orders[N];
	long before[N_WORKERS];
	env_start();
	make_orders(orders, N, 100, true);
	for (int i = 0; i < FIRST; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);

	spawn_worker(EMAIL, NULL, NULL);
	spawn_worker(INVENTORY, NULL, NULL);
	spawn_worker(ANALYTICS, NULL, NULL);
	/* kill as soon as they are busy: the offsets of what they applied are
	 * committed at most once a second, so some are not yet */
	for (int w = 0; w < N_WORKERS; w++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT count(*) >= 5 FROM %s.inbox", schemas[w]);
		long v = 0;
		for (int waited = 0; waited < 30000 && v == 0; waited += 10) {
			PGresult *res = PQexec(env.conn, sql);
			v = PQresultStatus(res) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(res, 0, 0), "t");
			PQclear(res);
			if (!v)
				testenv_sleep_ms(10);
		}
		cr_assert(v, "%s started applying", programs[w]);
		testenv_stop(&workers[w], SIGKILL);
		before[w] = query("SELECT count(*) FROM @.inbox", schemas[w]);
	}
	for (int i = FIRST; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);

	struct testenv_proc first[N_WORKERS];
	memcpy(first, workers, sizeof(first));
	spawn_worker(EMAIL, NULL, NULL);
	spawn_worker(INVENTORY, NULL, NULL);
	spawn_worker(ANALYTICS, NULL, NULL);
	for (int w = 0; w < N_WORKERS; w++)
		cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", schemas[w], N), N,
			     "%s applied every event", programs[w]);
	int redelivered = 0;
	for (int w = 0; w < N_WORKERS; w++) {
		/* the second run applies exactly what the first had not committed
		 * (its line is written just after the commit: give the last one a moment) */
		int applied = 0;
		for (int waited = 0; waited < 10000; waited += 50) {
			applied = applied_lines(&workers[w]);
			if (applied >= N - before[w])
				break;
			testenv_sleep_ms(50);
		}
		cr_expect_eq(applied, N - before[w], "%s: %ld applied before the kill, the rest after",
			     programs[w], before[w]);
		/* a kill between the commit and its log line loses at most that line */
		int first_applied = applied_lines(&first[w]);
		cr_expect(first_applied == before[w] || first_applied == before[w] - 1,
			  "%s: %d lines for %ld applied before the kill", programs[w], first_applied,
			  before[w]);
		redelivered += testenv_count_log(&workers[w], "duplicate event");
	}
	cr_log_info("events redelivered after the SIGKILL and skipped as duplicates: %d", redelivered);
	cr_expect_gt(redelivered, 0, "the kill came before some offsets were committed");
	expect_confirmations(orders, N);
	expect_inventory_equals_database();
	expect_analytics_equals_database();
	stop_cleanly();
}

Test(workers, poison_messages_are_dead_lettered_and_the_events_after_them_applied)
{
	enum { N = 4, BAD = 4 };
	struct test_order orders[N], bad_time;
	char bad_ids[BAD][37];
	env_start();
	make_orders(orders, N, 200, true);
	for (int i = 0; i < BAD; i++)
		orders_uuid(bad_ids[i]);
	/* well-formed to the parser, refused by the database: the time is no time */
	orders_make(&bad_time, 250);
	snprintf(bad_time.created_at, sizeof(bad_time.created_at), "the day after tomorrow");
	char *bad_time_json = orders_json(&bad_time);
	/* one key for all: one partition, so the good ones come after the bad ones */
	const char *key = "00000000-0000-4000-8000-000000000001";
	char *good[N];
	for (int i = 0; i < N; i++)
		good[i] = orders_json(&orders[i]);
	orders_produce_raw(env.producer, key, good[0], orders[0].event_id, "order.admitted");
	orders_produce_raw(env.producer, key, "this is { not JSON", bad_ids[0], "order.admitted");
	orders_produce_raw(env.producer, key, good[1], orders[1].event_id, "order.admitted");
	orders_produce_raw(env.producer, key, "{\"order_id\":\"00000000-0000-4000-8000-000000000001\"}",
			   bad_ids[1], "order.admitted");
	orders_produce_raw(env.producer, key, good[2], orders[2].event_id, "order.admitted");
	orders_produce_raw(env.producer, key, good[2], bad_ids[2], "order.cancelled");
	orders_produce_raw(env.producer, key, bad_time_json, bad_ids[3], "order.admitted");
	orders_produce_raw(env.producer, key, good[3], orders[3].event_id, "order.admitted");
	orders_flush(env.producer);
	for (int i = 0; i < N; i++)
		free(good[i]);
	free(bad_time_json);

	for (int w = 0; w < N_WORKERS; w++)
		spawn_worker(w, NULL, NULL);
	for (int w = 0; w < N_WORKERS; w++) {
		cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", schemas[w], N), N,
			     "%s applied the good ones", programs[w]);
		cr_expect_eq(wait_value("SELECT count(*) FROM @.dead_letters", schemas[w], BAD), BAD,
			     "%s recorded a dead letter for each bad message", programs[w]);
		cr_expect_eq(
		    query("SELECT count(*) FROM @.dead_letters WHERE value = 'this is { not JSON'::bytea "
			  "AND reason LIKE '%not JSON%' AND key = "
			  "convert_to('00000000-0000-4000-8000-000000000001', 'UTF8')",
			  schemas[w]),
		    1, "%s kept the raw bytes of the non-JSON message", programs[w]);
		cr_expect_eq(
		    query("SELECT count(*) FROM @.dead_letters WHERE reason LIKE '%unknown ce_type%'",
			  schemas[w]),
		    1);
		cr_expect_eq(
		    query("SELECT count(*) FROM @.dead_letters WHERE reason LIKE '%missing%'", schemas[w]),
		    1);
		cr_expect_eq(query("SELECT count(*) FROM @.dead_letters WHERE reason LIKE 'cannot apply: %'"
				   " AND reason LIKE '%the day after tomorrow%'",
				   schemas[w]),
			     1, "%s dead-lettered the event the database refused, with its reason",
			     programs[w]);
		cr_expect_eq(wait_log_count(&workers[w], "dead letter", BAD), BAD,
			     "%s logged each bad message", programs[w]);
		cr_expect(!testenv_exited(&workers[w], NULL), "%s is still running", programs[w]);
	}
	/* the log names where the bad message sits: pP@OFFSET */
	long partition = testenv_query_long(env.conn, "SELECT min(partition) FROM email.dead_letters");
	long offset = testenv_query_long(env.conn, "SELECT min(\"offset\") FROM email.dead_letters");
	char where[64];
	snprintf(where, sizeof(where), "p%ld@%ld bad message skipped", partition, offset);
	cr_expect_eq(testenv_count_log(&workers[EMAIL], where), 1, "the log says %s", where);
	expect_confirmations(orders, N);
	expect_analytics_equals_database();
	stop_cleanly();
}

Test(workers, inventory_and_analytics_rebuilds_end_equal_to_the_database)
{
	enum { N = 30 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 300, true);
	for (int copy = 0; copy < 2; copy++)
		for (int i = 0; i < N; i++)
			orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);

	spawn_worker(INVENTORY, NULL, NULL);
	spawn_worker(ANALYTICS, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "analytics", N), N);
	cr_assert_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	cr_assert_eq(testenv_stop(&workers[ANALYTICS], SIGTERM), 0);
	expect_inventory_equals_database();
	expect_analytics_equals_database();

	/* the views are thrown away (and damaged for good measure), then rebuilt */
	testenv_exec(env.conn, "UPDATE inventory.stock_view SET units_sold = units_sold + 7");
	testenv_exec(env.conn, "DELETE FROM inventory.stock_view WHERE sku = 'sku-1'");
	testenv_exec(env.conn, "UPDATE analytics.totals SET orders = 1, revenue_cents = 5");
	testenv_exec(env.conn, "DELETE FROM analytics.skus WHERE sku = 'sku-2'");
	const char *args[] = {"--rebuild", NULL};
	spawn_worker(INVENTORY, args, NULL);
	spawn_worker(ANALYTICS, args, NULL);
	for (int w = INVENTORY; w <= ANALYTICS; w++) {
		int status = -1;
		for (int i = 0; i < 1500 && !testenv_exited(&workers[w], &status); i++)
			testenv_sleep_ms(20);
		cr_assert_eq(status, 0, "--rebuild ends by itself with 0; see %s", workers[w].log_path);
		cr_expect_eq(testenv_count_log(&workers[w], "rebuild done: 30 events applied"), 1);
		cr_expect_eq(testenv_count_log(&workers[w], "duplicate event"), N,
			     "the second copies are skipped");
	}
	expect_inventory_equals_database();
	expect_analytics_equals_database();
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.inbox"), N);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM analytics.inbox"), N);

	/* the email worker has no view to rebuild: it says so */
	spawn_worker(EMAIL, args, NULL);
	int status = -1;
	for (int i = 0; i < 500 && !testenv_exited(&workers[EMAIL], &status); i++)
		testenv_sleep_ms(20);
	cr_expect_eq(status, 1);
	cr_expect_eq(testenv_count_log(&workers[EMAIL], "--rebuild is only for"), 1);
	stop_cleanly();
}

Test(workers, a_database_outage_is_waited_out_and_the_same_event_retried)
{
	enum { N = 10 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 400, true);
	for (int i = 0; i < N / 2; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	spawn_worker(ANALYTICS, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "analytics", N / 2), N / 2);

	/* cut the worker's database connection under it */
	cr_assert_gt(testenv_query_long(env.conn,
					"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
					"WHERE datname = current_database() AND pid <> pg_backend_pid()"),
		     0);
	for (int i = N / 2; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "analytics", N), N);
	cr_expect(testenv_wait_log(&workers[ANALYTICS], "database unreachable, retrying", 1000));
	cr_expect_eq(testenv_count_log(&workers[ANALYTICS], "database reachable again"), 1);
	cr_expect_eq(wait_log_count(&workers[ANALYTICS], "running: ", N), N);
	expect_analytics_equals_database();
	stop_cleanly();
}

Test(workers, a_broker_outage_is_waited_out_and_nothing_is_lost)
{
	enum { N = 10 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 500, true);
	for (int i = 0; i < N / 2; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	spawn_worker(INVENTORY, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N / 2), N / 2);

	kill(broker.pid, SIGUSR1); /* every broker down */
	cr_expect(testenv_wait_log(&workers[INVENTORY], "WARN  inventory kafka", 30000),
		  "the worker logs that the broker is unreachable");
	for (int i = N / 2; i < N; i++)
		orders_produce(env.producer, &orders[i]); /* queued in the producer meanwhile */
	testenv_sleep_ms(500);
	cr_expect(!testenv_exited(&workers[INVENTORY], NULL), "the worker keeps waiting");
	kill(broker.pid, SIGUSR2);
	orders_flush(env.producer);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N);
	expect_inventory_equals_database();
	cr_expect_eq(wait_log_count(&workers[INVENTORY], "1000 left after this order", N), N);
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	stop_cleanly();
}

Test(workers, a_worker_told_to_stop_while_the_broker_is_gone_stops)
{
	enum { N = 3 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 600, true);
	for (int i = 0; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	spawn_worker(ANALYTICS, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "analytics", N), N);

	rd_kafka_destroy(env.producer);
	env.producer = NULL;
	testenv_stop(&broker, SIGKILL); /* gone for good, as when everything is stopped at once */
	/* it cannot commit or leave the group, and must not wait for that forever
	 * (testenv_stop gives it 10 s, then kills it: 137) */
	cr_expect_eq(testenv_stop(&workers[ANALYTICS], SIGTERM), 0);
	cr_expect(testenv_wait_log(&workers[ANALYTICS], "could not leave the group", 0));
	/* what it applied stays applied, once */
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM analytics.inbox"), N);
	stop_cleanly();
}

Test(workers, email_also_delivers_by_smtp_and_retries_a_temporary_refusal)
{
	enum { N = 5, REFUSALS = 2 };
	struct test_order orders[N];
	int port = 0;
	char url[64];
	env_start();
	make_orders(orders, N, 600, true);
	for (int i = 0; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	sink = smtp_sink_start(&port, REFUSALS);
	snprintf(url, sizeof(url), "SMTP_URL=smtp://127.0.0.1:%d", port);
	spawn_worker(EMAIL, NULL, url);

	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "email", N), N);
	cr_expect_eq(smtp_sink_count(sink), N, "one SMTP message per order");
	for (int i = 0; i < N; i++) {
		char id[100], rcpt[100];
		snprintf(id, sizeof(id), "Message-ID: <%s@checkout.example>", orders[i].event_id);
		snprintf(rcpt, sizeof(rcpt), "RCPT <%s>\n", orders[i].email);
		int found = 0;
		for (int m = 0; m < smtp_sink_count(sink); m++) {
			char *text = smtp_sink_message(sink, m);
			found += text && strstr(text, id) && !strncmp(text, rcpt, strlen(rcpt));
			free(text);
		}
		cr_expect_eq(found, 1, "the SMTP server got %s for %s once", id, orders[i].email);
	}
	/* the first order was refused REFUSALS times and retried until accepted: one line says so */
	cr_expect_eq(testenv_count_log(&workers[EMAIL], "cannot apply yet, retrying: SMTP delivery"), 1,
		     "a temporary refusal is logged once per message, not once per attempt");
	cr_expect_eq(wait_log_count(&workers[EMAIL], ".eml, and by SMTP)", N), N);
	expect_confirmations(orders, N);
	cr_expect_eq(testenv_stop(&workers[EMAIL], SIGTERM), 0);
	stop_cleanly();
}

/*
 * Faults of the database that are not the message's fault: the worker waits
 * them out on the same event instead of dead-lettering it. They are staged on
 * the inventory worker, connected as a role of its own so that the test can
 * take privileges away from it and give them back.
 */

/*
 * A login role with what checkout-inventory needs, its own schema and
 * nothing of the checkout's (no public.products: the view reads the topic
 * only); its DATABASE_URL into url.
 */
static void worker_role_new(char role[64], char url[400])
{
	static int counter;
	char sql[1024];
	snprintf(role, 64, "inventory_worker_%d_%d", (int)getpid(), ++counter);
	/* inventory.dead_letters was made LIKE email.dead_letters: it takes its ids from
	 * email's sequence */
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE %s LOGIN PASSWORD 'worker';"
		 "GRANT USAGE ON SCHEMA inventory, email TO %s;"
		 "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA inventory TO %s;"
		 "GRANT USAGE ON ALL SEQUENCES IN SCHEMA inventory, email TO %s;",
		 role, role, role, role);
	testenv_exec(env.conn, sql);
	snprintf(url, 400, "%s user=%s password=worker", env.db, role);
}

/* Run tmpl with every '@' replaced by role. */
static void exec_for_role(const char *tmpl, const char *role)
{
	char sql[512];
	size_t used = 0;
	for (const char *p = tmpl; *p && used < sizeof(sql) - 80; p++) {
		if (*p == '@')
			used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s", role);
		else
			sql[used++] = *p;
	}
	sql[used] = '\0';
	testenv_exec(env.conn, sql);
}

/* What a stuck worker shows: it retries (one line), applies nothing more, dead-letters nothing. */
static void expect_stuck(const struct testenv_proc *p, long applied, const char *reason)
{
	cr_assert(testenv_wait_log(p, "cannot apply yet, retrying", 20000), "%s logs that it retries; see %s",
		  p->name, p->log_path);
	testenv_sleep_ms(2500); /* several tries (backoff from 100 ms) */
	cr_assert_eq(testenv_count_log(p, reason), 1, "the reason (%s) is logged once, not per try; see %s",
		     reason, p->log_path);
	cr_expect_eq(testenv_count_log(p, "cannot apply yet, retrying"), 1, "one retry line; see %s",
		     p->log_path);
	cr_assert_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 0,
		     "nothing is dead-lettered; see %s", p->log_path);
	cr_assert_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.inbox"), applied,
		     "nothing more is applied meanwhile");
	cr_expect(!testenv_exited((struct testenv_proc *)p, NULL), "%s keeps running", p->name);
}

Test(workers, a_read_only_session_is_retried_not_dead_lettered_and_every_order_applied_once_when_writable)
{
	enum { N = 7 };
	struct test_order orders[N];
	char role[64], url[400];
	env_start();
	worker_role_new(role, url);
	/* what a worker sees on a standby after a failover */
	exec_for_role("ALTER ROLE @ SET default_transaction_read_only = on", role);
	make_orders(orders, N, 700, true);
	for (int i = 0; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	spawn_worker_url(INVENTORY, url, NULL, NULL);

	expect_stuck(&workers[INVENTORY], 0, "read-only transaction");
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recording it failed"), 0);

	/* the writable database is back: new sessions are read-write */
	exec_for_role("ALTER ROLE @ RESET default_transaction_read_only", role);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N,
		     "every order applied; see %s", workers[INVENTORY].log_path);
	cr_expect_eq(wait_log_count(&workers[INVENTORY], "left after this order", N), N,
		     "one line per order");
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recovered after"), 1,
		     "the end of the retries is logged once");
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 0);
	expect_inventory_equals_database();
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	stop_cleanly();
}

Test(workers, a_revoked_permission_is_waited_out_across_a_restart_and_nothing_is_dead_lettered)
{
	enum { N = 8, FIRST = 2 };
	struct test_order orders[N];
	char role[64], url[400];
	env_start();
	worker_role_new(role, url);
	make_orders(orders, N, 800, true);
	for (int i = 0; i < FIRST; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	spawn_worker_url(INVENTORY, url, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", FIRST), FIRST);

	/* 42501 on the view table: a migration gone wrong, a privilege revoked by mistake */
	exec_for_role("REVOKE INSERT ON inventory.stock_view FROM @", role);
	for (int i = FIRST; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	expect_stuck(&workers[INVENTORY], FIRST, "permission denied");

	/* told to stop while retrying, it stops at once, without storing the event's offset */
	long long t0 = monotonic_ms();
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0, "exits 0 on SIGTERM while retrying");
	long long took = monotonic_ms() - t0;
	cr_expect_lt(took, 3000, "stopped within 3 s while retrying (took %lld ms)", took);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "left the group"), 1);

	struct testenv_proc first = workers[INVENTORY];
	spawn_worker_url(INVENTORY, url, NULL, NULL);
	expect_stuck(&workers[INVENTORY], FIRST, "permission denied");

	exec_for_role("GRANT INSERT ON inventory.stock_view TO @", role);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N,
		     "the events the first run could not apply are applied after the grant; see %s",
		     workers[INVENTORY].log_path);
	cr_expect_eq(wait_log_count(&workers[INVENTORY], "left after this order", N - FIRST), N - FIRST);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recovered after"), 1);
	cr_expect_eq(testenv_count_log(&first, "left after this order"), FIRST);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 0);
	expect_inventory_equals_database();
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	stop_cleanly();
}

Test(workers, a_statement_timeout_is_retried_until_the_lock_is_released)
{
	enum { N = 5, FIRST = 1 };
	struct test_order orders[N];
	char role[64], url[400];
	env_start();
	worker_role_new(role, url);
	exec_for_role("ALTER ROLE @ SET statement_timeout = 300", role);
	make_orders(orders, N, 900, true);
	orders_produce(env.producer, &orders[0]);
	orders_flush(env.producer);
	spawn_worker_url(INVENTORY, url, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", FIRST), FIRST);

	/* a long migration holds the view table: every try runs into the timeout (57014) */
	PGconn *locker = testenv_db_connect(env.db);
	testenv_exec(locker, "BEGIN");
	testenv_exec(locker, "LOCK TABLE inventory.stock_view IN ACCESS EXCLUSIVE MODE");
	for (int i = FIRST; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	expect_stuck(&workers[INVENTORY], FIRST, "statement timeout");

	testenv_exec(locker, "COMMIT");
	PQfinish(locker);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N, "see %s",
		     workers[INVENTORY].log_path);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recovered after"), 1);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 0);
	expect_inventory_equals_database();
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	stop_cleanly();
}

Test(workers, an_unparseable_message_is_dead_lettered_and_waits_until_its_dead_letter_is_recorded)
{
	enum { N = 4 };
	struct test_order orders[N];
	char role[64], url[400], *good[N];
	/* one key for all: one partition, in this order */
	const char *key = "00000000-0000-4000-8000-000000000002";
	env_start();
	worker_role_new(role, url);
	make_orders(orders, N, 950, true);
	for (int i = 0; i < N; i++)
		good[i] = orders_json(&orders[i]);

	/* bad messages are dead-lettered and the worker moves on to the next; the reason
	 * for the second quotes bytes that are not UTF-8, and is recorded all the same */
	orders_produce_raw(env.producer, key, good[0], orders[0].event_id, "order.admitted");
	orders_produce_raw(env.producer, key, "{ not JSON at all", "bad-1", "order.admitted");
	orders_produce_raw(env.producer, key, good[1], "bad-utf8", "order.\xc3\x28\xff");
	orders_produce_raw(env.producer, key, good[1], orders[1].event_id, "order.admitted");
	orders_flush(env.producer);
	spawn_worker_url(INVENTORY, url, NULL, NULL);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", 2), 2);
	cr_assert_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 2);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recorded as dead letter"), 2);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters "
						  "WHERE reason = 'unknown ce_type \"order.?(?\"'"),
		     1, "the reason keeps what is text");

	/* the next one cannot be recorded for now: the worker waits, it does not skip it */
	exec_for_role("REVOKE INSERT ON inventory.dead_letters FROM @", role);
	orders_produce_raw(env.producer, key, "{ still not JSON", "bad-2", "order.admitted");
	orders_produce_raw(env.producer, key, good[2], orders[2].event_id, "order.admitted");
	orders_produce_raw(env.producer, key, good[3], orders[3].event_id, "order.admitted");
	orders_flush(env.producer);
	cr_assert(testenv_wait_log(&workers[INVENTORY], "cannot record the dead letter yet, retrying", 20000),
		  "see %s", workers[INVENTORY].log_path);
	testenv_sleep_ms(2500);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "permission denied"), 1, "logged once");
	cr_assert_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.inbox"), 2,
		     "the events after it wait");
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recording it failed"), 0);

	exec_for_role("GRANT INSERT ON inventory.dead_letters TO @", role);
	cr_assert_eq(wait_value("SELECT count(*) FROM @.inbox", "inventory", N), N, "see %s",
		     workers[INVENTORY].log_path);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.dead_letters"), 3);
	cr_expect_eq(testenv_query_long(env.conn,
					"SELECT count(*) FROM inventory.dead_letters "
					"WHERE value = '{ still not JSON'::bytea AND reason LIKE '%JSON%'"),
		     1, "the raw bytes and the reason are kept");
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recovered after"), 1);
	cr_expect_eq(testenv_count_log(&workers[INVENTORY], "recorded as dead letter"), 3);
	for (int i = 0; i < N; i++)
		free(good[i]);
	cr_expect_eq(testenv_stop(&workers[INVENTORY], SIGTERM), 0);
	stop_cleanly();
}

/* Produce FLOOD messages of FLOOD_BYTES to every partition: more than the embedded broker keeps
 * (librdkafka's mock cluster drops a partition's oldest messages past 5 MiB). */
enum { FLOOD = 7, FLOOD_BYTES = 900 * 1000, PARTITIONS = 3 };
static void flood_the_topic(void)
{
	char *filler = malloc(FLOOD_BYTES);
	cr_assert(filler);
	memset(filler, 'x', FLOOD_BYTES);
	for (int p = 0; p < PARTITIONS; p++)
		for (int i = 0; i < FLOOD; i++) {
			rd_kafka_resp_err_t e = rd_kafka_producev(
			    env.producer, RD_KAFKA_V_TOPIC("orders"), RD_KAFKA_V_PARTITION(p),
			    RD_KAFKA_V_KEY("filler", 6), RD_KAFKA_V_VALUE(filler, (size_t)FLOOD_BYTES),
			    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
			orders_flush(env.producer);
		}
	free(filler);
}

/* Wait for a worker (or script) that ends by itself; its exit status. */
static int wait_exit(struct testenv_proc *p, int timeout_ms)
{
	int status = -1;
	for (int waited = 0; waited < timeout_ms && !testenv_exited(p, &status); waited += 20)
		testenv_sleep_ms(20);
	return status;
}

Test(workers, a_rebuild_through_the_replay_is_complete_when_the_topic_lost_its_oldest_events)
{
	enum { N = 30 };
	struct test_order orders[N];
	env_start();
	make_orders(orders, N, 400, true);
	for (int i = 0; i < N; i++)
		orders_produce(env.producer, &orders[i]);
	orders_flush(env.producer);
	flood_the_topic();
	long dropped = 0;
	for (int p = 0; p < PARTITIONS; p++) {
		int64_t low = 0, high = 0;
		cr_assert_eq(rd_kafka_query_watermark_offsets(env.producer, "orders", p, &low, &high, 5000),
			     0);
		dropped += (long)low;
	}
	cr_assert_geq(dropped, N, "the broker dropped the oldest messages, the orders' events among them");

	/* the control: rebuilt from the topic alone, the view misses every order */
	const char *plain[] = {"--rebuild", NULL};
	spawn_worker(INVENTORY, plain, NULL);
	cr_assert_eq(wait_exit(&workers[INVENTORY], 60000), 0, "see %s", workers[INVENTORY].log_path);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.inbox"), 0,
		     "the topic alone holds none of the orders any more");

	/* scripts/rebuild: the events come again from the database, the view is read from them */
	char script[600], db[400], brokers[300], bin[600];
	snprintf(script, sizeof(script), "%s/scripts/rebuild", CHECKOUT_SOURCE_DIR);
	snprintf(db, sizeof(db), "DATABASE_URL=%s", env.db);
	snprintf(brokers, sizeof(brokers), "KAFKA_BROKERS=%s", env.bootstrap);
	snprintf(bin, sizeof(bin), "CHECKOUT_BIN=%s", CHECKOUT_BIN_DIR);
	const char *e[] = {db, brokers, bin, NULL};
	const char *views[] = {"inventory", "analytics"};
	for (int v = 0; v < 2; v++) {
		const char *args[] = {views[v], NULL};
		testenv_spawn(&oneshot, script, args, e);
		cr_assert_eq(wait_exit(&oneshot, 60000), 0, "scripts/rebuild %s exits 0; see %s", views[v],
			     oneshot.log_path);
		cr_expect_eq(testenv_count_log(&oneshot, "replayed 30 events"), 2,
			     "the relay's log and its stdout");
		cr_expect_eq(testenv_count_log(&oneshot, "rebuild done: 30 events applied"), 1, "see %s",
			     oneshot.log_path);
	}
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM inventory.inbox"), N);
	cr_expect_eq(testenv_query_long(env.conn, "SELECT count(*) FROM analytics.inbox"), N);
	expect_inventory_equals_database();
	expect_analytics_equals_database();

	/* a rebuild from a replay the broker has dropped since fails, and leaves the view alone */
	char *log = testenv_read_file(oneshot.log_path);
	const char *start = log ? strstr(log, "replay.start=") : NULL;
	cr_assert(start, "scripts/rebuild printed where the replay started; see %s", oneshot.log_path);
	char from[128];
	snprintf(from, sizeof(from), "%.*s", (int)strcspn(start + 13, "\n"), start + 13);
	free(log);
	flood_the_topic();
	const char *late[] = {"--rebuild", "--from-offsets", from, NULL};
	spawn_worker(ANALYTICS, late, NULL);
	cr_expect_eq(wait_exit(&workers[ANALYTICS], 60000), 1, "see %s", workers[ANALYTICS].log_path);
	cr_expect_eq(testenv_count_log(&workers[ANALYTICS], "the broker dropped"), 1, "it says why");
	cr_expect_eq(testenv_count_log(&workers[ANALYTICS], "view purged"), 0);
	expect_analytics_equals_database();
	stop_cleanly();
}
