/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

struct relay_metrics {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock;
	unsigned long published;
	unsigned long failed;
	long pending;
	double oldest_pending_s;
	unsigned long long lag_bytes;
	double lag_seconds;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	struct relay_metrics *m = cls;
	char body[2560];
	unsigned status = MHD_HTTP_NOT_FOUND;
	const char *type = "text/plain; charset=utf-8";

	if (strcmp(url, "/metrics") != 0 || strcmp(method, "GET") != 0) {
		snprintf(body, sizeof(body), "not found: GET /metrics\n");
	} else {
		pthread_mutex_lock(&m->lock);
		snprintf(
		    body, sizeof(body),
		    "# HELP checkout_relay_published_total Events published (delivery acknowledged, "
		    "row marked or slot position confirmed) since start.\n"
		    "# TYPE checkout_relay_published_total counter\n"
		    "checkout_relay_published_total %lu\n"
		    "# HELP checkout_relay_delivery_failures_total Messages whose delivery failed (left "
		    "pending, "
		    "sent again).\n"
		    "# TYPE checkout_relay_delivery_failures_total counter\n"
		    "checkout_relay_delivery_failures_total %lu\n"
		    "# HELP checkout_relay_pending_rows Events not yet published: outbox rows, or (WAL mode) "
		    "events read from the slot and not yet acknowledged.\n"
		    "# TYPE checkout_relay_pending_rows gauge\n"
		    "checkout_relay_pending_rows %ld\n"
		    "# HELP checkout_relay_oldest_pending_seconds Age of the oldest pending outbox row.\n"
		    "# TYPE checkout_relay_oldest_pending_seconds gauge\n"
		    "checkout_relay_oldest_pending_seconds %.3f\n"
		    "# HELP checkout_relay_slot_lag_bytes WAL mode: bytes of WAL between the server's end and "
		    "the slot's confirmed position.\n"
		    "# TYPE checkout_relay_slot_lag_bytes gauge\n"
		    "checkout_relay_slot_lag_bytes %llu\n"
		    "# HELP checkout_relay_slot_lag_seconds WAL mode: age of the oldest commit whose events are "
		    "not yet acknowledged by the broker.\n"
		    "# TYPE checkout_relay_slot_lag_seconds gauge\n"
		    "checkout_relay_slot_lag_seconds %.3f\n",
		    m->published, m->failed, m->pending, m->oldest_pending_s, m->lag_bytes, m->lag_seconds);
		pthread_mutex_unlock(&m->lock);
		status = MHD_HTTP_OK;
		type = "text/plain; version=0.0.4; charset=utf-8";
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

struct relay_metrics *relay_metrics_start(const char *listen, char *err, size_t errlen)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(listen, ':');
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || (size_t)(colon - listen) >= sizeof(host) || !end || *end || port < 1 || port > 65535) {
		snprintf(err, errlen, "metrics-listen '%s' is not host:port", listen);
		return NULL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &addr.sin_addr) != 1) {
		snprintf(err, errlen, "metrics-listen host '%s' is not an IPv4 address", host);
		return NULL;
	}
	addr.sin_port = htons((uint16_t)port);

	struct relay_metrics *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
				     on_request, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
	if (!m->daemon) {
		snprintf(err, errlen, "cannot serve metrics on %s: %s", listen, strerror(errno));
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	return m;
}

void relay_metrics_set(struct relay_metrics *m, unsigned long published, unsigned long failed, long pending,
		       double oldest_pending_s)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->published = published;
	m->failed = failed;
	m->pending = pending;
	m->oldest_pending_s = oldest_pending_s;
	pthread_mutex_unlock(&m->lock);
}

void relay_metrics_set_lag(struct relay_metrics *m, unsigned long long bytes, double seconds)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->lag_bytes = bytes;
	m->lag_seconds = seconds;
	pthread_mutex_unlock(&m->lock);
}

void relay_metrics_stop(struct relay_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->daemon);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
