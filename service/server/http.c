/* http.c - see http.h. */
#define _GNU_SOURCE
#include "http.h"

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "checkout/db.h"
#include "checkout/errbuf.h"
#include "checkout/fiber.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"
#include "problem.h"
#include "routes.h"

/* MHD's buffer per connection (headers, body chunks), cleared for every request: its default
 * of 32 KiB made that clearing a visible share of the server's CPU; headers still get 12 KiB */
#define HTTP_CONNECTION_MEMORY (16 * 1024)

const char *http_header(struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

enum MHD_Result http_reply(struct http_request *req, unsigned status, const char *content_type,
			   const char *body, size_t len, const char *const *headers)
{
	if (req->status)
		return MHD_NO; /* one reply per request */
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	bool ok = !content_type ||
		  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) == MHD_YES;
	for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
		ok = ok && MHD_add_response_header(resp, headers[i], headers[i + 1]) == MHD_YES;
	if (!ok) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	if (req->in_fiber) {
		/* the connection is suspended: MHD's thread queues this when the fiber resumes it */
		req->response = resp;
	} else {
		enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
		MHD_destroy_response(resp);
		if (ret != MHD_YES)
			return ret;
	}
	req->status = status;
	metrics_request(req->metric, status);
	return MHD_YES;
}

enum MHD_Result http_reply_json(struct http_request *req, unsigned status, json_t *body,
				const char *const *headers)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	if (!text)
		return MHD_NO;
	enum MHD_Result ret =
	    http_reply(req, status, status >= 400 ? "application/problem+json" : "application/json", text,
		       strlen(text), headers);
	free(text);
	return ret;
}

enum MHD_Result http_reply_problem(struct http_request *req, unsigned status, const char *name,
				   const char *detail, json_t *extra)
{
	return http_reply_problem_with(req, status, name, detail, extra, NULL);
}

enum MHD_Result http_reply_problem_with(struct http_request *req, unsigned status, const char *name,
					const char *detail, json_t *extra, const char *const *headers)
{
	return http_reply_json(req, status, problem_new(status, name, detail, extra), headers);
}

enum MHD_Result http_reply_invalid(struct http_request *req, json_t *errors)
{
	json_t *extra = json_pack("{s:o}", "errors", errors ? errors : json_array());
	return http_reply_problem(
	    req, 400, "invalid-request",
	    "The request is not valid; errors names each field, header or parameter that is wrong.", extra);
}

enum MHD_Result http_reply_db_error(struct http_request *req, const PGresult *res)
{
	log_error("%s %s: %s", req->method, req->url, res ? PQresultErrorMessage(res) : "no result");
	return http_reply_problem(req, 500, "internal-error", "The request failed.", NULL);
}

enum MHD_Result http_reply_unavailable(struct http_request *req, const char *name, const char *detail)
{
	static const char *const headers[] = {"Retry-After", "1", NULL};
	return http_reply_problem_with(req, 503, name, detail, NULL, headers);
}

bool http_require_admin(struct http_request *req, enum MHD_Result *ret)
{
	static const char *const challenge[] = {"WWW-Authenticate", "Bearer", NULL};
	const char *token = req->srv->cfg->admin_token;
	if (!token || !*token) {
		*ret = http_reply_problem(req, 403, "forbidden",
					  "No ADMIN_TOKEN is configured on this server.", NULL);
		return false;
	}
	const char *auth = http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *given = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : "";
	size_t glen = strlen(given), tlen = strlen(token);
	/* compare every byte of the longer string so the time does not say where they differ */
	unsigned char diff = glen != tlen;
	size_t n = glen > tlen ? glen : tlen;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)((i < glen ? given[i] : 0) ^ (i < tlen ? token[i] : 0));
	if (diff) {
		*ret = http_reply_problem_with(req, 401, "unauthorized", "Missing or wrong bearer token.",
					       NULL, challenge);
		return false;
	}
	return true;
}

