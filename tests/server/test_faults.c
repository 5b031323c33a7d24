/* checkout-server under hostile timing and faults: a row lock held past a
 * request's deadline, a connection lost mid-checkout, a frozen database, a
 * client that sends its request head one byte at a time. Each test is a
 * recipe that broke a promise once (issue 15); the promise is the name. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkout/monotonic.h"
#include "serverenv.h"

static const char *const SEED = "INSERT INTO products (sku, name, price_cents, stock) VALUES"
				" ('apple', 'Apple', 120, 10), ('pear', 'Pear', 80, 5);"
				"ANALYZE;";
static const char *const CART = "{\"customer_id\":\"c1\",\"email\":\"c1@example.com\","
				"\"items\":[{\"sku\":\"apple\",\"quantity\":1}]}";

/* A short deadline, so that each fault plays out in seconds. */
static const char *const FAST_ENV[] = {"REQUEST_TIMEOUT_MS=2000", NULL};

/* ---- a checkout sent from a thread of its own ----------------------------- */

struct call {
	struct serverenv *s;
	const char *key; /* NULL: none */
	pthread_t thread;
	struct http_response r;
	double took;
	bool ok; /* transport worked */
};

static void *call_main(void *arg)
{
	struct call *c = arg;
	char url[128], header[300];
	const char *headers[] = {"Content-Type: application/json", c->key ? header : NULL, NULL};
	if (c->key)
		snprintf(header, sizeof(header), "Idempotency-Key: %s", c->key);
	snprintf(url, sizeof(url), "%s/v1/checkout", c->s->base);
	double t0 = monotonic_seconds();
	c->ok = http_call("POST", url, headers, CART, &c->r);
	c->took = monotonic_seconds() - t0;
	return NULL;
}

static void call_start(struct call *c, struct serverenv *s, const char *key)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->key = key;
	cr_assert_eq(pthread_create(&c->thread, NULL, call_main, c), 0);
}

static void call_join(struct call *c)
{
	pthread_join(c->thread, NULL);
	cr_assert(c->ok, "transport error");
}

static void checkout_now(struct serverenv *s, const char *key, struct call *c)
{
	call_start(c, s, key);
	call_join(c);
}

static const char *problem_type(const struct http_response *r)
{
	json_t *t = r->json ? json_object_get(r->json, "type") : NULL;
	const char *type = json_is_string(t) ? json_string_value(t) : "";
	const char *slash = strrchr(type, '/');
	return slash ? slash + 1 : type;
}

static const char *order_id_of(const struct http_response *r)
{
	json_t *id = r->json ? json_object_get(r->json, "order_id") : NULL;
	return json_is_string(id) ? json_string_value(id) : "";
}

/* ---- holding a product's row lock from another session ------------------- */

static PGconn *lock_product(struct serverenv *s, const char *sku)
{
	PGconn *holder = testenv_db_connect(s->db);
	char sql[128];
	testenv_exec(holder, "BEGIN");
	snprintf(sql, sizeof(sql), "SELECT 1 FROM products WHERE sku = '%s' FOR UPDATE", sku);
	testenv_exec(holder, sql);
	return holder;
}

static void unlock_product(PGconn *holder)
{
	testenv_exec(holder, "COMMIT");
	PQfinish(holder);
}

/* The pid of the server's backend that waits for a lock, waiting up to timeout_ms; 0 if none. */
static long backend_waiting_for_lock(struct serverenv *s, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		long pid = testenv_query_long(
		    s->conn, "SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
			     "WHERE application_name = 'checkout' AND wait_event_type = 'Lock' "
			     "AND datname = current_database()");
		if (pid)
			return pid;
		testenv_sleep_ms(20);
	}
	return 0;
}

/* The pid of the server's backend idle inside a transaction (0 after timeout_ms). */
static long backend_idle_in_transaction(struct serverenv *s, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		long pid = testenv_query_long(
		    s->conn, "SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
			     "WHERE application_name = 'checkout' AND state = 'idle in transaction' "
			     "AND datname = current_database()");
		if (pid)
			return pid;
		testenv_sleep_ms(20);
	}
	return 0;
}

