/* test_fiber.c - the fiber loop: spawning, waiting on descriptors, timers, queues, stopping. */
#define _GNU_SOURCE
#include "checkout/fiber.h"
#include "checkout/monotonic.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

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
	double t0 = monotonic_seconds();
	cr_assert(fiber_spawn(l, read_one, &r)); /* read_one waits up to 5 s */
	cr_assert_eq(write(p[1], "x", 1), 1);
	settle(l, 5);
	cr_expect_eq(atomic_load(&r.got), 'x');
	cr_expect_lt(monotonic_seconds() - t0, 4.0);
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
	double t0 = monotonic_seconds();
	for (int i = 0; i < 4; i++)
		cr_assert(fiber_spawn(l, sleep_then_note, &s[i]));
	settle(l, 5);
	cr_expect_eq(s[1].mine, 1);
	cr_expect_eq(s[3].mine, 2);
	cr_expect_eq(s[2].mine, 3);
	cr_expect_eq(s[0].mine, 4);
	cr_expect_geq(monotonic_seconds() - t0, 0.115, "the longest sleep was cut short");
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

/* ---- the fiber timer: every wait with a limit, timed out inside a fiber ---- */

struct fd_waiter {
	int fd;
	int timeout_ms;
	int result; /* fiber_wait_fd's answer; -2 until it returns */
	double waited_s;
	bool in_fiber;
};

static void wait_fd_with_timeout(void *arg)
{
	struct fd_waiter *w = arg;
	w->in_fiber = fiber_current();
	double t0 = monotonic_seconds();
	w->result = fiber_wait_fd(w->fd, POLLIN, w->timeout_ms);
	w->waited_s = monotonic_seconds() - t0;
}

Test(fiber, a_descriptor_wait_in_a_fiber_returns_0_after_its_timeout)
{
	struct fiber_loop *l = start();
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct fd_waiter w = {p[0], 150, -2, 0, false};
	cr_assert(fiber_spawn(l, wait_fd_with_timeout, &w));
	settle(l, 5);
	cr_expect(w.in_fiber, "the wait ran in a fiber");
	cr_expect_eq(w.result, 0, "nothing to read: the wait times out with 0 (got %d)", w.result);
	cr_expect_geq(w.waited_s, 0.145, "it waited its 150 ms (%.3f s)", w.waited_s);
	cr_expect_lt(w.waited_s, 1.5, "and not much longer (%.3f s)", w.waited_s);

	/* the timed-out wait is disarmed: data arriving later wakes only the next waiter */
	cr_assert_eq(write(p[1], "y", 1), 1);
	usleep(50000);
	struct pipe_reader r = {p[0], -1, 0, false};
	cr_assert(fiber_spawn(l, read_one, &r));
	settle(l, 5);
	cr_expect_eq(atomic_load(&r.got), 'y');
	cr_expect(atomic_load(&r.revents) & POLLIN);
	fiber_loop_stop(l);
	close(p[0]), close(p[1]);
}

struct ticker {
	int ticks;
	double slept_s;
	bool in_fiber;
};

static void sleep_long(void *arg)
{
	struct ticker *t = arg;
	t->in_fiber = fiber_current();
	double t0 = monotonic_seconds();
	fiber_sleep_ms(200);
	t->slept_s = monotonic_seconds() - t0;
}

static void tick(void *arg)
{
	struct ticker *t = arg;
	for (int i = 0; i < 5; i++) {
		fiber_sleep_ms(10);
		t->ticks++;
	}
}