bool http_require_json(struct http_request *req, enum MHD_Result *ret)
{
	const char *type = http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = strlen("application/json");
	if (type && !strncasecmp(type, "application/json", n) &&
	    (type[n] == '\0' || type[n] == ';' || type[n] == ' '))
		return true;
	*ret = http_reply_problem(req, 415, "unsupported-media-type", "Send the body as application/json.",
				  NULL);
	return false;
}

PGresult *http_db_exec(struct http_request *req, const char *stmt, int n, const char *const *params,
		       enum MHD_Result *ret)
{
	char err[512] = "";
	PGresult *res = NULL;
	for (int tries = 0; tries <= req->srv->cfg->db_pool_size + 1; tries++) {
		PGconn *conn = db_pool_acquire(req->srv->pool, HTTP_DB_WAIT_MS, err, sizeof(err));
		if (!conn)
			break;
		res = db_exec_prepared(conn, stmt, n, params);
		bool lost = !res || PQstatus(conn) == CONNECTION_BAD;
		if (lost)
			errbuf_set(err, sizeof(err), "%s", PQerrorMessage(conn));
		db_pool_release(req->srv->pool, conn);
		if (!lost)
			return res;
		PQclear(res);
		res = NULL;
	}
	log_warn("database unavailable: %s", err);
	*ret = http_reply_unavailable(req, "database-unavailable",
				      "The database cannot be reached; retry later.");
	return NULL;
}

static enum MHD_Result method_not_allowed(struct http_request *req, const char *allow)
{
	const char *headers[] = {"Allow", allow, NULL};
	char detail[128];
	snprintf(detail, sizeof(detail), "This path allows %s.", allow);
	return http_reply_problem_with(req, 405, "method-not-allowed", detail, NULL, headers);
}

static enum MHD_Result not_found(struct http_request *req)
{
	return http_reply_problem(req, 404, "not-found", "No such resource.", NULL);
}

/* Answer req by its route: the checks its entry asks for (routes.h, in that order), then its handler. */
static enum MHD_Result dispatch(struct http_request *req)
{
	enum MHD_Result ret;
	char allow[64];

	if (req->body_too_large)
		return http_reply_problem(req, 413, "payload-too-large",
					  "The body must be at most 65536 bytes.", NULL);
	if (!req->route)
		return not_found(req);
	const struct route *r = routes_match_method(req->route, req->method, allow, sizeof(allow));
	if (!r)
		return method_not_allowed(req, allow);
	if (r->param_ok && !r->param_ok(req->param))
		return not_found(req);
	if (r->admin && !http_require_admin(req, &ret))
		return ret;
	if (r->json_body && !http_require_json(req, &ret))
		return ret;
	return r->handle(req, req->param);
}

/* Run MHD once for the connections resumed since the last run (batched: see run_handler). */
static void kick(void *arg)
{
	struct server *srv = arg;
	srv->kick_pending = false;
	/*
	 * A resumed connection takes a few runs (queue the reply, send it, find
	 * no next request yet and go back into MHD's epoll set); MHD says "run me
	 * again" with a zero timeout. The pump, parked on MHD's descriptor, would
	 * not see that until its own timeout.
	 */
	for (int runs = 0; srv->daemon; runs++) {
		MHD_run(srv->daemon);
		MHD_UNSIGNED_LONG_LONG ms = 1;
		if (MHD_get_timeout(srv->daemon, &ms) != MHD_YES || ms > 0)
			break;
		if (runs == 8) { /* let the other fibers in, and carry on after them */
			srv->kick_pending = fiber_spawn(srv->loop, kick, srv);
			break;
		}
	}
}

