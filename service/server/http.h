/* http.h - the transport of checkout-server: the daemon, requests, replies.
 *
 * libmicrohttpd runs inside the server's event loop (fiber.h) and every
 * request's handler in a fiber of its own, so a handler may wait on the
 * database without stalling other clients; the database pool bounds how
 * many of them touch PostgreSQL at once. Which handler answers a request is
 * the routes table's business (routes.h): this file knows none by name.
 * Every handler answers through one of the http_reply* functions exactly
 * once.
 */
#ifndef CHECKOUT_SERVER_HTTP_H
#define CHECKOUT_SERVER_HTTP_H

#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "server.h"
#include "validate.h"

/* How long a request waits for a database connection before a 503 (and no longer than its deadline). */
#define HTTP_DB_WAIT_MS 1500
/* How long a stopping server lets running requests finish. */
#define HTTP_STOP_GRACE_MS 30000

/* One client connection, for the head deadline (HTTP_HEAD_TIMEOUT_SECONDS); loop thread only. */
struct http_conn {
	struct http_conn *prev, *next;
	int fd;
	double since;	/* when the head now awaited began: connection opened, or last answer sent */
	bool head_done; /* the head has arrived; a request runs */
	bool cut;	/* shut down for taking too long */
};

struct route;

/* One request, allocated on its first callback and freed when it completes. */
struct http_request {
	struct server *srv;
	struct MHD_Connection *conn;
	const char *method;	     /* owned by MHD */
	const char *url;	     /* owned by MHD, percent-decoded */
	const struct route *route;   /* the routes entry its path matched (routes.h); NULL: none */
	char param[VALIDATE_ID_BUF]; /* the path's {parameter}, "" when none */
	enum metrics_route metric;   /* what it is counted under */
	char *body;
	size_t body_len;
	bool body_too_large;
	double started;	 /* monotonic seconds */
	unsigned status; /* 0 until replied */
	/* a reply made in the handler's fiber, queued by MHD's thread on resume */
	struct MHD_Response *response;
	enum MHD_Result result; /* what the handler returned */
	bool handled;		/* its fiber has run */
	bool in_fiber;		/* replies are kept for MHD's next run, not queued */
};

/*
 * Start listening on cfg->listen_host:listen_port, served by a fiber on
 * srv->loop. Returns false with a reason in err. Stop with http_stop().
 */
bool http_start(struct server *srv, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Begin to stop: new requests get 503, running handlers may finish (up to
 * HTTP_STOP_GRACE_MS), then the daemon closes; fiber_loop_stop(srv->loop)
 * waits for all of it.
 */
void http_stop(struct server *srv);

/* A request header's value, or NULL. */
const char *http_header(struct http_request *req, const char *name);

/* A query parameter's value (percent-decoded by libmicrohttpd), or NULL. */
const char *http_query(struct http_request *req, const char *name);

/*
 * Queue a response of len bytes of body with the given content type (NULL:
 * none, for a 204) and
 * extra headers (pairs of name, value; NULL-terminated; may be NULL).
 * Returns MHD's result for the access handler to return.
 */
enum MHD_Result http_reply(struct http_request *req, unsigned status, const char *content_type,
			   const char *body, size_t len, const char *const *headers);

/*
 * Reply with body as JSON (application/json below 400, problem+json from
 * 400). Takes the reference to body.
 */
enum MHD_Result http_reply_json(struct http_request *req, unsigned status, json_t *body,
				const char *const *headers);

/* Build a problem (see problem_new), merge extra into it (takes it; may be NULL) and reply. */
enum MHD_Result http_reply_problem(struct http_request *req, unsigned status, const char *name,
				   const char *detail, json_t *extra);

/* Like http_reply_problem, with extra response headers (name, value pairs, NULL-terminated). */
enum MHD_Result http_reply_problem_with(struct http_request *req, unsigned status, const char *name,
					const char *detail, json_t *extra, const char *const *headers);

/* Reply 400 invalid-request with the "errors" array of {field, message} (takes it; may be NULL). */
enum MHD_Result http_reply_invalid(struct http_request *req, json_t *errors);

/* Log res's error with the request's method and path, and reply 500 internal-error. */
enum MHD_Result http_reply_db_error(struct http_request *req, const PGresult *res);

/* Reply 503 with Retry-After. */
enum MHD_Result http_reply_unavailable(struct http_request *req, const char *name, const char *detail);

/*
 * Run the prepared statement stmt on a pooled connection, reconnecting past
 * connections that died with a database restart. Returns the result (caller
 * PQclear()s it; it may be an SQL error), or NULL after replying 503 itself
 * with *ret set, when the database cannot be reached.
 */
PGresult *http_db_exec(struct http_request *req, const char *stmt, int n, const char *const *params,
		       enum MHD_Result *ret) __attribute__((warn_unused_result));

/*
 * Check Authorization: Bearer <admin token> in constant time. Returns true
 * when allowed; otherwise replies 401 or 403 itself and returns false with
 * *ret set to what the handler must return.
 */
bool http_require_admin(struct http_request *req, enum MHD_Result *ret);

/*
 * Check the request's Content-Type is JSON; otherwise reply 415 and return
 * false with *ret set.
 */
bool http_require_json(struct http_request *req, enum MHD_Result *ret);

#endif
