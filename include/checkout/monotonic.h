/* monotonic.h - the one clock for durations, deadlines and timeouts.
 *
 * CLOCK_MONOTONIC: it never jumps with the wall clock (NTP, an operator's
 * date), so a deadline computed from it holds. Each function gives the same
 * clock in the unit its callers count in; they never fail.
 */
#ifndef CHECKOUT_MONOTONIC_H
#define CHECKOUT_MONOTONIC_H

#include <stdint.h>

/* Nanoseconds since an arbitrary start (the boot, on Linux). */
int64_t monotonic_ns(void);

/* Milliseconds on the same clock. */
long long monotonic_ms(void);

/* Seconds on the same clock, with a fraction. */
double monotonic_seconds(void);

#endif
