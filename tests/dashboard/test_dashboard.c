/* The live dashboard in a real browser: the server, the relay, checkout-inventory and
 * checkout-analytics (serving the dashboard) run against a fresh database and the
 * embedded broker; Debian's chromium, driven by tests/dashboard/drive.mjs (puppeteer-core),
 * shows the page while the test places checkouts through the API and reads what the
 * page says. checkout-email is not started, so its consumer group's lag is every event. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testenv.h"

enum { SERVER, RELAY, INVENTORY, ANALYTICS, N_PROGS };
static struct testenv_proc broker, procs[N_PROGS], driver;
static int driver_in = -1, driver_out = -1;

static void stop_cleanly(void)
{
	if (driver_in >= 0)
		close(driver_in); /* the driver's stdin ends: it closes the browser and exits */
	driver_in = -1;
	if (driver.pid > 0) {
		for (int waited = 0; waited < 5000 && !testenv_exited(&driver, NULL); waited += 50)
			testenv_sleep_ms(50);
		testenv_stop(&driver, SIGTERM);
	}
	if (driver_out >= 0)
		close(driver_out);
	driver_out = -1;
	for (int i = 0; i < N_PROGS; i++)
		testenv_stop_clean(&procs[i]);
	testenv_stop_clean(&broker);
}

TestSuite(dashboard, .fini = stop_cleanly, .timeout = 180);

/* Start node drive.mjs with pipes to its stdin and stdout; its stderr goes to a log. */
static void driver_start(void)
{
	int to_child[2], from_child[2];
	char script[600];
	snprintf(script, sizeof(script), "%s/tests/dashboard/drive.mjs", CHECKOUT_SOURCE_DIR);
	mkdir(CHECKOUT_TEST_TMP, 0755);
	snprintf(driver.name, sizeof(driver.name), "drive.mjs");
	snprintf(driver.log_path, sizeof(driver.log_path), "%s/drive.%d.log", CHECKOUT_TEST_TMP,
		 (int)getpid());
	cr_assert(pipe2(to_child, O_CLOEXEC) == 0 && pipe2(from_child, O_CLOEXEC) == 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int log = open(driver.log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(to_child[0], STDIN_FILENO);
		dup2(from_child[1], STDOUT_FILENO);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		setenv("CHROMIUM", CHECKOUT_CHROMIUM, 1);
		execl(CHECKOUT_NODE, CHECKOUT_NODE, script, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", CHECKOUT_NODE, strerror(errno));
		_exit(127);
	}
	close(to_child[0]);
	close(from_child[1]);
	driver.pid = pid;
	driver_in = to_child[1];
	driver_out = from_child[0];
}

/* Send one command and return its answer (the caller json_decref()s it); fails the test
 * when the driver says nothing within 30 s or answers an error. */
static json_t *driver_call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *driver_call(const char *fmt, ...)
{
	char cmd[1024], line[1 << 16];
	size_t used = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	strcat(cmd, "\n");
	cr_assert(write(driver_in, cmd, strlen(cmd)) == (ssize_t)strlen(cmd), "writing to the driver: %s",
		  strerror(errno));
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left =
		    30000 - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
		struct pollfd pfd = {.fd = driver_out, .events = POLLIN};
		cr_assert(left > 0 && poll(&pfd, 1, (int)left) == 1,
			  "the browser driver did not answer '%.*s' in 30 s; see %s", (int)strcspn(cmd, "\n"),
			  cmd, driver.log_path);
		ssize_t n = read(driver_out, line + used, 1);
		cr_assert(n == 1, "the browser driver exited; see %s", driver.log_path);
		if (line[used] == '\n')
			break;
		cr_assert(++used < sizeof(line) - 1, "the driver's answer is too long");
	}
	line[used] = '\0';
	json_error_t jerr;
	json_t *answer = json_loads(line, 0, &jerr);
	cr_assert(answer, "the driver answered no JSON: %s", line);
	cr_assert(json_is_true(json_object_get(answer, "ok")), "'%.*s': %s", (int)strcspn(cmd, "\n"), cmd,
		  line);
	return answer;
}

/* The text of page[key] (a string), or "" */
static const char *page_text(json_t *page, const char *key)
{
	const char *s = json_string_value(json_object_get(page, key));
	return s ? s : "";
}

/* The row of table key whose first cell is first, or NULL. */
static json_t *page_row(json_t *page, const char *key, const char *first)
{
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(page, key), i, row)
	{
		if (!strcmp(json_string_value(json_array_get(row, 0)) ?: "", first))
			return row;
	}
	return NULL;
}

