/* metrics.h - the relay's numbers as Prometheus text on --metrics-listen. */
#ifndef CHECKOUT_RELAY_METRICS_H
#define CHECKOUT_RELAY_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct relay_metrics;

/*
 * Serve GET /metrics on listen ("host:port") from a thread of its own.
 * Returns NULL with a reason in err when listen is malformed or the port
 * cannot be bound. Stop with relay_metrics_stop().
 */
struct relay_metrics *relay_metrics_start(const char *listen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Record the latest numbers (thread-safe). m may be NULL: then nothing happens. */
void relay_metrics_set(struct relay_metrics *m, unsigned long published, unsigned long failed, long pending,
		       double oldest_pending_s);

/* Record the replication slot's lag (WAL mode): bytes of WAL and seconds behind. Accepts NULL. */
void relay_metrics_set_lag(struct relay_metrics *m, unsigned long long bytes, double seconds);

/* Stop serving and free m. Accepts NULL. */
void relay_metrics_stop(struct relay_metrics *m);

#endif
