/* dashboard.h - checkout-analytics' live dashboard: one page and a Server-Sent Events stream.
 *
 * A collector thread gathers, about twice a second, a snapshot as one JSON
 * document: the analytics view (totals, minutes of the last hour, top SKUs),
 * the SKUs at or below the low-stock threshold (the stock the inventory
 * view took from the latest order's event, as checkout-inventory warns),
 * pipeline health (each consumer group's lag behind the topic, the relay's
 * pending outbox rows, each worker's dead letters and last applied event)
 * and checkout outcomes per minute from the server's /metrics. An HTTP
 * daemon (libmicrohttpd, a thread per connection, bounded) serves the page,
 * its CSS and JS (embedded at build time from service/workers/dashboard/),
 * GET /snapshot.json and GET /events, which sends every new snapshot as one
 * SSE message (and ends when the dashboard stops).
 */
#ifndef CHECKOUT_WORKERS_DASHBOARD_H
#define CHECKOUT_WORKERS_DASHBOARD_H

#include <stddef.h>

#include "checkout/config.h"

struct dashboard;

/*
 * Start serving on cfg->dashboard_listen. cfg must outlive the dashboard.
 * Returns NULL with a reason in err when the address is malformed or cannot
 * be bound, or a thread cannot start.
 */
struct dashboard *dashboard_start(const struct config *cfg, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Close every stream, stop serving and collecting, free d. Accepts NULL. */
void dashboard_stop(struct dashboard *d);

/* The files of the page, embedded at build time (dashboard_assets.c, generated). */
struct dashboard_asset {
	const char *path; /* "/index.html" */
	const unsigned char *data;
	size_t len;
};
extern const struct dashboard_asset dashboard_assets[]; /* ends with a NULL path */

#endif