/* ---- one Idempotency-Key, one order -------------------------------------- */

/*
 * The first request waits on a row lock past its deadline while a retry of
 * the same key arrives and finds the key's row aged (as a lease would be
 * after a minute): the retry may never take the key over and order a second
 * time, whatever the timing.
 */
Test(faults, one_key_yields_one_order_when_the_first_request_outlives_its_claim)
{
	struct serverenv s;
	struct call first, retry, last, replay;
	serverenv_start(&s, SEED, FAST_ENV);
	PGconn *holder = lock_product(&s, "apple");

	call_start(&first, &s, "k-outlives");
	cr_assert(backend_waiting_for_lock(&s, 5000), "the checkout never reached the row lock");
	/* what a minute of waiting does to a claim with a lease: the key looks abandoned */
	testenv_exec(s.conn, "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' "
			     "WHERE key = 'k-outlives'");
	call_start(&retry, &s, "k-outlives");
	testenv_sleep_ms(2500);
	unlock_product(holder);
	call_join(&first);
	call_join(&retry);

	checkout_now(&s, "k-outlives", &last);
	checkout_now(&s, "k-outlives", &replay);
	long orders = testenv_query_long(s.conn, "SELECT count(*) FROM orders");
	cr_expect_eq(orders, 1, "one Idempotency-Key made %ld orders (answers %ld, %ld, %ld)", orders,
		     first.r.status, retry.r.status, last.r.status);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT stock FROM products WHERE sku = 'apple'"), 9);
	/* every 201 names the same order */
	const char *id = NULL;
	struct call *all[] = {&first, &retry, &last, &replay};
	for (size_t i = 0; i < 4; i++) {
		if (all[i]->r.status != 201)
			continue;
		if (!id)
			id = order_id_of(&all[i]->r);
		cr_expect_str_eq(order_id_of(&all[i]->r), id, "two 201s for one key with different orders");
	}
	cr_expect_eq(replay.r.status, 201);
	for (size_t i = 0; i < 4; i++)
		http_response_free(&all[i]->r);
	serverenv_stop(&s);
}

/* While a checkout holds its key, a second request with the key is told to come back: 409 with Retry-After.
 */
Test(faults, a_key_held_by_a_running_checkout_gets_409_with_retry_after)
{
	/* the first checkout holds its key for 4 s between read and write; the second's wait for the key ends
	 * at 3 s */
	const char *env[] = {"REQUEST_TIMEOUT_MS=6000", "RACE_PAUSE_MS=4000", "HOT_SKU_QUEUE=false", NULL};
	struct serverenv s;
	struct call first, second;
	char buf[32];
	serverenv_start(&s, SEED, env);
	call_start(&first, &s, "k-held");
	cr_assert(backend_idle_in_transaction(&s, 5000), "the first checkout never claimed its key");
	checkout_now(&s, "k-held", &second);
	call_join(&first);

	cr_expect_eq(second.r.status, 409, "the second got %ld %s", second.r.status, problem_type(&second.r));
	cr_expect_str_eq(problem_type(&second.r), "idempotency-key-in-use");
	cr_expect_not_null(http_header(&second.r, "Retry-After", buf, sizeof(buf)),
			   "409 in-use without Retry-After");
	cr_expect_eq(first.r.status, 201, "the first got %ld %s", first.r.status, problem_type(&first.r));
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 1);
	http_response_free(&first.r);
	http_response_free(&second.r);
	serverenv_stop(&s);
}

/* A row lock held past the lock timeout is contention, not an internal error: 503 within the deadline. */
Test(faults, a_row_lock_held_past_the_deadline_gives_503_not_500)
{
	const char *env[] = {"REQUEST_TIMEOUT_MS=2000", "HOT_SKU_QUEUE=false", NULL};
	struct serverenv s;
	struct call c;
	serverenv_start(&s, SEED, env);
	PGconn *holder = lock_product(&s, "apple");
	call_start(&c, &s, "k-locked");
	call_join(&c);
	unlock_product(holder);

	cr_expect_eq(c.r.status, 503, "got %ld %s", c.r.status, problem_type(&c.r));
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 0);
	http_response_free(&c.r);
	serverenv_stop(&s);
}

