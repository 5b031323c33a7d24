/* hotqueue.h - one checkout at a time per SKU inside this process.
 *
 * Checkouts of the same SKU that run at the same time conflict in the
 * database: under SERIALIZABLE all but one fail and are retried, which costs
 * more than the work itself when a SKU is hot. The hot-SKU queue makes them
 * wait their turn in the process instead, so only one at a time reaches the
 * database. It is an optimisation only: correctness comes from SERIALIZABLE,
 * which still guards against other processes (and the queue can be switched
 * off with --hot-sku-queue=false).
 *
 * SKUs are hashed onto HOTQUEUE_STRIPES stripes. A checkout collects the
 * stripes of its cart in a hold, takes them in ascending order (so two carts
 * can never wait for each other in a cycle), runs its transaction and gives
 * them back. A busy stripe parks the fiber in the stripe's FIFO; giving a
 * stripe back hands it to the first fiber waiting, so checkouts of a hot SKU
 * run in the order they arrived. With 10,000 SKUs and 1024 stripes,
 * unrelated checkouts rarely share a stripe. The queue belongs to the
 * fibers of one loop (fiber.h) and has no locks.
 */
#ifndef CHECKOUT_SERVER_HOTQUEUE_H
#define CHECKOUT_SERVER_HOTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#define HOTQUEUE_STRIPES 1024

struct hotqueue;

/* The stripes one checkout needs: a bit per stripe. Lives on the caller's stack. */
struct hotqueue_hold {
	uint64_t bits[HOTQUEUE_STRIPES / 64];
	bool held;
};

/* Create a queue. Returns NULL when out of memory. Free with hotqueue_destroy. */
struct hotqueue *hotqueue_create(void) __attribute__((warn_unused_result));

/* Free the queue; no hold may be held. Accepts NULL. */
void hotqueue_destroy(struct hotqueue *q);

/* Empty hold (no stripes). */
void hotqueue_hold_init(struct hotqueue_hold *hold);

/* Add the stripe of sku to hold. Adding a SKU twice, or two SKUs of one stripe, is fine. */
void hotqueue_hold_add(struct hotqueue_hold *hold, const char *sku);

/*
 * Wait for and take every stripe of hold, in ascending order. Returns true
 * when all are taken (pair it with hotqueue_release on the same hold), or
 * false when the fiber's deadline (fiber_set_deadline_ms) passed first:
 * then nothing is held. With q NULL (queue switched off) it returns true
 * at once. Call it from a fiber.
 */
bool hotqueue_acquire(struct hotqueue *q, struct hotqueue_hold *hold) __attribute__((warn_unused_result));

/* Give back the stripes of hold. Safe when nothing is held, and to call twice. */
void hotqueue_release(struct hotqueue *q, struct hotqueue_hold *hold);

/* How many acquires had to wait for another checkout so far (0 for NULL). */
unsigned long hotqueue_waits(const struct hotqueue *q);

#endif
