/* test_hotqueue.c - the hot-SKU queue: one checkout per SKU at a time, no deadlocks. */
#define _GNU_SOURCE
#include "checkout/hotqueue.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Join t, failing the test if it has not finished within seconds (a deadlock). */
static void join_within(pthread_t t, int seconds)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	cr_assert_eq(pthread_timedjoin_np(t, NULL, &ts), 0, "thread still blocked after %d s", seconds);
}

struct same_sku {
	struct hotqueue *q;
	const char *sku;
	atomic_int inside;
	atomic_int most_inside;
	int rounds;
};

static void *same_sku_worker(void *arg)
{
	struct same_sku *s = arg;
	for (int i = 0; i < s->rounds; i++) {
		struct hotqueue_hold hold;
		hotqueue_hold_init(&hold);
		hotqueue_hold_add(&hold, s->sku);
		hotqueue_acquire(s->q, &hold);
		int now = atomic_fetch_add(&s->inside, 1) + 1;
		int seen = atomic_load(&s->most_inside);
		while (now > seen && !atomic_compare_exchange_weak(&s->most_inside, &seen, now))
			;
		sched_yield(); /* give the others every chance to get in as well */
		atomic_fetch_sub(&s->inside, 1);
		hotqueue_release(s->q, &hold);
	}
	return NULL;
}

static int run_same_sku(struct hotqueue *q)
{
	struct same_sku s = {.q = q, .sku = "sku-hot", .rounds = 2000};
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, same_sku_worker, &s), 0);
	for (int i = 0; i < 8; i++)
		join_within(t[i], 60);
	return atomic_load(&s.most_inside);
}

Test(hotqueue, lets_one_checkout_of_a_sku_in_at_a_time)
{
	struct hotqueue *q = hotqueue_create();
	cr_assert_not_null(q);
	cr_expect_eq(run_same_sku(q), 1, "two checkouts of one SKU held the queue together");
	cr_expect_gt(hotqueue_waits(q), 0, "eight threads on one SKU never had to wait");
	hotqueue_destroy(q);
}

Test(hotqueue, switched_off_it_queues_nothing)
{
	/* the same load without a queue overlaps: this is what the first test rules out */
	cr_expect_gt(run_same_sku(NULL), 1);
	cr_expect_eq(hotqueue_waits(NULL), 0);
}

struct hold_one {
	struct hotqueue *q;
	const char *sku;
};

static void *acquire_and_release(void *arg)
{
	struct hold_one *h = arg;
	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	hotqueue_hold_add(&hold, h->sku);
	hotqueue_acquire(h->q, &hold);
	hotqueue_release(h->q, &hold);
	return NULL;
}

/* Two SKUs that land on different stripes (found by trying, as the hash is private). */
static void different_stripes(struct hotqueue *q, char *a, char *b, size_t len)
{
	snprintf(a, len, "sku-00000");
	struct hotqueue_hold held;
	hotqueue_hold_init(&held);
	hotqueue_hold_add(&held, a);
	for (int i = 1; i < 100; i++) {
		snprintf(b, len, "sku-%05d", i);
		struct hotqueue_hold other;
		hotqueue_hold_init(&other);
		hotqueue_hold_add(&other, b);
		if (memcmp(held.bits, other.bits, sizeof(held.bits)) != 0)
			return;
	}
	cr_assert_fail("100 SKUs all hashed onto one stripe");
	(void)q;
}

Test(hotqueue, does_not_hold_up_other_skus)
{
	struct hotqueue *q = hotqueue_create();
	char a[16], b[16];
	different_stripes(q, a, b, sizeof(a));

	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	hotqueue_hold_add(&hold, a);
	hotqueue_acquire(q, &hold);
	/* while a is held, a checkout of b gets through */
	struct hold_one other = {q, b};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, acquire_and_release, &other), 0);
	join_within(t, 10);
	hotqueue_release(q, &hold);
	hotqueue_release(q, &hold); /* twice is harmless */
	cr_expect_eq(hotqueue_waits(q), 0);
	hotqueue_destroy(q);
}

Test(hotqueue, blocks_a_second_checkout_of_the_same_sku_until_release)
{
	struct hotqueue *q = hotqueue_create();
	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	hotqueue_hold_add(&hold, "sku-00042");
	hotqueue_hold_add(&hold, "sku-00042"); /* a SKU twice in a cart takes its stripe once */
	hotqueue_acquire(q, &hold);

	struct hold_one other = {q, "sku-00042"};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, acquire_and_release, &other), 0);
	/* it cannot finish while we hold the stripe; it must have started waiting */
	while (hotqueue_waits(q) == 0)
		sched_yield();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 50 * 1000 * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	cr_expect_neq(pthread_timedjoin_np(t, NULL, &ts), 0, "second checkout got in while the SKU was held");
	hotqueue_release(q, &hold);
	join_within(t, 10);
	hotqueue_destroy(q);
}

struct cart {
	struct hotqueue *q;
	const char *skus[3];
	int rounds;
};

static void *cart_worker(void *arg)
{
	struct cart *c = arg;
	for (int i = 0; i < c->rounds; i++) {
		struct hotqueue_hold hold;
		hotqueue_hold_init(&hold);
		for (int k = 0; k < 3; k++)
			hotqueue_hold_add(&hold, c->skus[k]);
		hotqueue_acquire(c->q, &hold);
		sched_yield();
		hotqueue_release(c->q, &hold);
	}
	return NULL;
}

Test(hotqueue, carts_naming_skus_in_opposite_orders_do_not_deadlock)
{
	struct hotqueue *q = hotqueue_create();
	struct cart forward = {q, {"sku-00001", "sku-00002", "sku-00003"}, 20000};
	struct cart backward = {q, {"sku-00003", "sku-00002", "sku-00001"}, 20000};
	struct cart middle = {q, {"sku-00002", "sku-00003", "sku-00001"}, 20000};
	pthread_t t[3];
	cr_assert_eq(pthread_create(&t[0], NULL, cart_worker, &forward), 0);
	cr_assert_eq(pthread_create(&t[1], NULL, cart_worker, &backward), 0);
	cr_assert_eq(pthread_create(&t[2], NULL, cart_worker, &middle), 0);
	for (int i = 0; i < 3; i++)
		join_within(t[i], 60);
	hotqueue_destroy(q);
}

Test(hotqueue, destroy_accepts_null)
{
	hotqueue_destroy(NULL);
	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	hotqueue_acquire(NULL, &hold);
	hotqueue_release(NULL, &hold);
}
