/* test_hotqueue_server.c - the hot-SKU queue inside checkout-server.
 *
 * RACE_PAUSE_MS holds every checkout inside its transaction between its read
 * and its write, so what overlaps in the database can be observed in
 * pg_stat_activity. (With the queue off, the server suite shows the same two
 * checkouts conflicting and being retried.)
 */
#define _GNU_SOURCE
#include "hotqueue.h"
#include "serverenv.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct call {
	struct serverenv *s;
	char body[256];
	struct http_response r;
	atomic_bool done;
};

static void *call_thread(void *arg)
{
	struct call *c = arg;
	const char *headers[] = {"Content-Type: application/json", NULL};
	serverenv_call(c->s, "POST", "/v1/checkout", headers, c->body, &c->r);
	atomic_store(&c->done, true);
	return NULL;
}

static void cart(struct call *c, struct serverenv *s, const char *customer, const char *sku, int quantity)
{
	c->s = s;
	snprintf(c->body, sizeof(c->body),
		 "{\"customer_id\":\"%s\",\"email\":\"q@b.c\",\"items\":[{\"sku\":\"%s\",\"quantity\":%d}]}",
		 customer, sku, quantity);
}

/* Checkouts paused inside their transaction right now. */
static long paused_in_transaction(struct serverenv *s)
{
	return testenv_query_long(s->conn,
				  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
				  " AND state = 'idle in transaction'");
}

static const char SEED[] = "INSERT INTO products (sku, name, price_cents, stock) VALUES"
			   " ('apple', 'Apple', 120, 10), ('pear', 'Pear', 90, 10), ('plum', 'Plum', 80, 10)";

Test(hotqueue_server, checkouts_of_one_sku_take_turns_so_none_is_retried)
{
	static const char *const env[] = {"RACE_PAUSE_MS=300", "HOT_SKU_QUEUE=true", NULL};
	struct serverenv s;
	struct call calls[2] = {0};
	pthread_t threads[2];
	serverenv_start(&s, SEED, env);

	cart(&calls[0], &s, "q1", "apple", 3);
	cart(&calls[1], &s, "q2", "apple", 2);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&threads[i], NULL, call_thread, &calls[i]), 0);
	/* never both inside a transaction: the second waits for the first's turn to end */
	long most = 0;
	while (!atomic_load(&calls[0].done) || !atomic_load(&calls[1].done)) {
		long now = paused_in_transaction(&s);
		most = now > most ? now : most;
		testenv_sleep_ms(20);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(calls[i].r.status, 201, "call %d: %ld %s", i, calls[i].r.status,
			     calls[i].r.body);
		http_response_free(&calls[i].r);
	}
	cr_expect_eq(most, 1, "two checkouts of one SKU were inside the database at once");
	cr_expect_eq(testenv_query_long(s.conn, "SELECT stock FROM products WHERE sku = 'apple'"), 5);
	cr_expect_eq(serverenv_metric(&s, "checkout_serialization_retries_total"), 0);
	serverenv_stop(&s);
}

/* Whether two SKUs share a stripe of the queue (then they take turns too). */
static bool same_stripe(const char *a, const char *b)
{
	struct hotqueue_hold ha, hb;
	hotqueue_hold_init(&ha);
	hotqueue_hold_init(&hb);
	hotqueue_hold_add(&ha, a);
	hotqueue_hold_add(&hb, b);
	return memcmp(ha.bits, hb.bits, sizeof(ha.bits)) == 0;
}

Test(hotqueue_server, checkouts_of_other_skus_do_not_wait)
{
	static const char *const env[] = {"RACE_PAUSE_MS=3000", "HOT_SKU_QUEUE=true", NULL};
	const char *other = same_stripe("apple", "pear") ? "plum" : "pear";
	cr_assert(!same_stripe("apple", other));
	struct serverenv s;
	struct call calls[2] = {0};
	pthread_t threads[2];
	serverenv_start(&s, SEED, env);

	cart(&calls[0], &s, "q1", "apple", 1);
	cr_assert_eq(pthread_create(&threads[0], NULL, call_thread, &calls[0]), 0);
	while (paused_in_transaction(&s) < 1 && !atomic_load(&calls[0].done))
		testenv_sleep_ms(10);
	/* the apple checkout holds its turn, paused inside its transaction; another SKU gets in */
	cart(&calls[1], &s, "q2", other, 1);
	cr_assert_eq(pthread_create(&threads[1], NULL, call_thread, &calls[1]), 0);
	bool overlapped = false;
	while (!overlapped && !atomic_load(&calls[0].done))
		overlapped = paused_in_transaction(&s) == 2;
	for (int i = 0; i < 2; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(calls[i].r.status, 201, "call %d: %ld %s", i, calls[i].r.status,
			     calls[i].r.body);
		http_response_free(&calls[i].r);
	}
	cr_expect(overlapped, "the checkout of %s waited for the one of apple", other);
	serverenv_stop(&s);
}
