/* test_hotqueue.c - the hot-SKU queue: one checkout per SKU at a time, in arrival order, no deadlocks. */
#define _GNU_SOURCE
#include "hotqueue.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "checkout/fiber.h"

/* The fibers of one test: started together on a fresh loop, and waited for. */
struct crowd {
	struct fiber_loop *loop;
};

static void crowd_start(struct crowd *c)
{
	char err[256];
	c->loop = fiber_loop_start(err, sizeof(err));
	cr_assert_not_null(c->loop, "%s", err);
}

static void crowd_spawn(struct crowd *c, void (*fn)(void *), void *arg)
{
	cr_assert(fiber_spawn(c->loop, fn, arg));
}

/* Wait until every fiber has finished, failing the test after seconds (a deadlock). */
static void crowd_join(struct crowd *c, int seconds)
{
	for (int i = 0; i < seconds * 100 && fiber_count(c->loop) > 0; i++) {
		struct timespec ms10 = {0, 10 * 1000 * 1000L};
		nanosleep(&ms10, NULL);
	}
	cr_assert_eq(fiber_count(c->loop), 0, "fibers still waiting after %d s", seconds);
	fiber_loop_stop(c->loop);
}

struct same_sku {
	struct hotqueue *q;
	int inside, most_inside, rounds;
};

static void same_sku_fiber(void *arg)
{
	struct same_sku *s = arg;
	for (int i = 0; i < s->rounds; i++) {
		struct hotqueue_hold hold;
		hotqueue_hold_init(&hold);
		hotqueue_hold_add(&hold, "sku-hot");
		cr_assert(hotqueue_acquire(s->q, &hold));
		if (++s->inside > s->most_inside)
			s->most_inside = s->inside;
		fiber_sleep_ms(0); /* as a transaction would: give the others every chance to get in */
		s->inside--;
		hotqueue_release(s->q, &hold);
	}
}

static int run_same_sku(struct hotqueue *q)
{
	struct same_sku s = {.q = q, .rounds = 200};
	struct crowd c;
	crowd_start(&c);
	for (int i = 0; i < 8; i++)
		crowd_spawn(&c, same_sku_fiber, &s);
	crowd_join(&c, 60);
	return s.most_inside;
}

Test(hotqueue, lets_one_checkout_of_a_sku_in_at_a_time)
{
	struct hotqueue *q = hotqueue_create();
	cr_assert_not_null(q);
	cr_expect_eq(run_same_sku(q), 1, "two checkouts of one SKU held the queue together");
	cr_expect_gt(hotqueue_waits(q), 0, "eight fibers on one SKU never had to wait");
	hotqueue_destroy(q);
}

Test(hotqueue, switched_off_it_queues_nothing)
{
	/* the same load without a queue overlaps: this is what the first test rules out */
	cr_expect_gt(run_same_sku(NULL), 1);
	cr_expect_eq(hotqueue_waits(NULL), 0);
}

/* Two SKUs that land on different stripes (found by trying, as the hash is private). */
static void different_stripes(char *a, char *b, size_t len)
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
}

/* A checkout that takes its SKU, waits until told, and records when it got in. */
struct holder {
	struct hotqueue *q;
	const char *sku;
	int *clock;  /* shared: counts entries */
	int entered; /* the clock when it got in; 0 before */
	int hold_ms; /* how long it keeps the SKU */
};

static void holder_fiber(void *arg)
{
	struct holder *h = arg;
	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	hotqueue_hold_add(&hold, h->sku);
	hotqueue_hold_add(&hold, h->sku); /* a SKU twice in a cart takes its stripe once */
	cr_assert(hotqueue_acquire(h->q, &hold));
	h->entered = ++*h->clock;
	fiber_sleep_ms((unsigned)h->hold_ms);
	hotqueue_release(h->q, &hold);
	hotqueue_release(h->q, &hold); /* twice is harmless */
}