static const char *cell(json_t *row, size_t i)
{
	return row ? json_string_value(json_array_get(row, i)) ?: "" : "(no row)";
}

typedef bool (*page_check)(json_t *page);

/* Read the page until check(page) holds, for at most timeout_ms. Returns the last
 * reading (the caller json_decref()s it) and whether the check held. */
static json_t *wait_page(page_check check, int timeout_ms, bool *held)
{
	json_t *answer = NULL;
	*held = false;
	for (int waited = 0; waited <= timeout_ms; waited += 200) {
		json_decref(answer);
		answer = driver_call("read");
		if (check(json_object_get(answer, "page"))) {
			*held = true;
			break;
		}
		testenv_sleep_ms(200);
	}
	return answer;
}

static bool is_live_and_empty(json_t *p)
{
	return !strcmp(page_text(p, "state"), "live") && !strcmp(page_text(p, "total_orders"), "0 orders");
}

/* 3 x 2 "dash-tee" at 2.50 and 1 x 4 "dash-poster" at 10.00: 4 orders, 10 units, 55.00 */
static bool shows_the_orders(json_t *p)
{
	json_t *low = page_row(p, "low_stock", "dash-poster");
	json_t *email = page_row(p, "lag", "checkout-email");
	json_t *inventory = page_row(p, "lag", "checkout-inventory");
	json_t *outcome = json_array_get(json_object_get(p, "outcomes"), 0);
	return !strcmp(page_text(p, "total_orders"), "4 orders") &&
	       !strcmp(page_text(p, "total_units"), "10 units") &&
	       !strcmp(page_text(p, "total_revenue"), "55.00") && low && !strcmp(cell(low, 1), "4 units") &&
	       !strcmp(cell(email, 1), "4 events behind") && !strcmp(cell(inventory, 1), "0 events behind") &&
	       !strcmp(cell(outcome, 1), "4") && !strcmp(cell(outcome, 2), "1");
}

static bool is_disconnected(json_t *p)
{
	return !strcmp(page_text(p, "state"), "disconnected");
}

static bool is_live_with_the_orders(json_t *p)
{
	return !strcmp(page_text(p, "state"), "live") && !strcmp(page_text(p, "total_orders"), "4 orders");
}

static void checkout(const char *api, const char *customer, const char *sku, int quantity, long want_status)
{
	char body[256];
	struct http_response r;
	snprintf(body, sizeof(body),
		 "{\"customer_id\":\"%s\",\"email\":\"%s@example.com\",\"items\":[{\"sku\":\"%s\","
		 "\"quantity\":%d}]}",
		 customer, customer, sku, quantity);
	cr_assert(http_call("POST", api, NULL, body, &r));
	cr_assert_eq(r.status, want_status, "%s -> %ld: %s", body, r.status, r.body);
	http_response_free(&r);
}

/* Wait for the next minute when fewer than `need` seconds of this one are left: the page's
 * per-minute figures (one bar, this minute's outcomes) would otherwise split over two. */
static void stay_within_a_minute(int need)
{
	int left = 60 - (int)(time(NULL) % 60);
	if (left < need)
		testenv_sleep_ms(left * 1000 + 200);
}

static char *dump(json_t *answer)
{
	return json_dumps(json_object_get(answer, "page"), JSON_COMPACT);
}

