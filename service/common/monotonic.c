/* monotonic.c - see monotonic.h. */
#include "checkout/monotonic.h"

#include <time.h>

int64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long long monotonic_ms(void)
{
	return (long long)(monotonic_ns() / 1000000);
}

double monotonic_seconds(void)
{
	return (double)monotonic_ns() / 1e9;
}
