/* test_fiber.c - the fiber loop: spawning, waiting on descriptors, timers, queues, stopping. */
#define _GNU_SOURCE
#include "checkout/fiber.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct fiber_loop *start(void)
{
	char err[256];
	struct fiber_loop *l = fiber_loop_start(err, sizeof(err));
	cr_assert_not_null(l, "%s", err);
	return l;
}

/* Wait up to seconds for every fiber of l to finish. */
static void settle(struct fiber_loop *l, int seconds)
{
	for (int i = 0; i < seconds * 100 && fiber_count(l) > 0; i++)
		usleep(10000);
	cr_assert_eq(fiber_count(l), 0, "fibers still running after %d s", seconds);
}

struct pipe_reader {
	int fd;
	atomic_int got; /* the byte read, or -1 */
	atomic_int revents;
	atomic_bool in_fiber;
};

static void read_one(void *arg)
{
	struct pipe_reader *r = arg;
	atomic_store(&r->in_fiber, fiber_current());
	atomic_store(&r->revents, fiber_wait_fd(r->fd, POLLIN, 5000));
	char c = 0;
	atomic_store(&r->got, read(r->fd, &c, 1) == 1 ? c : -1);
}

Test(fiber, a_fiber_waits_for_its_descriptor_while_others_run)
{
	struct fiber_loop *l = start();
	int a[2], b[2];
	cr_assert_eq(pipe(a), 0);
	cr_assert_eq(pipe(b), 0);
	struct pipe_reader ra = {a[0], -1, 0, false}, rb = {b[0], -1, 0, false};
	cr_assert(fiber_spawn(l, read_one, &ra));
	cr_assert(fiber_spawn(l, read_one, &rb));
	usleep(50000);
	/* both are parked on one thread: the second pipe is served first, without waiting for the first */
	cr_assert_eq(write(b[1], "b", 1), 1);
	for (int i = 0; i < 500 && atomic_load(&rb.got) == -1; i++)
		usleep(10000);
	cr_expect_eq(atomic_load(&rb.got), 'b');
	cr_expect_eq(atomic_load(&ra.got), -1, "the first fiber woke without data");
	cr_assert_eq(write(a[1], "a", 1), 1);
	settle(l, 5);
	cr_expect_eq(atomic_load(&ra.got), 'a');
	cr_expect(atomic_load(&ra.revents) & POLLIN);
	cr_expect(atomic_load(&ra.in_fiber));
	fiber_loop_stop(l);
	close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

Test(fiber, a_descriptor_wait_times_out)
{
	struct fiber_loop *l = start();
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct pipe_reader r = {p[0], -1, -1, false};
	/* outside a fiber the same call blocks the thread, with the same answer */
	cr_expect_eq(fiber_wait_fd(p[0], POLLIN, 20), 0);
	double t0 = now_s();
	cr_assert(fiber_spawn(l, read_one, &r)); /* read_one waits up to 5 s */
	cr_assert_eq(write(p[1], "x", 1), 1);
	settle(l, 5);
	cr_expect_eq(atomic_load(&r.got), 'x');
	cr_expect_lt(now_s() - t0, 4.0);
	fiber_loop_stop(l);
	close(p[0]), close(p[1]);
}

struct sleeper {
	unsigned ms;
	int *order;
	int *next;
	int mine;
};

static void sleep_then_note(void *arg)
{
	struct sleeper *s = arg;
	fiber_sleep_ms(s->ms);
	s->mine = (*s->next)++;
}

Test(fiber, sleepers_wake_in_deadline_order)
{
	struct fiber_loop *l = start();
	int next = 1;
	struct sleeper s[4] = {
	    {120, NULL, &next, 0}, {10, NULL, &next, 0}, {80, NULL, &next, 0}, {40, NULL, &next, 0}};
	double t0 = now_s();
	for (int i = 0; i < 4; i++)
		cr_assert(fiber_spawn(l, sleep_then_note, &s[i]));
	settle(l, 5);
	cr_expect_eq(s[1].mine, 1);
	cr_expect_eq(s[3].mine, 2);
	cr_expect_eq(s[2].mine, 3);
	cr_expect_eq(s[0].mine, 4);
	cr_expect_geq(now_s() - t0, 0.115, "the longest sleep was cut short");
	fiber_loop_stop(l);
}

struct queuer {
	struct fiber_queue *q;
	int timeout_ms;
	int result; /* 1 woken, 0 timed out, -1 not yet */
};

static void wait_in_queue(void *arg)
{
	struct queuer *w = arg;
	w->result = fiber_queue_wait(w->q, w->timeout_ms) ? 1 : 0;
}

struct waker {
	struct fiber_queue *q;
	int woke;
};

static void wake_after_a_while(void *arg)
{
	struct waker *w = arg;
	fiber_sleep_ms(100);
	while (fiber_queue_wake_one(w->q))
		w->woke++;
}

Test(fiber, a_queue_hands_turns_to_waiters_and_lets_timeouts_go)
{
	struct fiber_loop *l = start();
	struct fiber_queue q = {0};
	struct queuer patient = {&q, -1, -1}, hasty = {&q, 20, -1}, also_patient = {&q, 2000, -1};
	struct waker w = {&q, 0};
	cr_assert(fiber_spawn(l, wait_in_queue, &patient));
	cr_assert(fiber_spawn(l, wait_in_queue, &hasty));
	cr_assert(fiber_spawn(l, wait_in_queue, &also_patient));
	cr_assert(fiber_spawn(l, wake_after_a_while, &w));
	settle(l, 5);
	cr_expect_eq(patient.result, 1);
	cr_expect_eq(hasty.result, 0, "the 20 ms waiter was not timed out");
	cr_expect_eq(also_patient.result, 1);
	cr_expect_eq(w.woke, 2, "the timed-out waiter was still in the queue");
	fiber_loop_stop(l);
}

struct family {
	struct fiber_loop *loop;
	atomic_int n;
};

static void spawn_child(void *arg)
{
	struct family *f = arg;
	atomic_fetch_add(&f->n, 1);
}

static void spawn_from_a_fiber(void *arg)
{
	struct family *f = arg;
	fiber_sleep_ms(20); /* so that the loop is stopping by now */
	for (int i = 0; i < 100; i++)
		cr_assert(fiber_spawn(f->loop, spawn_child, f));
	fiber_sleep_ms(0);
	atomic_fetch_add(&f->n, 1000);
}

Test(fiber, stop_waits_for_every_fiber_including_ones_spawned_by_fibers)
{
	struct family f = {start(), 0};
	for (int i = 0; i < 10; i++)
		cr_assert(fiber_spawn(f.loop, spawn_from_a_fiber, &f));
	fiber_loop_stop(f.loop);
	cr_expect_eq(atomic_load(&f.n), 10 * 1100);
}
