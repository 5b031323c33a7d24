/* fiber.h - cooperative fibers on one event-loop thread.
 *
 * The server handles every request in a fiber: straight-line code that
 * looks blocking (send a query, wait for its result, sleep before a retry,
 * wait for a pooled connection) but, instead of blocking a thread, parks the
 * fiber and lets the loop run the others. One thread then serves all
 * in-flight checkouts, waking once for whatever is ready instead of once per
 * connection per event: on a small machine the CPU goes to the database, not
 * to context switches.
 *
 * Everything a fiber waits on belongs to the loop's thread, so the
 * structures fibers share (the pool, the hot-SKU queue) need no locks. The
 * waiting functions also work outside a fiber (they then block the calling
 * thread), so code such as db.c serves the single-threaded programs too.
 */
#ifndef CHECKOUT_FIBER_H
#define CHECKOUT_FIBER_H

#include <stdbool.h>
#include <stddef.h>

struct fiber;
struct fiber_loop;

/* A FIFO of parked fibers (zero-initialise it). */
struct fiber_queue {
	struct fiber *head, *tail;
};

/* Create a loop and start its thread. Returns NULL (and says why in err) on failure. */
struct fiber_loop *fiber_loop_start(char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Run fn(arg) in a new fiber on the loop; callable from any thread. Returns
 * false when out of memory, or when the loop is stopping (fibers of a
 * stopping loop may still spawn: the loop ends when the last one does).
 */
bool fiber_spawn(struct fiber_loop *loop, void (*fn)(void *arg), void *arg)
    __attribute__((warn_unused_result));

/* Fibers that exist right now (running, runnable or parked). */
int fiber_count(struct fiber_loop *loop);

/* Wait until every fiber has finished, then stop the thread and free the loop. Accepts NULL. */
void fiber_loop_stop(struct fiber_loop *loop);

/* True when the caller runs in a fiber. */
bool fiber_current(void);

/*
 * Wait until fd is ready for events (POLLIN and/or POLLOUT) or timeout_ms
 * passes (-1: no limit). Returns the poll(2) revents, 0 on timeout, -1 on
 * error. In a fiber it parks the fiber; elsewhere it calls poll().
 */
int fiber_wait_fd(int fd, short events, int timeout_ms);

/*
 * Give the running fiber a deadline timeout_ms from now (-1: none): from
 * then on each of its waits (fiber_wait_fd, fiber_sleep_ms,
 * fiber_queue_wait) ends by the deadline at the latest, as if its own
 * timeout had passed, and a wait begun after it returns at once. A request
 * sets one so that no wait of it, on the database or on another request,
 * is unbounded. Does nothing outside a fiber.
 */
void fiber_set_deadline_ms(int timeout_ms);

/* Milliseconds left before the running fiber's deadline: 0 once passed, INT_MAX when it has none. */
int fiber_deadline_left_ms(void);

/* True when the running fiber has a deadline and it has passed. */
bool fiber_deadline_passed(void);

/* Sleep; in a fiber only the fiber sleeps. */
void fiber_sleep_ms(unsigned ms);

/*
 * Park the current fiber at the end of q until fiber_queue_wake_one hands
 * it the turn (true) or timeout_ms passes (false; -1: no limit). Fibers
 * only.
 */
bool fiber_queue_wait(struct fiber_queue *q, int timeout_ms);

/* Wake the first fiber parked in q. Returns false when q is empty. */
bool fiber_queue_wake_one(struct fiber_queue *q);

#endif