Test(dashboard, shows_orders_low_stock_lag_and_outcomes_live_and_survives_an_analytics_restart)
{
	char bootstrap[256], db_env[256], brokers_env[300], listen_env[64], dash_env[64], metrics_env[128];
	char api[128], page[128];
	bool held;

	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	char *db = testenv_db_new();
	PGconn *conn = testenv_db_connect(db);
	testenv_exec(conn, "INSERT INTO products (sku, name, price_cents, stock) VALUES"
			   " ('dash-tee', 'Tee', 250, 100), ('dash-poster', 'Poster', 1000, 8)");
	int port = testenv_free_port(), dash_port = testenv_free_port();
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", db);
	snprintf(brokers_env, sizeof(brokers_env), "KAFKA_BROKERS=%s", bootstrap);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", port);
	snprintf(dash_env, sizeof(dash_env), "DASHBOARD_LISTEN=127.0.0.1:%d", dash_port);
	snprintf(metrics_env, sizeof(metrics_env), "SERVER_METRICS_URL=http://127.0.0.1:%d/metrics", port);
	const char *env[] = {db_env, brokers_env, listen_env, dash_env, metrics_env, "LOW_STOCK_THRESHOLD=5",
			     NULL};
	snprintf(api, sizeof(api), "http://127.0.0.1:%d/v1/checkout", port);
	snprintf(page, sizeof(page), "http://127.0.0.1:%d/", dash_port);

	testenv_spawn(&procs[SERVER], "checkout-server", NULL, env);
	testenv_spawn(&procs[RELAY], "checkout-relay", NULL, env);
	testenv_spawn(&procs[INVENTORY], "checkout-inventory", NULL, env);
	testenv_spawn(&procs[ANALYTICS], "checkout-analytics", NULL, env);
	cr_assert(testenv_wait_port(port, 10000), "the server did not listen; see %s",
		  procs[SERVER].log_path);
	cr_assert(testenv_wait_port(dash_port, 10000), "the dashboard did not listen; see %s",
		  procs[ANALYTICS].log_path);
	cr_assert(testenv_wait_log(&procs[INVENTORY], "joined the group", 20000), "see %s",
		  procs[INVENTORY].log_path);
	cr_assert(testenv_wait_log(&procs[ANALYTICS], "joined the group", 20000), "see %s",
		  procs[ANALYTICS].log_path);

	driver_start();
	json_decref(driver_call("open %s", page));
	json_t *seen = wait_page(is_live_and_empty, 10000, &held);
	char *text = dump(seen);
	cr_assert(held, "the page is not live with 0 orders: %s", text);
	free(text);
	json_decref(seen);

	/* the page counts per minute: these checkouts and the readings below stay in one */
	stay_within_a_minute(20);
	for (int i = 0; i < 3; i++) {
		char customer[32];
		snprintf(customer, sizeof(customer), "tee-%d", i);
		checkout(api, customer, "dash-tee", 2, 201);
	}
	checkout(api, "poster", "dash-poster", 4, 201);	 /* stock 8 -> 4: at or below 5 */
	checkout(api, "greedy", "dash-poster", 50, 409); /* out of stock */

	seen = wait_page(shows_the_orders, 10000, &held);
	text = dump(seen);
	cr_assert(held,
		  "within 10 s the page should show 4 orders, 10 units, 55.00 revenue, dash-poster low at 4 "
		  "units, checkout-email 4 events behind, inventory 0, this minute 4 admitted and 1 out of "
		  "stock; it shows %s",
		  text);
	json_t *p = json_object_get(seen, "page");
	json_t *top = json_array_get(json_object_get(p, "top_skus"), 0);
	cr_expect_str_eq(cell(top, 0), "dash-tee", "%s", text);
	cr_expect_str_eq(cell(top, 1), "6 units", "%s", text);
	cr_expect_str_eq(cell(top, 2), "15.00", "%s", text);
	cr_expect(page_row(p, "low_stock", "dash-tee") == NULL, "dash-tee has 94 left: %s", text);
	cr_expect_str_eq(page_text(p, "low_threshold"), "at or below 5 units", "%s", text);
	cr_expect_eq(json_integer_value(json_object_get(p, "order_bars")), 1, "one minute with orders: %s",
		     text);
	cr_expect_eq(json_array_size(json_object_get(p, "errors")), 0, "no panel shows an error: %s", text);
	cr_expect_eq(json_array_size(json_object_get(seen, "page_errors")), 0, "no script error: %s", text);
	cr_expect_not(json_is_true(json_object_get(p, "overflow")), "no sideways scrolling at 1280x800: %s",
		      text);
	free(text);
	json_decref(seen);

	/* analytics stops: the page says so; it comes back: the page recovers by itself */
	cr_assert_eq(testenv_stop(&procs[ANALYTICS], SIGTERM), 0, "see %s", procs[ANALYTICS].log_path);
	seen = wait_page(is_disconnected, 10000, &held);
	text = dump(seen);
	cr_assert(held, "the page does not show the stream disconnected: %s", text);
	cr_expect(strstr(page_text(json_object_get(seen, "page"), "status"), "disconnected"), "%s", text);
	free(text);
	json_decref(seen);

	testenv_spawn(&procs[ANALYTICS], "checkout-analytics", NULL, env);
	seen = wait_page(is_live_with_the_orders, 20000, &held);
	text = dump(seen);
	cr_assert(held, "the page did not recover after analytics came back: %s; see %s", text,
		  procs[ANALYTICS].log_path);
	free(text);
	json_decref(seen);

	/* a phone-width window: everything fits, nothing scrolls sideways */
	json_decref(driver_call("viewport 390 844"));
	seen = wait_page(is_live_with_the_orders, 5000, &held);
	text = dump(seen);
	cr_expect(held, "%s", text);
	cr_expect_not(json_is_true(json_object_get(json_object_get(seen, "page"), "overflow")),
		      "the page is wider than a 390 px window (see sticking_out): %s", text);
	free(text);
	json_decref(seen);

	PQfinish(conn);
	free(db);
	stop_cleanly();
}

