/* hotqueue.c - striped mutexes that queue checkouts of the same SKU. */
#include "checkout/hotqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct hotqueue {
	atomic_ulong waits;
	/* a mutex per cache line, so stripes in use by different cores do not share one */
	struct {
		pthread_mutex_t mutex;
		char pad[64 - sizeof(pthread_mutex_t) % 64];
	} stripe[HOTQUEUE_STRIPES];
};

struct hotqueue *hotqueue_create(void)
{
	struct hotqueue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	for (unsigned i = 0; i < HOTQUEUE_STRIPES; i++)
		pthread_mutex_init(&q->stripe[i].mutex, NULL);
	return q;
}

void hotqueue_destroy(struct hotqueue *q)
{
	if (!q)
		return;
	for (unsigned i = 0; i < HOTQUEUE_STRIPES; i++)
		pthread_mutex_destroy(&q->stripe[i].mutex);
	free(q);
}

void hotqueue_hold_init(struct hotqueue_hold *hold)
{
	memset(hold, 0, sizeof(*hold));
}

/* FNV-1a: SKUs like "sku-00042" differ in their last bytes, which it mixes well */
static unsigned hotqueue_stripe(const char *sku)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)sku; *p; p++)
		h = (h ^ *p) * 16777619u;
	h ^= h >> 15;
	return h & (HOTQUEUE_STRIPES - 1);
}

void hotqueue_hold_add(struct hotqueue_hold *hold, const char *sku)
{
	unsigned s = hotqueue_stripe(sku);
	hold->bits[s / 64] |= UINT64_C(1) << (s % 64);
}

void hotqueue_acquire(struct hotqueue *q, struct hotqueue_hold *hold)
{
	if (!q || hold->held)
		return;
	/* ascending stripe order: no two holds can wait for each other in a cycle */
	for (unsigned w = 0; w < HOTQUEUE_STRIPES / 64; w++) {
		for (uint64_t bits = hold->bits[w]; bits; bits &= bits - 1) {
			pthread_mutex_t *m = &q->stripe[w * 64 + (unsigned)__builtin_ctzll(bits)].mutex;
			if (pthread_mutex_trylock(m) != 0) {
				atomic_fetch_add_explicit(&q->waits, 1, memory_order_relaxed);
				pthread_mutex_lock(m);
			}
		}
	}
	hold->held = true;
}

void hotqueue_release(struct hotqueue *q, struct hotqueue_hold *hold)
{
	if (!q || !hold->held)
		return;
	for (unsigned w = 0; w < HOTQUEUE_STRIPES / 64; w++)
		for (uint64_t bits = hold->bits[w]; bits; bits &= bits - 1)
			pthread_mutex_unlock(&q->stripe[w * 64 + (unsigned)__builtin_ctzll(bits)].mutex);
	hold->held = false;
}

unsigned long hotqueue_waits(const struct hotqueue *q)
{
	return q ? atomic_load_explicit(&q->waits, memory_order_relaxed) : 0;
}