Test(fiber, sleep_in_a_fiber_sleeps_its_time_without_holding_up_the_others)
{
	struct fiber_loop *l = start();
	struct ticker sleeper = {0, 0, false}, ticker = {0, 0, false};
	cr_assert(fiber_spawn(l, sleep_long, &sleeper));
	cr_assert(fiber_spawn(l, tick, &ticker));
	/* the ticker's 5 x 10 ms run while the other fiber sleeps on the same thread */
	for (int i = 0; i < 1000 && fiber_count(l) > 1; i++)
		usleep(1000);
	cr_expect_eq(ticker.ticks, 5, "the ticker finished first");
	cr_expect_eq(sleeper.slept_s, 0, "while the sleeper still sleeps");
	settle(l, 5);
	cr_expect(sleeper.in_fiber);
	cr_expect_geq(sleeper.slept_s, 0.195, "the sleeper slept its 200 ms (%.3f s)", sleeper.slept_s);
	cr_expect_lt(sleeper.slept_s, 1.5, "%.3f s", sleeper.slept_s);
	fiber_loop_stop(l);
}

/* A waker that acts once the queue's timed waiters have timed out. */
struct late_waker {
	struct fiber_queue *q;
	unsigned after_ms;
	int calls;
	bool results[4];
};

static void wake_late(void *arg)
{
	struct late_waker *w = arg;
	fiber_sleep_ms(w->after_ms);
	for (int i = 0; i < w->calls; i++)
		w->results[i] = fiber_queue_wake_one(w->q);
}

Test(fiber, a_timed_out_queue_waiter_leaves_the_queue)
{
	struct fiber_loop *l = start();
	struct fiber_queue q = {0};

	/* alone in the queue: it times out, and the queue is empty again */
	struct queuer alone = {&q, 30, -1};
	cr_assert(fiber_spawn(l, wait_in_queue, &alone));
	settle(l, 5);
	cr_expect_eq(alone.result, 0, "fiber_queue_wait returns false on timeout");
	cr_expect_null(q.head, "the timed-out fiber is no longer the queue's head");
	cr_expect_null(q.tail, "nor its tail");
	struct late_waker nobody = {&q, 0, 1, {true}};
	cr_assert(fiber_spawn(l, wake_late, &nobody));
	settle(l, 5);
	cr_expect_not(nobody.results[0], "waking an empty queue returns false");

	/* at the head, then at the tail: after they time out the real waiters get the turns,
	 * and one that queues up after a timed-out tail is not lost */
	struct queuer hasty_head = {&q, 20, -1}, patient = {&q, -1, -1}, hasty_tail = {&q, 40, -1},
		      latecomer = {&q, -1, -1};
	cr_assert(fiber_spawn(l, wait_in_queue, &hasty_head));
	cr_assert(fiber_spawn(l, wait_in_queue, &patient));
	cr_assert(fiber_spawn(l, wait_in_queue, &hasty_tail));
	for (int i = 0; i < 500 && hasty_tail.result == -1; i++)
		usleep(2000);
	cr_assert_eq(hasty_head.result, 0, "the head timed out");
	cr_assert_eq(hasty_tail.result, 0, "the tail timed out");
	cr_expect_eq(patient.result, -1, "the patient one still waits");
	cr_expect_eq(q.head, q.tail, "one fiber is left in the queue");
	cr_expect_not_null(q.head);
	cr_assert(fiber_spawn(l, wait_in_queue, &latecomer));
	usleep(20000);
	struct late_waker w = {&q, 10, 3, {false}};
	cr_assert(fiber_spawn(l, wake_late, &w));
	settle(l, 5);
	cr_expect(w.results[0] && w.results[1], "two real waiters were woken");
	cr_expect_not(w.results[2], "and nobody else: the timed-out ones are gone");
	cr_expect_eq(patient.result, 1);
	cr_expect_eq(latecomer.result, 1, "the fiber queued after a timed-out tail got its turn");
	cr_expect_eq(hasty_head.result, 0, "a timed-out fiber is not woken again");
	cr_expect_eq(hasty_tail.result, 0);
	cr_expect_null(q.head);
	cr_expect_null(q.tail);
	fiber_loop_stop(l);
}

/* One of many timed waits; each notes the order in which it ended. */
enum timed_kind { TIMED_SLEEP, TIMED_FD, TIMED_QUEUE, TIMED_KINDS };