Test(dashboard, answers_only_what_it_serves)
{
	char dash_env[64], url[160];
	char *db = testenv_db_new();
	char db_env[256];
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", db);
	int dash_port = testenv_free_port();
	snprintf(dash_env, sizeof(dash_env), "DASHBOARD_LISTEN=127.0.0.1:%d", dash_port);
	/* no broker and no server: the page still answers, and says what it cannot reach */
	const char *env[] = {db_env, dash_env, "KAFKA_BROKERS=127.0.0.1:1",
			     "SERVER_METRICS_URL=http://127.0.0.1:1/metrics", NULL};
	testenv_spawn(&procs[ANALYTICS], "checkout-analytics", NULL, env);
	cr_assert(testenv_wait_port(dash_port, 10000), "see %s", procs[ANALYTICS].log_path);

	struct http_response r;
	char buf[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", dash_port);
	cr_assert(http_call("GET", url, NULL, NULL, &r));
	cr_expect_eq(r.status, 200);
	cr_expect(strstr(r.body, "<title>Checkout dashboard</title>"));
	cr_expect(http_header(&r, "Content-Security-Policy", buf, sizeof(buf)));
	http_response_free(&r);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/../../etc/passwd", dash_port);
	cr_assert(http_call("GET", url, NULL, NULL, &r));
	cr_expect_eq(r.status, 404);
	http_response_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", dash_port);
	cr_assert(http_call("POST", url, NULL, "x", &r));
	cr_expect_eq(r.status, 405);
	http_response_free(&r);

	/* a snapshot arrives even with the broker and the server away, naming them */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/snapshot.json", dash_port);
	for (int waited = 0; waited < 10000; waited += 200) {
		cr_assert(http_call("GET", url, NULL, NULL, &r));
		if (r.status == 200 && json_object_get(json_object_get(r.json, "kafka"), "error"))
			break;
		http_response_free(&r);
		testenv_sleep_ms(200);
	}
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect(json_object_get(json_object_get(r.json, "kafka"), "error"), "%s", r.body);
	cr_expect(json_object_get(json_object_get(r.json, "checkout"), "error"), "%s", r.body);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(r.json, "totals"), "orders")), 0,
		     "%s", r.body);
	http_response_free(&r);

	free(db);
	stop_cleanly();
}

