/* server.h - what the whole of checkout-server shares: struct server.
 *
 * main.c fills it, the transport (http.c) runs on it, and every handler
 * reaches it through its request (req->srv). It knows neither HTTP nor any
 * handler, so any file of the server may include it.
 */
#ifndef CHECKOUT_SERVER_SERVER_H
#define CHECKOUT_SERVER_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "checkout/config.h"

struct db_pool;
struct hotqueue;
struct fiber_loop;
struct MHD_Daemon;
struct http_conn;

/* What every handler may use; lives as long as the daemon. */
struct server {
	const struct config *cfg;
	struct db_pool *pool;
	struct hotqueue *hotq;	   /* the hot-SKU queue; NULL when switched off */
	struct fiber_loop *loop;   /* runs MHD and every request's handler, in fibers */
	struct MHD_Daemon *daemon; /* loop thread only */
	int in_flight;		   /* requests whose fiber runs; loop thread only */
	bool kick_pending;	   /* an MHD run for resumed connections is due; loop thread only */
	struct http_conn *conns;   /* every open client connection; loop thread only */
	atomic_bool stopping;	   /* set by http_stop: new requests get 503 */
};

#endif