struct timed {
	enum timed_kind kind;
	int timeout_ms;
	int fd;		       /* TIMED_FD: a pipe nobody writes to */
	struct fiber_queue *q; /* TIMED_QUEUE: a queue nobody wakes */
	int *next;
	int rank;   /* 1 for the first to wake, ... */
	int result; /* the wait's answer: 0 or false on timeout */
};

static void timed_wait(void *arg)
{
	struct timed *t = arg;
	switch (t->kind) {
	case TIMED_SLEEP:
		fiber_sleep_ms((unsigned)t->timeout_ms);
		t->result = 0;
		break;
	case TIMED_FD:
		t->result = fiber_wait_fd(t->fd, POLLIN, t->timeout_ms);
		break;
	default:
		t->result = fiber_queue_wait(t->q, t->timeout_ms) ? 1 : 0;
		break;
	}
	t->rank = (*t->next)++;
}

/* Waits with long limits that end early (woken, or their descriptor ready). */
struct interloper {
	struct fiber_queue *q;
	int fd; /* -1: waits in q */
	int result;
};

static void interlope(void *arg)
{
	struct interloper *w = arg;
	w->result = w->fd >= 0 ? fiber_wait_fd(w->fd, POLLIN, 10000) : fiber_queue_wait(w->q, 10000);
}

static void wake_all_after_a_while(void *arg)
{
	struct fiber_queue *q = arg;
	fiber_sleep_ms(60);
	while (fiber_queue_wake_one(q))
		;
}

Test(fiber, many_timed_waits_end_in_deadline_order)
{
	enum { N = 36, STEP_MS = 6, EARLY = 8 };
	struct fiber_loop *l = start();
	struct fiber_queue timed_q = {0}, early_q = {0};
	struct timed t[N];
	struct interloper early[EARLY];
	int pipes[N + EARLY][2];
	int next = 1;

	for (int i = 0; i < N + EARLY; i++)
		cr_assert_eq(pipe(pipes[i]), 0);
	/* timeouts in a scrambled order (7 and 36 are coprime), the kinds interleaved */
	for (int i = 0; i < N; i++) {
		int slot = (i * 7) % N;
		t[i] = (struct timed){.kind = (enum timed_kind)(i % TIMED_KINDS),
				      .timeout_ms = STEP_MS * (slot + 1),
				      .fd = pipes[i][0],
				      .q = &timed_q,
				      .next = &next,
				      .result = -1};
	}
	/* long waits that leave the timer heap early, from its middle, while the others wait */
	for (int i = 0; i < EARLY; i++)
		early[i] = (struct interloper){&early_q, i % 2 ? pipes[N + i][0] : -1, -2};
	for (int i = 0; i < EARLY; i++)
		cr_assert(fiber_spawn(l, interlope, &early[i]));
	for (int i = 0; i < N; i++)
		cr_assert(fiber_spawn(l, timed_wait, &t[i]));
	cr_assert(fiber_spawn(l, wake_all_after_a_while, &early_q));
	usleep(60000);
	for (int i = 1; i < EARLY; i += 2)
		cr_assert_eq(write(pipes[N + i][1], "e", 1), 1);
	settle(l, 10);

	for (int i = 0; i < EARLY; i++)
		cr_expect_eq(early[i].result, i % 2 ? POLLIN : 1, "interloper %d ended early (%d)", i,
			     early[i].result);
	for (int i = 0; i < N; i++) {
		int slot = (i * 7) % N;
		cr_expect_eq(t[i].result, 0, "wait %d (kind %d) timed out", i, (int)t[i].kind);
		cr_expect_eq(t[i].rank, slot + 1, "the wait of %d ms (kind %d) ended as number %d, not %d",
			     t[i].timeout_ms, (int)t[i].kind, t[i].rank, slot + 1);
	}
	cr_expect_null(timed_q.head, "every timed-out queue waiter left the queue");
	cr_expect_null(early_q.head);
	fiber_loop_stop(l);
	for (int i = 0; i < N + EARLY; i++)
		close(pipes[i][0]), close(pipes[i][1]);
}