static bool says_no_relay_and_bytes_behind(json_t *p)
{
	const char *relay = page_text(p, "relay");
	return strstr(relay, "no relay connected: slot checkout_") == relay &&
	       strstr(relay, " bytes of WAL behind") && !strstr(relay, " is 0 bytes");
}

static bool says_a_relay_streams_the_slot(json_t *p)
{
	const char *relay = page_text(p, "relay");
	return strstr(relay, "slot checkout_") == relay && strstr(relay, "of WAL behind") &&
	       strstr(page_text(p, "relay_detail"), "relay answered");
}

Test(dashboard, shows_the_relay_slot_lag_in_the_wal_mode)
{
	char bootstrap[256], db_env[256], brokers_env[300], listen_env[64], dash_env[64], metrics_env[128];
	char api[128], page[128];
	bool held;

	snprintf(bootstrap, sizeof(bootstrap), "%s", testenv_broker_start(&broker));
	char *db = testenv_db_new();
	PGconn *conn = testenv_db_connect(db);
	testenv_exec(
	    conn, "INSERT INTO products (sku, name, price_cents, stock) VALUES ('wal-tee', 'Tee', 250, 100)");
	int port = testenv_free_port(), dash_port = testenv_free_port();
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", db);
	snprintf(brokers_env, sizeof(brokers_env), "KAFKA_BROKERS=%s", bootstrap);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", port);
	snprintf(dash_env, sizeof(dash_env), "DASHBOARD_LISTEN=127.0.0.1:%d", dash_port);
	snprintf(metrics_env, sizeof(metrics_env), "SERVER_METRICS_URL=http://127.0.0.1:%d/metrics", port);
	const char *env[] = {db_env, brokers_env, listen_env, dash_env, metrics_env, "EVENTS=wal", NULL};
	snprintf(api, sizeof(api), "http://127.0.0.1:%d/v1/checkout", port);
	snprintf(page, sizeof(page), "http://127.0.0.1:%d/", dash_port);

	/* the server creates the slot; no relay yet: the checkouts' WAL waits in it */
	testenv_spawn(&procs[SERVER], "checkout-server", NULL, env);
	testenv_spawn(&procs[ANALYTICS], "checkout-analytics", NULL, env);
	cr_assert(testenv_wait_port(port, 10000), "see %s", procs[SERVER].log_path);
	cr_assert(testenv_wait_port(dash_port, 10000), "see %s", procs[ANALYTICS].log_path);
	for (int i = 0; i < 3; i++) {
		char customer[32];
		snprintf(customer, sizeof(customer), "wal-%d", i);
		checkout(api, customer, "wal-tee", 1, 201);
	}
	driver_start();
	json_decref(driver_call("open %s", page));
	json_t *seen = wait_page(says_no_relay_and_bytes_behind, 10000, &held);
	char *text = dump(seen);
	cr_expect(held, "the page says no relay is connected and the slot is some bytes behind: %s", text);
	free(text);
	json_decref(seen);

	/* a relay streams the slot: the page says so, with the walsender's figures */
	testenv_spawn(&procs[RELAY], "checkout-relay", NULL, env);
	seen = wait_page(says_a_relay_streams_the_slot, 15000, &held);
	text = dump(seen);
	cr_expect(held, "the page shows the relay streaming the slot: %s; see %s", text,
		  procs[RELAY].log_path);
	free(text);
	json_decref(seen);

	/* it stops: no relay connected again */
	cr_expect_eq(testenv_stop(&procs[RELAY], SIGTERM), 0);
	checkout(api, "after-relay", "wal-tee", 1, 201);
	seen = wait_page(says_no_relay_and_bytes_behind, 10000, &held);
	text = dump(seen);
	cr_expect(held, "the page says no relay is connected once it stopped: %s", text);
	cr_expect_eq(json_array_size(json_object_get(seen, "page_errors")), 0, "no script error: %s", text);
	free(text);
	json_decref(seen);

	stop_cleanly();
	testenv_query_long(conn, "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots"
				 " WHERE slot_name = 'checkout_' || current_database()");
	PQfinish(conn);
	free(db);
}
