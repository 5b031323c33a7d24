/* routes.h - every endpoint of checkout-server, in one table (routes.c).
 *
 * The transport (http.c) knows no handler by name: it matches a request
 * against this table and runs the checks an entry asks for, in this order:
 *   1. a path no entry has: 404 not-found;
 *   2. a method the path has no entry for: 405 with Allow listing those it has
 *      (an entry for GET answers HEAD too);
 *   3. a {parameter} its rule refuses: 404 not-found;
 *   4. admin: the bearer token (401 unauthorized, 403 forbidden);
 *   5. json_body: Content-Type application/json (415);
 * then calls the handler. (A body over 64 KiB is 413 before any of it.)
 */
#ifndef CHECKOUT_SERVER_ROUTES_H
#define CHECKOUT_SERVER_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "metrics.h"

/* A handler: answers req with one http_reply*; param is the path's {parameter} ("" when none). */
typedef enum MHD_Result (*route_handler)(struct http_request *req, const char *param);

struct route {
	const char *method; /* "GET" answers HEAD too */
	/*
	 * The path: literal, or with one {name} that stands for one or more
	 * characters, '/' included (the path is percent-decoded, and a SKU may
	 * hold a '/'). The first entry whose path matches is the request's
	 * route, so a longer pattern comes before a shorter one it overlaps.
	 */
	const char *path;
	enum metrics_route metric;	     /* the label it is counted under */
	bool (*param_ok)(const char *param); /* the rule of {name}; NULL when the path has none */
	bool admin;			     /* needs the admin bearer token */
	bool json_body;			     /* needs Content-Type: application/json */
	route_handler handle;
};

/* The table, ended by an entry whose method is NULL. */
extern const struct route routes[];

/*
 * The first entry whose path matches url, whatever its method, or NULL
 * (404). Its {parameter} is copied into param[len] ("" when the path has
 * none, or when it does not fit: every rule refuses "").
 */
const struct route *routes_match_path(const char *url, char *param, size_t len);

/*
 * Among the entries with the same path as route (from routes_match_path),
 * the one for method; NULL when there is none, and then allow[len] lists
 * the methods there are ("GET, PUT").
 */
const struct route *routes_match_method(const struct route *route, const char *method, char *allow,
					size_t len);

#endif