Test(hotqueue, does_not_hold_up_other_skus)
{
	struct hotqueue *q = hotqueue_create();
	char a[16], b[16];
	int clock = 0;
	different_stripes(a, b, sizeof(a));
	struct holder slow = {q, a, &clock, 0, 300}, other = {q, b, &clock, 0, 0};
	struct crowd c;
	crowd_start(&c);
	crowd_spawn(&c, holder_fiber, &slow);
	crowd_spawn(&c, holder_fiber, &other);
	crowd_join(&c, 10);
	/* b got in while a was held, and nobody waited */
	cr_expect_eq(slow.entered, 1);
	cr_expect_eq(other.entered, 2);
	cr_expect_eq(hotqueue_waits(q), 0);
	hotqueue_destroy(q);
}

struct watcher {
	struct holder *second;
	int seen_while_held; /* second->entered while the first still held the SKU */
};

static void watch_fiber(void *arg)
{
	struct watcher *w = arg;
	fiber_sleep_ms(50); /* the first holds the SKU for 200 ms */
	w->seen_while_held = w->second->entered;
}

Test(hotqueue, keeps_a_second_checkout_of_the_same_sku_waiting_until_release)
{
	struct hotqueue *q = hotqueue_create();
	int clock = 0;
	struct holder first = {q, "sku-00042", &clock, 0, 200}, second = {q, "sku-00042", &clock, 0, 0};
	struct watcher w = {&second, -1};
	struct crowd c;
	crowd_start(&c);
	crowd_spawn(&c, holder_fiber, &first);
	crowd_spawn(&c, holder_fiber, &second);
	crowd_spawn(&c, watch_fiber, &w);
	crowd_join(&c, 10);
	cr_expect_eq(w.seen_while_held, 0, "the second checkout got in while the SKU was held");
	cr_expect_eq(second.entered, 2, "the second checkout never got in");
	cr_expect_eq(hotqueue_waits(q), 1);
	hotqueue_destroy(q);
}

Test(hotqueue, serves_checkouts_of_a_sku_in_arrival_order)
{
	struct hotqueue *q = hotqueue_create();
	int clock = 0;
	struct holder h[16];
	struct crowd c;
	crowd_start(&c);
	for (int i = 0; i < 16; i++) {
		h[i] = (struct holder){q, "sku-hot", &clock, 0, 2};
		crowd_spawn(&c, holder_fiber, &h[i]);
	}
	crowd_join(&c, 10);
	/* fibers start in spawn order; each must get in right after the one before it */
	for (int i = 0; i < 16; i++)
		cr_expect_eq(h[i].entered, i + 1, "checkout %d got in as number %d", i, h[i].entered);
	hotqueue_destroy(q);
}

struct cart {
	struct hotqueue *q;
	const char *skus[3];
	int rounds;
};

static void cart_fiber(void *arg)
{
	struct cart *c = arg;
	for (int i = 0; i < c->rounds; i++) {
		struct hotqueue_hold hold;
		hotqueue_hold_init(&hold);
		for (int k = 0; k < 3; k++)
			hotqueue_hold_add(&hold, c->skus[k]);
		cr_assert(hotqueue_acquire(c->q, &hold));
		fiber_sleep_ms(0);
		hotqueue_release(c->q, &hold);
	}
}

Test(hotqueue, carts_naming_skus_in_opposite_orders_do_not_deadlock)
{
	struct hotqueue *q = hotqueue_create();
	struct cart forward = {q, {"sku-00001", "sku-00002", "sku-00003"}, 2000};
	struct cart backward = {q, {"sku-00003", "sku-00002", "sku-00001"}, 2000};
	struct cart middle = {q, {"sku-00002", "sku-00003", "sku-00001"}, 2000};
	struct crowd c;
	crowd_start(&c);
	crowd_spawn(&c, cart_fiber, &forward);
	crowd_spawn(&c, cart_fiber, &backward);
	crowd_spawn(&c, cart_fiber, &middle);
	crowd_join(&c, 60);
	cr_expect_gt(hotqueue_waits(q), 0, "the carts never met");
	hotqueue_destroy(q);
}

Test(hotqueue, destroy_accepts_null)
{
	hotqueue_destroy(NULL);
	struct hotqueue_hold hold;
	hotqueue_hold_init(&hold);
	cr_assert(hotqueue_acquire(NULL, &hold));
	hotqueue_release(NULL, &hold);
}