/* A request's fiber: run the handler, then hand the connection back to MHD. */
static void run_handler(void *arg)
{
	struct http_request *req = arg;
	struct server *srv = req->srv;
	/* the request's deadline: every wait of the handler ends by then */
	int left = srv->cfg->request_timeout_ms - (int)((monotonic_seconds() - req->started) * 1000.0);
	fiber_set_deadline_ms(left > 1 ? left : 1);
	req->in_fiber = true;
	req->result = dispatch(req);
	req->in_fiber = false;
	req->handled = true;
	MHD_resume_connection(req->conn);
	srv->in_flight--;
	/* MHD sends the reply in its next run: one run, after the fibers runnable now, for all of them */
	if (!srv->kick_pending)
		srv->kick_pending = fiber_spawn(srv->loop, kick, srv);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct http_request *req = *con_cls;
	(void)version;

	if (!req) {
		/* the head has arrived: the head deadline no longer applies to this connection */
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		struct http_conn *hc = ci ? ci->socket_context : NULL;
		if (hc)
			hc->head_done = true;
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->srv = cls;
		req->conn = conn;
		req->method = method;
		req->url = url;
		req->route = routes_match_path(url, req->param, sizeof(req->param));
		req->metric = req->route ? req->route->metric : ROUTE_UNKNOWN;
		req->started = monotonic_seconds();
		*con_cls = req;
		/* refuse a body announced too large before reading it */
		const char *cl =
		    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > VALIDATE_MAX_BODY) {
			req->body_too_large = true;
			return dispatch(req);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->status || req->body_too_large)
			return MHD_YES;
		if (req->body_len + n > VALIDATE_MAX_BODY) {
			req->body_too_large = true;
			free(req->body);
			req->body = NULL;
			req->body_len = 0;
			return MHD_YES;
		}
		char *grown = realloc(req->body, req->body_len + n + 1);
		if (!grown)
			return MHD_NO;
		memcpy(grown + req->body_len, upload_data, n);
		req->body = grown;
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}
	if (req->handled) {
		/* resumed: queue what the handler's fiber replied */
		if (!req->response)
			return req->result == MHD_YES && req->status ? MHD_YES : MHD_NO;
		enum MHD_Result ret = MHD_queue_response(conn, req->status, req->response);
		MHD_destroy_response(req->response);
		req->response = NULL;
		return ret;
	}
	if (req->status)
		return MHD_YES;
	if (atomic_load(&req->srv->stopping)) {
		static const char *const close_headers[] = {"Connection", "close", "Retry-After", "1", NULL};
		return http_reply_problem_with(req, 503, "server-stopping", "Retry on another connection.",
					       NULL, close_headers);
	}
	/* the handler runs in a fiber of its own; the connection waits, suspended */
	MHD_suspend_connection(conn);
	if (!fiber_spawn(req->srv->loop, run_handler, req)) {
		req->handled = true;
		req->result = MHD_NO; /* out of memory: close the connection */
		MHD_resume_connection(conn);
		return MHD_YES;
	}
	req->srv->in_flight++;
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_request *req = *con_cls;
	(void)cls;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct http_conn *hc = ci ? ci->socket_context : NULL;
	if (hc) { /* the next request's head is awaited from now on */
		hc->head_done = false;
		hc->since = monotonic_seconds();
	}
	if (!req)
		return;
	if (log_enabled(LOG_DEBUG))
		log_msg(LOG_DEBUG, NULL, "%s %s -> %u in %.1f ms%s", req->method, req->url, req->status,
			(monotonic_seconds() - req->started) * 1000.0,
			toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
	if (req->response)
		MHD_destroy_response(req->response);
	free(req->body);
	free(req);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_msg(LOG_WARN, "mhd", "%s", line);
}

/* Keep track of client connections for the head deadline. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct server *srv = cls;
	struct http_conn *hc = *socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		hc = calloc(1, sizeof(*hc));
		if (!hc || !ci) { /* out of memory: this connection has only the idle timeout */
			free(hc);
			return;
		}
		hc->fd = ci->connect_fd;
		hc->since = monotonic_seconds();
		hc->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = hc;
		srv->conns = hc;
		*socket_context = hc;
		return;
	}
	if (!hc)
		return;
	if (hc->prev)
		hc->prev->next = hc->next;
	else
		srv->conns = hc->next;
	if (hc->next)
		hc->next->prev = hc->prev;
	free(hc);
	*socket_context = NULL;
}