/* ---- a connection lost mid-checkout -------------------------------------- */

/*
 * The checkout's connection dies (as in an immediate database restart)
 * while its transaction waits: nothing committed, so the key must not stay
 * pinned; the client's retry with the same key is served at once.
 */
Test(faults, a_checkout_whose_connection_died_leaves_its_key_free)
{
	struct serverenv s;
	struct call first, retry;
	serverenv_start(&s, SEED, FAST_ENV);
	PGconn *holder = lock_product(&s, "apple");
	call_start(&first, &s, "k-lost");
	long pid = backend_waiting_for_lock(&s, 5000);
	cr_assert(pid, "the checkout never reached the row lock");
	char sql[96];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)", pid);
	testenv_exec(s.conn, sql);
	unlock_product(holder);
	call_join(&first);
	checkout_now(&s, "k-lost", &retry);

	/* the server may have resolved it itself (201), or said it could not (503); never a pinned key */
	cr_expect(first.r.status == 201 || first.r.status == 503, "first answer %ld", first.r.status);
	cr_expect_eq(retry.r.status, 201, "the retry got %ld %s", retry.r.status, problem_type(&retry.r));
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 1);
	http_response_free(&first.r);
	http_response_free(&retry.r);
	serverenv_stop(&s);
}

/* Without a key nobody can safely retry a COMMIT whose answer was lost: the reply says the outcome is
 * unknown. */
Test(faults, a_lost_commit_reply_without_a_key_is_outcome_unknown)
{
	struct serverenv s;
	struct call c;
	char buf[32];
	serverenv_start(&s, SEED, FAST_ENV);
	PGconn *holder = lock_product(&s, "apple");
	call_start(&c, &s, NULL);
	long pid = backend_waiting_for_lock(&s, 5000);
	cr_assert(pid);
	char sql[96];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)", pid);
	testenv_exec(s.conn, sql);
	call_join(&c);
	unlock_product(holder);

	cr_expect_eq(c.r.status, 503);
	cr_expect_str_eq(problem_type(&c.r), "outcome-unknown");
	cr_expect_not_null(http_header(&c.r, "Retry-After", buf, sizeof(buf)));
	http_response_free(&c.r);
	serverenv_stop(&s);
}

/* ---- a frozen database --------------------------------------------------- */

/* Every process of the cluster s is connected to: the postmaster and its children. */
static int cluster_pids(struct serverenv *s, pid_t *pids, int max)
{
	PGresult *res = PQexec(s->conn, "SELECT current_setting('data_directory')");
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	char path[600];
	snprintf(path, sizeof(path), "%s/postmaster.pid", PQgetvalue(res, 0, 0));
	PQclear(res);
	char *text = testenv_read_file(path);
	cr_assert_not_null(text, "cannot read %s", path);
	pid_t postmaster = (pid_t)atol(text);
	free(text);
	int n = 0;
	pids[n++] = postmaster;
	DIR *proc = opendir("/proc");
	for (struct dirent *e = proc ? readdir(proc) : NULL; e && n < max; e = readdir(proc)) {
		char stat_path[300], *stat;
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(stat_path, sizeof(stat_path), "/proc/%s/stat", e->d_name);
		if (!(stat = testenv_read_file(stat_path)))
			continue;
		const char *after = strrchr(stat, ')');
		int ppid = 0;
		if (after && sscanf(after + 1, " %*c %d", &ppid) == 1 && ppid == postmaster)
			pids[n++] = (pid_t)atol(e->d_name);
		free(stat);
	}
	if (proc)
		closedir(proc);
	return n;
}

