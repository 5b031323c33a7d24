/* probes.c - see probes.h. */
#include "probes.h"

#include <stdlib.h>
#include <string.h>

#include "checkout/db.h"
#include "checkout/fiber.h"

enum MHD_Result probes_handle_healthz(struct http_request *req, const char *param)
{
	(void)param;
	return http_reply_json(req, 200, json_pack("{s:s}", "status", "alive"), NULL);
}

enum MHD_Result probes_handle_readyz(struct http_request *req, const char *param)
{
	char err[256];
	(void)param;
	/* a probe must answer quickly, whatever the database does: a frozen one is "not ready" */
	if (fiber_deadline_left_ms() > PROBES_READYZ_TIMEOUT_MS)
		fiber_set_deadline_ms(PROBES_READYZ_TIMEOUT_MS);
	PGconn *conn = db_pool_acquire(req->srv->pool, PROBES_READYZ_TIMEOUT_MS, err, sizeof(err));
	bool ok = conn && db_command(conn, "SELECT 1", err, sizeof(err));
	db_pool_release(req->srv->pool, conn);
	if (!ok)
		return http_reply_unavailable(req, "database-unavailable", err);
	return http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"), NULL);
}

enum MHD_Result probes_handle_metrics(struct http_request *req, const char *param)
{
	(void)param;
	char *text = metrics_render(req->srv->pool);
	if (!text)
		return MHD_NO;
	enum MHD_Result ret = http_reply(req, 200, "text/plain; version=0.0.4", text, strlen(text), NULL);
	free(text);
	return ret;
}
