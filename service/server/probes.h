/* probes.h - what an orchestrator and Prometheus ask: GET /healthz, /readyz, /metrics. */
#ifndef CHECKOUT_SERVER_PROBES_H
#define CHECKOUT_SERVER_PROBES_H

#include "http.h"

/* How long /readyz waits for the database before saying "not ready". */
#define PROBES_READYZ_TIMEOUT_MS 900

/* GET /healthz: 200 {"status": "alive"} while the process serves requests at all. */
enum MHD_Result probes_handle_healthz(struct http_request *req, const char *param);

/*
 * GET /readyz: 200 {"status": "ready"} when a pooled connection answers
 * SELECT 1 within PROBES_READYZ_TIMEOUT_MS, else 503 database-unavailable
 * (a frozen database is "not ready", never a hung probe).
 */
enum MHD_Result probes_handle_readyz(struct http_request *req, const char *param);

/* GET /metrics: every counter as Prometheus text (metrics.h). */
enum MHD_Result probes_handle_metrics(struct http_request *req, const char *param);

#endif