static void signal_all(const pid_t *pids, int n, int sig)
{
	for (int i = 0; i < n; i++)
		kill(pids[i], sig);
}

/*
 * With PostgreSQL frozen (SIGSTOP), a checkout answers 503 by its deadline
 * and /readyz within a second; when PostgreSQL resumes, the abandoned
 * checkout does not commit behind its client's back.
 */
Test(faults, a_frozen_database_gives_503_in_time_and_the_abandoned_checkout_never_commits)
{
	struct serverenv s;
	struct call c;
	struct http_response ready, alive;
	pid_t pids[256];
	serverenv_start(&s, SEED, FAST_ENV);
	checkout_now(&s, NULL, &c); /* the pool has a connection open */
	cr_assert_eq(c.r.status, 201);
	http_response_free(&c.r);
	int n = cluster_pids(&s, pids, 256);

	signal_all(pids, n, SIGSTOP);
	call_start(&c, &s, "k-frozen");
	testenv_sleep_ms(200);
	double t0 = monotonic_seconds();
	char ready_url[128], alive_url[128];
	snprintf(ready_url, sizeof(ready_url), "%s/readyz", s.base);
	snprintf(alive_url, sizeof(alive_url), "%s/healthz", s.base);
	bool ready_ok = http_call("GET", ready_url, NULL, NULL, &ready);
	double ready_took = monotonic_seconds() - t0;
	bool alive_ok = http_call("GET", alive_url, NULL, NULL, &alive);
	pthread_join(c.thread, NULL);
	signal_all(pids, n, SIGCONT);

	cr_assert(c.ok && ready_ok && alive_ok, "transport error");
	cr_expect_eq(c.r.status, 503, "a checkout against a frozen database got %ld", c.r.status);
	cr_expect_lt(c.took, 3.0, "the checkout took %.1f s with a 2 s deadline", c.took);
	cr_expect_eq(ready.status, 503);
	cr_expect_lt(ready_took, 1.0, "/readyz took %.2f s", ready_took);
	cr_expect_eq(alive.status, 200);
	/* resumed: give an abandoned transaction every chance to commit, then count */
	testenv_sleep_ms(2000);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 1,
		     "the checkout abandoned at its deadline committed later");
	checkout_now(&s, "k-frozen", &c);
	cr_expect_eq(c.r.status, 201, "after the freeze the retry got %ld %s", c.r.status,
		     problem_type(&c.r));
	http_response_free(&c.r);
	http_response_free(&ready);
	http_response_free(&alive);
	serverenv_stop(&s);
}

/* ---- slowloris ------------------------------------------------------------ */

/* A request head trickling in one byte at a time is cut off at the head deadline; other clients go on. */
Test(faults, a_request_head_sent_byte_by_byte_is_closed_at_the_head_deadline)
{
	const char *env[] = {"HTTP_HEAD_TIMEOUT_SECONDS=2", "HTTP_IDLE_TIMEOUT_SECONDS=5", NULL};
	struct serverenv s;
	serverenv_start(&s, SEED, env);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);

	const char *head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	double t0 = monotonic_seconds(), closed_after = -1;
	int served = 0;
	for (size_t i = 0; head[i] && monotonic_seconds() - t0 < 8.0; i++) {
		if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1) {
			closed_after = monotonic_seconds() - t0;
			break;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 250) > 0) {
			char c;
			if (recv(fd, &c, 1, 0) <= 0) {
				closed_after = monotonic_seconds() - t0;
				break;
			}
		}
		/* meanwhile an ordinary client is served */
		struct http_response r;
		serverenv_call(&s, "GET", "/healthz", NULL, NULL, &r);
		served += r.status == 200;
		http_response_free(&r);
	}
	close(fd);
	cr_expect_gt(closed_after, 0, "a head sent a byte at a time stayed open for 8 s");
	cr_expect_lt(closed_after, 4.0, "closed after %.1f s with a 2 s head deadline", closed_after);
	cr_expect_gt(served, 3);
	serverenv_stop(&s);
}
