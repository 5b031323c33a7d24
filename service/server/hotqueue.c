/* hotqueue.c - stripes with FIFO wait queues that order checkouts of the same SKU. */
#include "hotqueue.h"

#include <stdlib.h>
#include <string.h>

#include "checkout/fiber.h"
#include "checkout/partition.h"

struct hotqueue {
	unsigned long waits;
	struct {
		bool busy;
		struct fiber_queue waiting;
	} stripe[HOTQUEUE_STRIPES];
};

struct hotqueue *hotqueue_create(void)
{
	return calloc(1, sizeof(struct hotqueue));
}

void hotqueue_destroy(struct hotqueue *q)
{
	free(q);
}

void hotqueue_hold_init(struct hotqueue_hold *hold)
{
	memset(hold, 0, sizeof(*hold));
}

/* the SKU hash every program shares, its high bits folded into the stripe bits */
static unsigned hotqueue_stripe(const char *sku)
{
	uint32_t h = partition_hash(sku);
	h ^= h >> 15;
	return h & (HOTQUEUE_STRIPES - 1);
}

void hotqueue_hold_add(struct hotqueue_hold *hold, const char *sku)
{
	unsigned s = hotqueue_stripe(sku);
	hold->bits[s / 64] |= UINT64_C(1) << (s % 64);
}

/* Give back the stripes of hold below stripe `until` (those an acquire took before it gave up). */
static void release_below(struct hotqueue *q, struct hotqueue_hold *hold, unsigned until)
{
	for (unsigned w = 0; w < HOTQUEUE_STRIPES / 64; w++) {
		for (uint64_t bits = hold->bits[w]; bits; bits &= bits - 1) {
			unsigned s = w * 64 + (unsigned)__builtin_ctzll(bits);
			if (s >= until)
				return;
			/* hand the stripe to the first fiber waiting, or mark it free */
			if (!fiber_queue_wake_one(&q->stripe[s].waiting))
				q->stripe[s].busy = false;
		}
	}
}

bool hotqueue_acquire(struct hotqueue *q, struct hotqueue_hold *hold)
{
	if (!q || hold->held)
		return true;
	/* ascending stripe order: no two holds can wait for each other in a cycle */
	for (unsigned w = 0; w < HOTQUEUE_STRIPES / 64; w++) {
		for (uint64_t bits = hold->bits[w]; bits; bits &= bits - 1) {
			unsigned s = w * 64 + (unsigned)__builtin_ctzll(bits);
			if (!q->stripe[s].busy) {
				q->stripe[s].busy = true;
				continue;
			}
			q->waits++;
			/* the holder hands the stripe over when done; the fiber's deadline bounds the wait */
			if (!fiber_queue_wait(&q->stripe[s].waiting, -1)) {
				release_below(q, hold, s);
				return false;
			}
		}
	}
	hold->held = true;
	return true;
}

void hotqueue_release(struct hotqueue *q, struct hotqueue_hold *hold)
{
	if (!q || !hold->held)
		return;
	release_below(q, hold, HOTQUEUE_STRIPES);
	hold->held = false;
}

unsigned long hotqueue_waits(const struct hotqueue *q)
{
	return q ? q->waits : 0;
}