/*
 * Close every connection whose request head has been arriving for longer
 * than the head deadline. The idle timeout alone cannot stop a client that
 * sends one byte a second (each byte makes it not idle), and a handful of
 * such clients would hold every connection slot. Shutting the socket down
 * makes MHD see the end of the stream and close the connection itself.
 */
static void cut_slow_heads(struct server *srv)
{
	double now = monotonic_seconds(), limit = srv->cfg->http_head_timeout_seconds;
	for (struct http_conn *hc = srv->conns; hc; hc = hc->next) {
		if (hc->head_done || hc->cut || now - hc->since < limit)
			continue;
		hc->cut = true;
		shutdown(hc->fd, SHUT_RDWR);
		log_msg(LOG_INFO, "http", "closed a connection whose request head took longer than %d s",
			srv->cfg->http_head_timeout_seconds);
	}
}

/*
 * The fiber that drives libmicrohttpd: it waits for MHD's epoll descriptor
 * (new connections, request bytes, resumed connections) and runs MHD, whose
 * callbacks start a fiber per request. At stop it lets the requests in
 * flight finish (up to HTTP_STOP_GRACE_MS), then closes the daemon.
 */
static void pump(void *arg)
{
	struct server *srv = arg;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	int fd = info ? info->epoll_fd : -1;
	double stop_by = 0, next_sweep = 0;

	for (;;) {
		bool stopping = atomic_load(&srv->stopping);
		if (stopping && stop_by == 0)
			stop_by = monotonic_seconds() + HTTP_STOP_GRACE_MS / 1000.0;
		if (stopping && (srv->in_flight == 0 || monotonic_seconds() > stop_by))
			break;
		/* wake for MHD's own timeouts too, and at least every 100 ms to notice a stop */
		MHD_UNSIGNED_LONG_LONG ms = 100;
		if (MHD_get_timeout(srv->daemon, &ms) != MHD_YES || ms > 100)
			ms = 100;
		if (fd < 0 || fiber_wait_fd(fd, POLLIN, (int)ms) < 0)
			fiber_sleep_ms((unsigned)ms);
		if (monotonic_seconds() >= next_sweep) {
			cut_slow_heads(srv);
			next_sweep = monotonic_seconds() + 0.2;
		}
		MHD_run(srv->daemon);
	}
	if (srv->in_flight > 0)
		log_warn("stopping with %d requests still running", srv->in_flight);
	else
		MHD_stop_daemon(srv->daemon);
	srv->daemon = NULL;
}

bool http_start(struct server *srv, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	char port[16];
	struct MHD_Daemon *daemon = NULL;

	snprintf(port, sizeof(port), "%d", srv->cfg->listen_port);
	int rc = getaddrinfo(srv->cfg->listen_host, port, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "cannot resolve %s: %s", srv->cfg->listen_host, gai_strerror(rc));
		return NULL;
	}
	/* no thread of MHD's own: the pump fiber runs it on the loop, beside the handlers */
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* one option and its value a line */
	// clang-format off
	daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				  MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg->http_idle_timeout_seconds,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg->http_max_connections,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)srv->cfg->http_max_connections_per_ip,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				  MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
				  MHD_OPTION_END);
	// clang-format on
	freeaddrinfo(ai);
	if (!daemon) {
		snprintf(err, errlen, "cannot listen on %s", srv->cfg->listen);
		return false;
	}
	srv->daemon = daemon;
	if (!fiber_spawn(srv->loop, pump, srv)) {
		snprintf(err, errlen, "out of memory");
		MHD_stop_daemon(daemon);
		srv->daemon = NULL;
		return false;
	}
	return true;
}

void http_stop(struct server *srv)
{
	atomic_store(&srv->stopping, true); /* the pump closes the daemon; the loop's stop waits for it */
}
