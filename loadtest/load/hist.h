/* hist.h - a latency histogram with log-linear buckets (HDR-like).
 *
 * Values are microseconds. Below 256 every value has its own bucket; above,
 * each power of two is split into 128 buckets, so a recorded value is known
 * to within 1/128 (0.8 %). The range ends at 2^40 us (about 12 days); larger
 * values land in the last bucket. Recording is a plain increment: give each
 * thread its own histogram and merge them at the end.
 */
#ifndef LOAD_HIST_H
#define LOAD_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 33 /* 2^(33+7) us is the largest value kept apart */
#define HIST_BUCKETS ((HIST_MAX_SHIFT + 2) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	uint64_t min;
	double sum;
	uint64_t buckets[HIST_BUCKETS];
};

/* Empty h (it needs no other initialisation and owns nothing). */
void hist_reset(struct hist *h);

/* Count one value (microseconds). */
void hist_record(struct hist *h, uint64_t value);

/* Add every count of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/*
 * The value at percentile p (0..100): the highest value that is equivalent
 * (same bucket) to the value below which p percent of the counts lie. 100
 * gives the exact maximum. 0 for an empty histogram.
 */
uint64_t hist_percentile(const struct hist *h, double p);

/* Mean of the recorded values (0 when empty). */
double hist_mean(const struct hist *h);

/* Bucket index of a value, and the highest value of a bucket (for iterating). */
unsigned hist_index(uint64_t value);
uint64_t hist_bucket_high(unsigned index);

#endif
